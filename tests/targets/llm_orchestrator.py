"""Runbook 000's target: the LLM orchestrator's `workflows` table, its cancel API and its metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SCHEMA = """
create table workflows (id text primary key, name text not null, status text not null,
                        created_at timestamptz not null default now(), updated_at timestamptz not null default now(),
                        error text);
create table workflow_updates (workflow_id text not null, status text not null);
create function note_update() returns trigger language plpgsql as $$
begin insert into workflow_updates values (new.id, new.status); return new; end $$;
create trigger workflows_updated after update on workflows for each row execute function note_update();
"""


@dataclass
class LlmOrchestrator:
    """The orchestrator API: cancel really cancels in Postgres; some ids can be made to fail with 500."""

    dsn: str
    broken: set[str] = field(default_factory=set)
    cancels: list[str] = field(default_factory=list)

    def seed(self, stuck: list[str] = (), fresh: list[str] = (), pending: int = 0) -> None:  # type: ignore[assignment]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
            for wid in stuck:
                conn.execute(
                    "insert into workflows (id, name, status, updated_at) values "
                    "(%s, 'summarize', 'running', now() - interval '1 hour')",
                    [wid],
                )
            for wid in fresh:
                conn.execute("insert into workflows (id, name, status) values (%s, 'summarize', 'running')", [wid])
            for i in range(pending):
                conn.execute("insert into workflows (id, name, status) values (%s, 'summarize', 'pending')", [f"p-{i}"])

    def states(self) -> dict[str, str]:
        with psycopg.connect(self.dsn) as conn:
            return {r[0]: r[1] for r in conn.execute("select id, status from workflows where id not like 'p-%'")}

    def updates(self) -> list[tuple[str, str]]:
        with psycopg.connect(self.dsn) as conn:
            return [(r[0], r[1]) for r in conn.execute("select workflow_id, status from workflow_updates")]

    def app(self) -> Starlette:
        async def cancel(request: Request) -> Response:
            wid = request.path_params["id"]
            self.cancels.append(wid)
            if wid in self.broken:
                return JSONResponse({"error": "executor unreachable"}, 500)
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                done = conn.execute(
                    "update workflows set status = 'cancelled', updated_at = now() "
                    "where id = %s and status = 'running'",
                    [wid],
                ).rowcount
            return JSONResponse({"id": wid, "status": "cancelled"}, 200 if done else 409)

        async def metrics(request: Request) -> Response:
            with psycopg.connect(self.dsn) as conn:
                rows = conn.execute(
                    "select id, extract(epoch from now() - updated_at) from workflows where status = 'running'"
                ).fetchall()
            lines = ["# TYPE llm_orchestrator_workflow_running_age_seconds gauge"] + [
                f'llm_orchestrator_workflow_running_age_seconds{{namespace="llm-orchestrator",'
                f'service="llm-orchestrator",workflow_id="{wid}"}} {age:.0f}'
                for wid, age in rows
            ]
            return PlainTextResponse("\n".join(lines) + "\n")

        return Starlette(
            routes=[Route("/api/v1/workflows/{id}/cancel", cancel, methods=["POST"]), Route("/metrics", metrics)]
        )
