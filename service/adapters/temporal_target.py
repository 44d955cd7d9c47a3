"""Temporal as a target: read and act on explicit executions in other clusters and namespaces."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import JsonValue
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    ResetWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from service.config import TemporalConnection, resolve_secret
from service.errors import ConfigError, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult, per_target
from service.step_base import Params, bounded_targets
from service.steps_temporal import (
    CountParams,
    ExecutionParams,
    ListParams,
    QueryParams,
    ResetParams,
    SignalParams,
    StartParams,
    TargetsParams,
    WorkflowRef,
)

_RETRYABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}


def _json(value: Any) -> JsonValue:
    plain: JsonValue = json.loads(json.dumps(value, default=str))
    return plain


def _error(exc: RPCError, what: str) -> PermanentStepError | RetryableStepError:
    message = f"{what}: {exc.status.name}: {exc.message}"
    return RetryableStepError(message) if exc.status in _RETRYABLE else PermanentStepError(message)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


class TemporalTargetAdapter:
    """One client per target connection, connected on first use."""

    def __init__(self, connections: Mapping[str, TemporalConnection]) -> None:
        self._connections = dict(connections)
        self._clients: dict[str, Client] = {}

    def actions(self) -> dict[str, Handler]:
        return {
            "temporal.describe": self._describe,
            "temporal.list": self._list,
            "temporal.count": self._count,
            "temporal.query": self._query,
            "temporal.history_input": self._history_input,
            "temporal.signal": self._signal,
            "temporal.cancel": self._cancel,
            "temporal.terminate": self._terminate,
            "temporal.reset": self._reset,
            "temporal.start": self._start,
        }

    async def _client(self, name: str) -> Client:
        client = self._clients.get(name)
        if client is None:
            conn = self._connections.get(name)
            if conn is None:
                raise ConfigError(f"no temporal connection named {name!r}")
            tls: bool | TLSConfig = conn.tls or conn.api_key is not None
            if conn.tls_ca_file or conn.tls_cert_file:
                tls = TLSConfig(
                    server_root_ca_cert=_read(conn.tls_ca_file),
                    client_cert=_read(conn.tls_cert_file),
                    client_private_key=_read(conn.tls_key_file),
                )
            try:
                client = await Client.connect(
                    conn.address,
                    namespace=conn.namespace,
                    tls=tls,
                    api_key=resolve_secret(conn.api_key) if conn.api_key else None,
                )
            except RuntimeError as exc:
                raise RetryableStepError(f"temporal {name}: cannot connect to {conn.address}: {exc}") from exc
            self._clients[name] = client
        return client

    async def close(self) -> None:
        self._clients.clear()  # temporalio clients hold no resources that need closing

    async def ping(self, name: str) -> None:
        client = await self._client(name)
        await self._rpc("ping", client.count_workflows("WorkflowType = 'remediate-readiness-probe'"))

    async def _rpc(self, what: str, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except RPCError as exc:
            raise _error(exc, what) from exc

    async def _handle(self, request: StepRequest, workflow_id: str, run_id: str | None) -> WorkflowHandle[Any, Any]:
        return (await self._client(request.connection)).get_workflow_handle(workflow_id, run_id=run_id)

    # ---- reads -----------------------------------------------------------------------------------------------

    async def _describe(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ExecutionParams)  # noqa: S101 - the registry validated it
        handle = await self._handle(request, str(params.workflow_id), str(params.run_id) if params.run_id else None)
        d = await self._rpc(f"describe {params.workflow_id}", handle.describe())
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
            "start_time": _json(d.start_time),
            "close_time": _json(d.close_time),
            "history_length": d.history_length,
            "pending_activities": pending,
        }
        return StepResult(
            data=data,
            summary=f"{d.id} ({d.workflow_type}) is {data['status']}, "
            f"{d.history_length} events, {len(pending)} pending activit(ies)",
        )

    async def _list(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ListParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)
        found: list[JsonValue] = []
        try:
            async for e in client.list_workflows(params.query, limit=params.limit):
                found.append(
                    {
                        "workflow_id": e.id,
                        "run_id": e.run_id,
                        "type": e.workflow_type,
                        "status": e.status.name if e.status else None,
                        "task_queue": e.task_queue,
                        "start_time": _json(e.start_time),
                    }
                )
        except RPCError as exc:
            raise _error(exc, "list workflows") from exc
        return StepResult(
            data={"workflows": found, "count": len(found)},
            summary=f"{len(found)} workflow(s) for {params.query!r} (limit {params.limit})",
        )

    async def _count(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, CountParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)
        counted = await self._rpc("count workflows", client.count_workflows(params.query))
        return StepResult(data={"count": counted.count}, summary=f"{counted.count} workflow(s) for {params.query!r}")

    async def _query(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, QueryParams)  # noqa: S101 - the registry validated it
        handle = await self._handle(request, str(params.workflow_id), str(params.run_id) if params.run_id else None)
        result = await self._rpc(f"query {params.query}", handle.query(params.query, args=params.args))
        return StepResult(data={"result": _json(result)}, summary=f"{params.query} answered")

    async def _history_input(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ExecutionParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)
        handle = client.get_workflow_handle(
            str(params.workflow_id), run_id=str(params.run_id) if params.run_id else None
        )
        history = await self._rpc("fetch history", handle.fetch_history())
        started = history.events[0].workflow_execution_started_event_attributes
        args = await client.data_converter.decode(started.input.payloads) if started.HasField("input") else []
        return StepResult(
            data={
                "workflow_type": started.workflow_type.name,
                "task_queue": started.task_queue.name,
                "args": _json(list(args)),
                "run_id": history.run_id,
            },
            summary=f"original input of {params.workflow_id}: {len(args)} argument(s)",
        )

    # ---- writes ----------------------------------------------------------------------------------------------

    async def _each(
        self,
        request: StepRequest,
        params: TargetsParams,
        verb: str,
        act: Callable[[WorkflowHandle[Any, Any], WorkflowRef], Awaitable[None]],
    ) -> StepResult:
        targets: list[WorkflowRef] = list(bounded_targets(list(params.workflows), params.max_targets, "workflows"))  # type: ignore[arg-type]
        client = await self._client(request.connection)
        outcomes: list[tuple[str, str]] = []
        for ref in targets:
            handle = client.get_workflow_handle(ref.workflow_id, run_id=ref.run_id)
            target = f"workflow {ref.workflow_id} run {ref.run_id}"
            try:
                d = await handle.describe()
                state = d.status.name if d.status else "UNKNOWN"
                if state != "RUNNING":
                    outcome = f"skipped: already {state.lower()}"
                elif request.dry_run:
                    outcome = f"would {verb} ({d.workflow_type}, {d.history_length} events)"
                else:
                    await act(handle, ref)
                    outcome = f"{verb}ed" if not verb.endswith("e") else f"{verb}d"
            except RPCError as exc:
                outcome = "skipped: not found" if exc.status == RPCStatusCode.NOT_FOUND else f"failed: {exc.message}"
            outcomes.append((target, outcome))
        summary = f"{verb} {len(targets)} workflow(s)" + (" (dry-run: planned, not sent)" if request.dry_run else "")
        return per_target(outcomes, summary, request.dry_run)

    def _reason(self, request: StepRequest, reason: str) -> str:
        # Whoever reads the target's history can find the run that acted on it.
        return f"remediate run {request.run_id} step {request.step_id}" + (f": {reason}" if reason else "")

    async def _signal(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, SignalParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)

        async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
            # The server drops a second signal with the same request id: a retry after a lost worker sends it once.
            await client.workflow_service.signal_workflow_execution(
                SignalWorkflowExecutionRequest(
                    signal_name=params.signal,
                    input=Payloads(payloads=await client.data_converter.encode(list(params.args))),
                    **_addressed(client, request, ref),
                )
            )

        return await self._each(request, params, "signal", act)

    async def _cancel(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, TargetsParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)

        async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
            await client.workflow_service.request_cancel_workflow_execution(
                RequestCancelWorkflowExecutionRequest(
                    reason=self._reason(request, params.reason), **_addressed(client, request, ref)
                )
            )

        return await self._each(request, params, "cancel", act)

    async def _terminate(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, TargetsParams)  # noqa: S101 - the registry validated it

        async def act(handle: WorkflowHandle[Any, Any], _: WorkflowRef) -> None:
            await handle.terminate(reason=self._reason(request, params.reason))

        return await self._each(request, params, "terminate", act)

    async def _reset(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ResetParams)  # noqa: S101 - the registry validated it
        client = await self._client(request.connection)

        async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
            event_id = params.to if isinstance(params.to, int) else await _last_completed_task(handle)
            await client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=client.namespace,
                    reason=self._reason(request, params.reason),
                    workflow_execution=WorkflowExecution(workflow_id=ref.workflow_id, run_id=ref.run_id),
                    workflow_task_finish_event_id=event_id,
                    request_id=_request_id(request, ref),
                )
            )  # the same reset only once

        return await self._each(request, params, "reset", act)

    async def _start(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, StartParams)  # noqa: S101 - the registry validated it
        target = f"workflow {params.workflow_id} ({params.workflow_type} on {params.task_queue})"
        if request.dry_run:
            return StepResult(
                data={"dry_run": True, "workflow_id": str(params.workflow_id)},
                summary=f"would start {target}",
                targets=[target],
                dry_run=True,
            )
        client = await self._client(request.connection)
        try:
            handle = await client.start_workflow(
                str(params.workflow_type),
                args=list(params.args),
                id=str(params.workflow_id),
                task_queue=str(params.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
            outcome, run_id = "started", handle.result_run_id
        except WorkflowAlreadyStartedError as exc:
            outcome, run_id = "already started (not started twice)", exc.run_id
        except RPCError as exc:
            raise _error(exc, f"start {target}") from exc
        return StepResult(
            data={"workflow_id": str(params.workflow_id), "run_id": run_id, "outcome": outcome},
            summary=f"{outcome}: {target}",
            targets=[target],
        )


def _addressed(client: Client, request: StepRequest, ref: WorkflowRef) -> dict[str, Any]:
    """What a signal or cancel request names: the exact execution, who sends it, and its de-duplicating id."""
    return {
        "namespace": client.namespace,
        "workflow_execution": WorkflowExecution(workflow_id=ref.workflow_id, run_id=ref.run_id),
        "identity": client.identity,
        "request_id": _request_id(request, ref),
    }


def _request_id(request: StepRequest, ref: WorkflowRef) -> str:
    """The idempotency key per target, as the request id Temporal de-duplicates on."""
    return f"{request.key}/{ref.workflow_id}/{ref.run_id}"


async def _last_completed_task(handle: WorkflowHandle[Any, Any]) -> int:
    last = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last = event.event_id
    if not last:
        raise PermanentStepError(f"{handle.id} has no completed workflow task to reset to")
    return last
