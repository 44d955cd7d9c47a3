"""Temporal as a target: read and act on explicit executions in other clusters and namespaces."""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue
from temporalio.client import Client, WorkflowHandle
from temporalio.service import TLSConfig

from service.config import resolve_secret
from service.playbooks.systems.temporal import (
    TEMPORAL,
    Cancel,
    CountParams,
    CountWorkflows,
    Describe,
    ExecutionParams,
    HistoryInput,
    ListParams,
    ListWorkflows,
    QueryParams,
    QueryWorkflow,
    Reset,
    Signal,
    Start,
    TemporalConnection,
    Terminate,
)
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult
from service.targets.base import ConnectionAdapter
from service.targets.temporal.api import errors, plain, read_file
from service.targets.temporal.writes import cancel, reset, signal, start, terminate


class TemporalTargetAdapter(ConnectionAdapter[TemporalConnection, Client]):
    """One client per target connection, connected on first use."""

    system = TEMPORAL

    def actions(self) -> dict[str, Action[Any]]:
        return specs(
            Action(Describe, self._describe),
            Action(ListWorkflows, self._list),
            Action(CountWorkflows, self._count),
            Action(QueryWorkflow, self._query),
            Action(HistoryInput, self._history_input),
            Action(Signal, self.with_client(signal)),
            Action(Cancel, self.with_client(cancel)),
            Action(Terminate, self.with_client(terminate)),
            Action(Reset, self.with_client(reset)),
            Action(Start, self.with_client(start)),
        )

    async def _open(self, name: str, conn: TemporalConnection) -> Client:
        tls: bool | TLSConfig = conn.tls or conn.api_key is not None
        if conn.tls_ca_file or conn.tls_cert_file:
            tls = TLSConfig(
                server_root_ca_cert=read_file(conn.tls_ca_file),
                client_cert=read_file(conn.tls_cert_file),
                client_private_key=read_file(conn.tls_key_file),
            )
        with errors(f"temporal {name}: cannot connect to {conn.address}"):
            return await Client.connect(
                conn.address,
                namespace=conn.namespace,
                tls=tls,
                api_key=resolve_secret(conn.api_key) if conn.api_key else None,
            )

    async def _close(self, client: Client) -> None:
        pass  # temporalio clients hold no resources that need closing

    async def ping(self, connection: str) -> None:
        client = await self.client(connection)
        with errors("ping"):
            await client.count_workflows("WorkflowType = 'remediate-readiness-probe'")

    async def _handle(self, request: StepRequest, workflow_id: str, run_id: str | None) -> WorkflowHandle[Any, Any]:
        return (await self.client(request.connection)).get_workflow_handle(workflow_id, run_id=run_id)

    # ---- reads -----------------------------------------------------------------------------------------------

    async def _describe(self, request: StepRequest, params: ExecutionParams) -> StepResult:
        handle = await self._handle(request, params.workflow_id, params.run_id)
        with errors(f"describe {params.workflow_id}"):
            d = await handle.describe()
        pending: list[JsonValue] = [
            {
                "activity_id": a.activity_id,
                "type": a.activity_type.name,
                "attempt": a.attempt,
                "state": a.state,
                "last_failure": a.last_failure.message if a.HasField("last_failure") else None,
                "last_heartbeat": a.last_heartbeat_time.ToJsonString() if a.HasField("last_heartbeat_time") else None,
            }
            for a in d.raw_description.pending_activities
        ]
        data: dict[str, JsonValue] = {
            "workflow_id": d.id,
            "run_id": d.run_id,
            "type": d.workflow_type,
            "task_queue": d.task_queue,
            "status": d.status.name if d.status else None,
            "start_time": plain(d.start_time),
            "close_time": plain(d.close_time),
            "history_length": d.history_length,
            "pending_activities": pending,
        }
        return StepResult(
            data=data,
            summary=f"{d.id} ({d.workflow_type}) is {data['status']}, "
            f"{d.history_length} events, {len(pending)} pending activit(ies)",
        )

    async def _list(self, request: StepRequest, params: ListParams) -> StepResult:
        client = await self.client(request.connection)
        found: list[JsonValue] = []
        with errors("list workflows"):
            async for e in client.list_workflows(params.query, limit=params.limit):
                found.append(
                    {
                        "workflow_id": e.id,
                        "run_id": e.run_id,
                        "type": e.workflow_type,
                        "status": e.status.name if e.status else None,
                        "task_queue": e.task_queue,
                        "start_time": plain(e.start_time),
                    }
                )
        return StepResult(
            data={"workflows": found, "count": len(found)},
            summary=f"{len(found)} workflow(s) for {params.query!r} (limit {params.limit})",
        )

    async def _count(self, request: StepRequest, params: CountParams) -> StepResult:
        client = await self.client(request.connection)
        with errors("count workflows"):
            counted = await client.count_workflows(params.query)
        return StepResult(data={"count": counted.count}, summary=f"{counted.count} workflow(s) for {params.query!r}")

    async def _query(self, request: StepRequest, params: QueryParams) -> StepResult:
        handle = await self._handle(request, params.workflow_id, params.run_id)
        with errors(f"query {params.query}"):
            result = await handle.query(params.query, args=params.args)
        return StepResult(data={"result": plain(result)}, summary=f"{params.query} answered")

    async def _history_input(self, request: StepRequest, params: ExecutionParams) -> StepResult:
        client = await self.client(request.connection)
        handle = client.get_workflow_handle(params.workflow_id, run_id=params.run_id)
        with errors("fetch history"):
            history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        args = await client.data_converter.decode(started.input.payloads) if started.HasField("input") else []
        return StepResult(
            data={
                "workflow_type": started.workflow_type.name,
                "task_queue": started.task_queue.name,
                "args": plain(list(args)),
                "run_id": history.run_id,
            },
            summary=f"original input of {params.workflow_id}: {len(args)} argument(s)",
        )
