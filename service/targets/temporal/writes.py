"""Temporal target writes on explicit executions: each with the run's key as the request id Temporal
de-duplicates on, skipped when the execution is no longer running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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
from temporalio.service import RPCStatusCode

from service.playbooks.step_base import typed
from service.playbooks.systems.temporal import ResetParams, SignalParams, StartParams, TargetsParams, WorkflowRef
from service.runs.state import StepRequest, StepResult, per_target
from service.targets.temporal.api import errors
from service.vocabulary.errors import PermanentStepError, StepError

Act = Callable[[WorkflowHandle[Any, Any], WorkflowRef], Awaitable[None]]


async def _each(client: Client, request: StepRequest, params: TargetsParams, verb: str, act: Act) -> StepResult:
    targets = params.targets()
    outcomes: list[tuple[str, str]] = []
    for ref in targets:
        handle = client.get_workflow_handle(ref.workflow_id, run_id=ref.run_id)
        target = f"workflow {ref.workflow_id} run {ref.run_id}"
        outcomes.append((target, await _one(handle, ref, verb, act, request.dry_run)))
    summary = f"{verb} {len(targets)} workflow(s)" + (" (dry-run: planned, not sent)" if request.dry_run else "")
    return per_target(outcomes, summary, request.dry_run)


async def _one(handle: WorkflowHandle[Any, Any], ref: WorkflowRef, verb: str, act: Act, dry_run: bool) -> str:
    try:
        with errors(f"{verb} {ref.workflow_id}"):
            d = await handle.describe()
            state = d.status.name if d.status else "UNKNOWN"
            if state != "RUNNING":
                return f"skipped: already {state.lower()}"
            if dry_run:
                return f"would {verb} ({d.workflow_type}, {d.history_length} events)"
            await act(handle, ref)
            return f"{verb}ed" if not verb.endswith("e") else f"{verb}d"
    except StepError as exc:  # one target's outcome; the others still get theirs
        return "skipped: not found" if exc.status == RPCStatusCode.NOT_FOUND else f"failed: {exc}"


def _reason(request: StepRequest, reason: str) -> str:
    # Whoever reads the target's history can find the run that acted on it.
    return f"remediate run {request.run_id} step {request.step_id}" + (f": {reason}" if reason else "")


async def signal(client: Client, request: StepRequest, params: SignalParams) -> StepResult:

    async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
        # The server drops a second signal with the same request id: a retry after a lost worker sends it once.
        await client.workflow_service.signal_workflow_execution(
            SignalWorkflowExecutionRequest(
                signal_name=params.signal,
                input=Payloads(payloads=await client.data_converter.encode(list(params.args))),
                **_addressed(client, request, ref),
            )
        )

    return await _each(client, request, params, "signal", act)


async def cancel(client: Client, request: StepRequest, params: TargetsParams) -> StepResult:

    async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
        await client.workflow_service.request_cancel_workflow_execution(
            RequestCancelWorkflowExecutionRequest(
                reason=_reason(request, params.reason), **_addressed(client, request, ref)
            )
        )

    return await _each(client, request, params, "cancel", act)


async def terminate(client: Client, request: StepRequest, params: TargetsParams) -> StepResult:

    async def act(handle: WorkflowHandle[Any, Any], _: WorkflowRef) -> None:
        await handle.terminate(reason=_reason(request, params.reason))

    return await _each(client, request, params, "terminate", act)


async def reset(client: Client, request: StepRequest, params: ResetParams) -> StepResult:

    async def act(handle: WorkflowHandle[Any, Any], ref: WorkflowRef) -> None:
        event_id = params.to if isinstance(params.to, int) else await _last_completed_task(handle)
        await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                reason=_reason(request, params.reason),
                workflow_execution=WorkflowExecution(workflow_id=ref.workflow_id, run_id=ref.run_id),
                workflow_task_finish_event_id=event_id,
                request_id=_request_id(request, ref),
            )
        )  # the same reset only once

    return await _each(client, request, params, "reset", act)


async def start(client: Client, request: StepRequest, params: StartParams) -> StepResult:
    target = f"workflow {params.workflow_id} ({params.workflow_type} on {params.task_queue})"
    if request.dry_run:
        return StepResult(
            data={"dry_run": True, "workflow_id": params.workflow_id},
            summary=f"would start {target}",
            targets=[target],
            dry_run=True,
        )
    try:
        with errors(f"start {target}"):
            handle = await client.start_workflow(
                params.workflow_type,
                args=typed(params.args, "args"),
                id=params.workflow_id,
                task_queue=params.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        outcome, run_id = "started", handle.result_run_id
    except WorkflowAlreadyStartedError as exc:  # not an error: the start is idempotent by its workflow id
        outcome, run_id = "already started (not started twice)", exc.run_id
    return StepResult(
        data={"workflow_id": params.workflow_id, "run_id": run_id, "outcome": outcome},
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
