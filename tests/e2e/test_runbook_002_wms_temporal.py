"""Runbook 002 end to end: stuck WMS workflows on real Temporal; the option is chosen from the describe result."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from service.runs.policy import Mode
from tests.support.fake_kube import FakeKube
from tests.support.pipeline import Pipeline, connections_config, pipeline
from tests.support.servers import serving
from tests.targets import wms


@dataclass
class World:
    client: Client
    queue: str
    exporter: wms.WmsExporter
    config: str
    scrape: str


@pytest.fixture
async def world(temporal_client: Client, temporal_env_address: str, tmp_path: Path) -> AsyncIterator[World]:
    queue, exporter, kube = f"wms-{uuid.uuid4().hex[:8]}", wms.WmsExporter(), FakeKube()
    kube.add_pod("wms", "orchestrator-worker-0", {"app": "orchestrator-worker"})
    worker = Worker(temporal_client, task_queue=queue, workflows=wms.WORKFLOWS, activities=wms.ACTIVITIES)
    async with worker, serving(exporter.app()) as url, serving(kube.app()) as kube_url:
        (tmp_path / "kubeconfig").write_text(kube.kubeconfig(kube_url))
        config = connections_config(wms_temporal=temporal_env_address, kubeconfig=str(tmp_path / "kubeconfig"))
        yield World(temporal_client, queue, exporter, config, url.removeprefix("http://"))


async def planning(world: World, order: str = "ORD-12345") -> str:
    """A PlanningWorkflow whose waveAssigned signal was lost; the WMS knows the wave it assigned."""
    wid = f"planning-{order}-{uuid.uuid4().hex[:4]}"
    handle = await world.client.start_workflow("PlanningWorkflow", {"orderId": order}, id=wid, task_queue=world.queue)
    await handle.describe()
    world.exporter.stuck[wid] = {
        "workflow_type": "PlanningWorkflow",
        "awaiting_signal": "waveAssigned",
        "wave_id": "WAVE-001",
    }
    return wid


def running(world: World, mode: Mode) -> AbstractAsyncContextManager[Pipeline]:
    return pipeline(world.client, world.config, mode, "wms-workflow-stuck.yaml", [world.scrape])


async def status(world: World, wid: str) -> WorkflowExecutionStatus | None:
    return (await world.client.get_workflow_handle(wid).describe()).status


async def test_dry_run_plans_the_lost_signal_and_sends_nothing(world: World) -> None:
    """The plan resends waveAssigned to exactly that run; the workflow keeps waiting."""
    wid = await planning(world)
    async with running(world, Mode.DRY_RUN) as p:
        [state] = await p.runs()
    steps = {s.id: s for s in state.steps}
    assert state.status == "succeeded", state.reason
    assert steps["resend-signal"].status == "dry_run" and steps["resend-signal"].targets[0].startswith(
        f"workflow {wid} run "
    )
    assert steps["cancel"].status == "skipped" and steps["terminate"].status == "skipped"
    assert await status(world, wid) == WorkflowExecutionStatus.RUNNING


async def test_live_resends_the_lost_signal_once(world: World) -> None:
    """In auto the signal is resent with the assigned wave; the workflow completes and verify passes."""
    wid = await planning(world)
    async with running(world, Mode.AUTO) as p:
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert await world.client.get_workflow_handle(wid).result() == "ORD-12345 planned in WAVE-001"
    history = await world.client.get_workflow_handle(wid).fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 1


async def test_healthy_workflow_means_no_write(world: World) -> None:
    """A workflow that already completed (alert posted by hand) is described and left alone."""
    wid = await planning(world)
    await world.client.get_workflow_handle(wid).signal("waveAssigned", {"waveId": "WAVE-9"})
    await world.client.get_workflow_handle(wid).result()
    world.exporter.stuck.clear()
    async with running(world, Mode.AUTO) as p:
        p.fire(
            {
                "alertname": "WmsWorkflowStuck",
                "workflow_id": wid,
                "workflow_type": "PlanningWorkflow",
                "awaiting_signal": "waveAssigned",
                "wave_id": "WAVE-001",
                "namespace": "wms",
            }
        )
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert all(s.status == "skipped" for s in state.steps if s.phase == "act")
    history = await world.client.get_workflow_handle(wid).fetch_history()
    assert len([e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]) == 1


async def test_history_near_the_limit_terminates_only_after_approval_then_restarts(world: World) -> None:
    """Terminate waits for an approval; then the run terminates it and restarts it once with its original input."""
    wid = f"reprocessing-run-{uuid.uuid4().hex[:6]}"
    handle = await world.client.start_workflow(
        "ReprocessingOrchestrationWorkflow", {"timers": 500}, id=wid, task_queue=world.queue
    )
    for _ in range(100):
        if (await handle.describe()).history_length > 900:
            break
        await asyncio.sleep(0.2)
    async with running(world, Mode.AUTO) as p:
        # The rule's 40,000-event threshold is a label; the test lowers it rather than building 40,000 events.
        p.fire(
            {
                "alertname": "WmsWorkflowHistoryNearLimit",
                "workflow_id": wid,
                "namespace": "wms",
                "workflow_type": "ReprocessingOrchestrationWorkflow",
                "history_threshold": "900",
            }
        )
        [waiting] = await p.runs(status="awaiting_approval")
        assert await status(world, wid) == WorkflowExecutionStatus.RUNNING
        assert waiting.gate is not None and [w.step for w in waiting.gate.request.writes if w.gated] == ["terminate"]
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    assert await status(world, wid) == WorkflowExecutionStatus.TERMINATED
    restarted = world.client.get_workflow_handle(f"{wid}-retry")
    assert (await restarted.describe()).status == WorkflowExecutionStatus.RUNNING
    history = await restarted.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert (await world.client.data_converter.decode(started.input.payloads)) == [{"timers": 500}]
    await restarted.terminate("test cleanup")
    assert state.gate is not None and state.gate.approved_by == ["U_ONCALL"]


async def test_a_workflow_stuck_on_a_failing_activity_is_cancelled_not_terminated(world: World) -> None:
    """Section 9 / option C: with an activity failing again and again, the run cancels the workflow."""
    wid = f"order-fulfillment-ORD-{uuid.uuid4().hex[:5]}"
    handle = await world.client.start_workflow(
        "OrderFulfillmentWorkflow", {"orderId": "ORD-1"}, id=wid, task_queue=world.queue
    )
    for _ in range(100):
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].attempt >= 5:
            break
        await asyncio.sleep(0.1)
    world.exporter.stuck[wid] = {"workflow_type": "OrderFulfillmentWorkflow"}
    async with running(world, Mode.AUTO) as p:
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert {s.id: s.status for s in state.steps if s.phase == "act"}["cancel"] == "ok"
    assert await status(world, wid) == WorkflowExecutionStatus.CANCELED


async def test_bulk_termination_is_capped_and_gated(world: World) -> None:
    """Section 10: a runaway type's running executions are terminated only after approval, each named, capped."""
    ids = []
    for i in range(3):
        handle = await world.client.start_workflow(
            "ReprocessingOrchestrationWorkflow",
            {"timers": 1},
            id=f"runaway-{i}-{uuid.uuid4().hex[:5]}",
            task_queue=world.queue,
        )
        ids.append(handle.id)
    other = await planning(world)
    world.exporter.stuck.clear()
    for _ in range(50):  # visibility is eventually consistent
        found = [
            e
            async for e in world.client.list_workflows(
                "WorkflowType = 'ReprocessingOrchestrationWorkflow' AND ExecutionStatus = 'Running'"
            )
        ]
        if {e.id for e in found} >= set(ids):
            break
        await asyncio.sleep(0.2)
    async with running(world, Mode.AUTO) as p:
        p.fire(
            {
                "alertname": "WmsWorkflowRunaway",
                "workflow_type": "ReprocessingOrchestrationWorkflow",
                "namespace": "wms",
            }
        )
        [waiting] = await p.runs(status="awaiting_approval")
        assert [await status(world, i) for i in ids] == [WorkflowExecutionStatus.RUNNING] * 3
        assert waiting.gate is not None and "cap: max_targets 100" in waiting.gate.request.writes[0].blast_radius
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    assert [await status(world, i) for i in ids] == [WorkflowExecutionStatus.TERMINATED] * 3
    assert await status(world, other) == WorkflowExecutionStatus.RUNNING
    history = await world.client.get_workflow_handle(ids[0]).fetch_history()
    reason = history.events[-1].workflow_execution_terminated_event_attributes.reason
    assert reason.startswith(f"remediate run {state.run_id} step terminate-all: Emergency stop")
