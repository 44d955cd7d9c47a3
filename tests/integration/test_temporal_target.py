"""temporal.* actions against real stuck workflows on the Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from service.playbooks.systems.temporal import TemporalConnection
from service.runs.registry import Registry
from service.runs.state import StepRequest, StepResult
from service.targets.temporal.adapter import TemporalTargetAdapter
from service.vocabulary.errors import GuardViolation, PermanentStepError
from tests.support.target_workflows import (
    AwaitsPickConfirmation,
    LongHistory,
    Pokeable,
    StuckOnCarrier,
    flaky_carrier_call,
)


@pytest.fixture
async def target(temporal_client: Client, temporal_env_address: str) -> AsyncIterator[tuple[Client, Registry, str]]:
    queue = f"wms-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        temporal_client,
        task_queue=queue,
        workflows=[AwaitsPickConfirmation, StuckOnCarrier, LongHistory, Pokeable],
        activities=[flaky_carrier_call],
    )
    adapter = TemporalTargetAdapter(
        {"wms": TemporalConnection(type="temporal", address=temporal_env_address, namespace="default")}
    )
    async with worker:
        yield temporal_client, Registry([adapter.actions()], require_all=False), queue
    await adapter.close()


async def call(registry: Registry, action: str, *, dry_run: bool = False, **params: Any) -> Any:
    result: StepResult = await registry.dispatch(
        StepRequest(
            run_id="wms-stuck/fp/1", step_id="fix", action=action, connection="wms", params=params, dry_run=dry_run
        )
    )
    return result


async def stuck_order(client: Client, queue: str, order: str = "order-1") -> dict[str, str]:
    handle = await client.start_workflow(
        AwaitsPickConfirmation.run, args=[order, 3], id=f"pick-{order}-{uuid.uuid4().hex[:6]}", task_queue=queue
    )
    await handle.query(AwaitsPickConfirmation.status)  # its first workflow task has completed
    return {"workflow_id": handle.id, "run_id": handle.result_run_id or ""}


async def test_describe_shows_a_failing_pending_activity(target: tuple[Client, Registry, str]) -> None:
    """A workflow stuck on a failing activity shows the activity, its attempts and its last failure."""
    client, registry, queue = target
    handle = await client.start_workflow(
        StuckOnCarrier.run, "order-9", id=f"carrier-{uuid.uuid4().hex[:6]}", task_queue=queue
    )
    for _ in range(50):
        described = await call(registry, "temporal.describe", workflow_id=handle.id)
        pending = described.data["pending_activities"]
        if pending and pending[0]["attempt"] >= 2 and pending[0]["last_failure"]:
            break
        await asyncio.sleep(0.2)
    assert described.data["status"] == "RUNNING" and described.data["type"] == "StuckOnCarrier"
    assert "carrier API timed out" in pending[0]["last_failure"] and pending[0]["type"] == "flaky_carrier_call"
    await handle.terminate("test cleanup")


async def test_list_count_query_and_original_input(target: tuple[Client, Registry, str]) -> None:
    """Visibility list and count find the stuck runs; a query answers; the original input is recovered."""
    client, registry, queue = target
    refs = [await stuck_order(client, queue, f"order-{i}") for i in range(3)]
    query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
    for _ in range(50):
        listed = await call(registry, "temporal.list", query=query, limit=2)
        if (await call(registry, "temporal.count", query=query)).data["count"] == 3:
            break
        await asyncio.sleep(0.2)
    assert listed.data["count"] == 2  # the limit holds
    answer = await call(registry, "temporal.query", workflow_id=refs[0]["workflow_id"], query="status")
    assert answer.data["result"] == "awaiting pick confirmation"
    original = await call(
        registry, "temporal.history_input", workflow_id=refs[1]["workflow_id"], run_id=refs[1]["run_id"]
    )
    assert original.data["args"] == ["order-1", 3] and original.data["workflow_type"] == "AwaitsPickConfirmation"


async def test_signal_unsticks_exactly_the_targets(target: tuple[Client, Registry, str]) -> None:
    """The missing signal is sent to the listed runs only; caps and empty lists are refused first."""
    client, registry, queue = target
    a, b = await stuck_order(client, queue, "a"), await stuck_order(client, queue, "b")
    with pytest.raises(GuardViolation, match="empty"):
        await call(registry, "temporal.signal", workflows=[], max_targets=1, signal="pick_confirmed")
    with pytest.raises(GuardViolation, match="over max_targets"):
        await call(registry, "temporal.signal", workflows=[a, b], max_targets=1, signal="pick_confirmed")
    dry = await call(registry, "temporal.signal", dry_run=True, workflows=[a], max_targets=1, signal="pick_confirmed")
    assert "would signal (AwaitsPickConfirmation" in dry.data["results"][0]["outcome"]
    await call(registry, "temporal.signal", workflows=[a], max_targets=1, signal="pick_confirmed", args=["remediate"])
    assert await client.get_workflow_handle(a["workflow_id"]).result() == "a: 3 lines picked"
    assert (await client.get_workflow_handle(b["workflow_id"]).describe()).status == WorkflowExecutionStatus.RUNNING


async def test_cancel_and_terminate_name_the_run(target: tuple[Client, Registry, str]) -> None:
    """Cancel and terminate act once; terminate's reason names the remediation run; closed runs are skipped."""
    client, registry, queue = target
    a, b = await stuck_order(client, queue, "a"), await stuck_order(client, queue, "b")
    await call(registry, "temporal.cancel", workflows=[a], max_targets=1, reason="stuck on pick")
    done = await call(registry, "temporal.terminate", workflows=[b], max_targets=1, reason="stuck on pick")
    assert done.data["results"][0]["outcome"] == "terminated"
    for _ in range(50):
        if (await client.get_workflow_handle(a["workflow_id"]).describe()).status == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    history = await client.get_workflow_handle(b["workflow_id"]).fetch_history()
    terminated = history.events[-1].workflow_execution_terminated_event_attributes
    assert terminated.reason == "remediate run wms-stuck/fp/1 step fix: stuck on pick"
    again = await call(registry, "temporal.terminate", workflows=[b], max_targets=1)
    assert again.data["results"][0]["outcome"] == "skipped: already terminated"


async def test_reset_and_restart_with_the_original_input(target: tuple[Client, Registry, str]) -> None:
    """Reset makes a new run from the last workflow task; start re-runs the original input once under a new id."""
    client, registry, queue = target
    a = await stuck_order(client, queue, "a")
    await call(registry, "temporal.reset", workflows=[a], max_targets=1, reason="replay after fix")
    described = await call(registry, "temporal.describe", workflow_id=a["workflow_id"])
    assert described.data["run_id"] != a["run_id"] and described.data["status"] == "RUNNING"
    original = await call(registry, "temporal.history_input", workflow_id=a["workflow_id"], run_id=a["run_id"])
    new_id = f"{a['workflow_id']}-restart"
    params = {
        "workflow_type": original.data["workflow_type"],
        "task_queue": original.data["task_queue"],
        "workflow_id": new_id,
        "args": original.data["args"],
    }
    first = await call(registry, "temporal.start", **params)
    second = await call(registry, "temporal.start", **params)
    assert first.data["outcome"] == "started" and second.data["outcome"].startswith("already started")
    assert await client.get_workflow_handle(new_id).query(AwaitsPickConfirmation.status) == "awaiting pick confirmation"


async def test_long_history_is_reported(target: tuple[Client, Registry, str]) -> None:
    """A run with a long history shows its length, so a playbook can compare it to the limit."""
    client, registry, queue = target
    handle = await client.start_workflow(LongHistory.run, 500, id=f"long-{uuid.uuid4().hex[:6]}", task_queue=queue)
    for _ in range(100):
        described = await call(registry, "temporal.describe", workflow_id=handle.id)
        if described.data["history_length"] > 900:
            break
        await asyncio.sleep(0.2)
    assert described.data["history_length"] > 900
    await handle.terminate("test cleanup")


async def test_visibility_query_values_cannot_break_out(target: tuple[Client, Registry, str]) -> None:
    """A rendered value with a quote cannot reach a visibility query; typed ids reject control characters."""
    _, registry, _ = target
    with pytest.raises(PermanentStepError, match="rendered parameters are invalid"):
        await call(registry, "temporal.describe", workflow_id="bad\nid")


async def test_a_retried_signal_reaches_the_workflow_once(target: tuple[Client, Registry, str]) -> None:
    """The same step sent twice (a retry after a lost worker) carries the same request id: the server keeps one."""
    client, registry, queue = target
    handle = await client.start_workflow(Pokeable.run, id=f"poke-{uuid.uuid4().hex[:6]}", task_queue=queue)
    ref = {"workflow_id": handle.id, "run_id": handle.result_run_id or ""}
    for _ in range(2):
        result = await call(registry, "temporal.signal", workflows=[ref], signal="poke", args=["a"], max_targets=1)
        assert result.data["results"][0]["outcome"] == "signaled"  # still running: sent both times
    assert await handle.result() == 1
