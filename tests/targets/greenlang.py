"""Runbook 001's target: the GreenLang orchestrator's HTTP API and metrics, with executions that can be stuck."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Execution:
    execution_id: str
    dag_id: str
    started: float
    status: str = "running"
    timeout_seconds: int = 3600
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)


@dataclass
class GreenLang:
    """Records every write call; cancel and resume change the execution as the real orchestrator would."""

    executions: dict[str, Execution] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)
    active: int = 3
    max_concurrent: int = 50

    def stuck(self, execution_id: str = "exec-7c1f", agent: str = "a7", checkpoints: bool = True) -> Execution:
        """Started 2 hours ago with a 1 hour timeout; n1, n2 done (checkpointed), n3 running on `agent`."""
        started = time.time() - 7200
        execution = Execution(
            execution_id,
            "scope3-monthly",
            started,
            nodes={
                "n1": {"status": "completed", "agent_id": "a1", "attempt_count": 1, "duration_ms": 1200},
                "n2": {"status": "completed", "agent_id": "a2", "attempt_count": 1, "duration_ms": 800},
                "n3": {"status": "running", "agent_id": agent, "attempt_count": 3, "started_at": _iso(started + 60)},
                "n4": {"status": "pending", "agent_id": "a4", "attempt_count": 0},
            },
            checkpoints=["n1", "n2"] if checkpoints else [],
        )
        self.executions[execution_id] = execution
        return execution

    def finished(self, execution_id: str = "exec-done") -> Execution:
        execution = Execution(execution_id, "scope3-monthly", time.time() - 600, status="completed")
        self.executions[execution_id] = execution
        return execution

    def app(self) -> Starlette:
        base = "/api/v1/orchestrator"

        def found(request: Request) -> Execution | None:
            return self.executions.get(request.path_params["id"])

        async def executions(request: Request) -> Response:
            wanted = request.query_params.get("status")
            items = [
                {"execution_id": e.execution_id, "dag_id": e.dag_id, "status": e.status, "started_at": _iso(e.started)}
                for e in self.executions.values()
                if wanted is None or e.status == wanted
            ]
            return JSONResponse({"items": items})

        async def execution(request: Request) -> Response:
            e = found(request)
            if e is None:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse(
                {"execution_id": e.execution_id, "dag_id": e.dag_id, "status": e.status, "started_at": _iso(e.started)}
            )

        async def trace(request: Request) -> Response:
            e = found(request)
            if e is None:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse(
                {
                    "execution_id": e.execution_id,
                    "status": e.status,
                    "topology_levels": [["n1", "n2"], ["n3"], ["n4"]],
                    "node_traces": e.nodes,
                }
            )

        async def checkpoints(request: Request) -> Response:
            e = found(request)
            if e is None:
                return JSONResponse({"checkpoints": []})
            saved = [{"node_id": n, "status": "saved", "created_at": _iso(e.started)} for n in e.checkpoints]
            return JSONResponse({"checkpoints": saved})

        async def metrics_api(request: Request) -> Response:
            return JSONResponse(
                {
                    "active_executions": self.active,
                    "max_concurrent_executions": self.max_concurrent,
                    "queued_executions": 0,
                }
            )

        async def cancel(request: Request) -> Response:
            e = found(request)
            self.writes.append(("cancel", request.path_params["id"]))
            if e is None:
                return JSONResponse({"error": "not found"}, 404)
            e.status = "cancelled"
            return JSONResponse({"execution_id": e.execution_id, "status": e.status})

        async def resume(request: Request) -> Response:
            e = found(request)
            self.writes.append(("resume", request.path_params["id"]))
            if e is None:
                return JSONResponse({"error": "not found"}, 404)
            skipped = list(e.checkpoints)
            for node in e.nodes.values():
                node["status"] = "completed"
            e.status = "completed"  # the remaining nodes run on the restarted agent
            return JSONResponse(
                {
                    "execution_id": e.execution_id,
                    "status": e.status,
                    "nodes_skipped": skipped,
                    "nodes_remaining": [n for n in e.nodes if n not in skipped],
                }
            )

        async def prometheus(request: Request) -> Response:
            lines = [
                "# TYPE gl_orchestrator_dag_execution_duration_seconds gauge",
                "# TYPE gl_orchestrator_execution_timeout_seconds gauge",
            ]
            for e in self.executions.values():
                if e.status != "running":
                    continue
                labels = f'execution_id="{e.execution_id}",dag_id="{e.dag_id}",status="running"'
                lines.append(
                    f"gl_orchestrator_dag_execution_duration_seconds{{{labels}}} {time.time() - e.started:.0f}"
                )
                lines.append(f"gl_orchestrator_execution_timeout_seconds{{{labels}}} {e.timeout_seconds}")
            lines.append(f"gl_orchestrator_active_executions {self.active}")
            return PlainTextResponse("\n".join(lines) + "\n")

        return Starlette(
            routes=[
                Route(f"{base}/executions", executions),
                Route(f"{base}/executions/{{id}}", execution),
                Route(f"{base}/executions/{{id}}/trace", trace),
                Route(f"{base}/executions/{{id}}/cancel", cancel, methods=["POST"]),
                Route(f"{base}/executions/{{id}}/resume", resume, methods=["POST"]),
                Route(f"{base}/checkpoints/{{id}}", checkpoints),
                Route(f"{base}/metrics", metrics_api),
                Route("/metrics", prometheus),
            ]
        )
