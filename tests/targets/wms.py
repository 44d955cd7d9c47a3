"""Runbook 002's target: WMS workflows on Temporal that get stuck, and the WMS exporter that reports them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

# The exporter beside the workflows is Starlette: the sandbox must not import it again per workflow (anyio's sniffio
# builds a threading.local at import, which the sandbox refuses).
with workflow.unsafe.imports_passed_through():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route


@activity.defn
async def create_pick_task(order: str) -> str:
    raise RuntimeError(f"picking-service timed out for {order}")


@workflow.defn(name="PlanningWorkflow")
class PlanningWorkflow:
    """Waits for `waveAssigned`, the signal the runbook's section 8 says gets lost."""

    def __init__(self) -> None:
        self.wave: dict[str, Any] | None = None

    @workflow.run
    async def run(self, order: dict[str, Any]) -> str:
        await workflow.wait_condition(lambda: self.wave is not None)
        assert self.wave is not None
        return f"{order['orderId']} planned in {self.wave['waveId']}"

    @workflow.signal(name="waveAssigned")
    def wave_assigned(self, wave: dict[str, Any]) -> None:
        self.wave = wave


@workflow.defn(name="OrderFulfillmentWorkflow")
class OrderFulfillmentWorkflow:
    """Keeps retrying an activity that times out; cancellable, as option C needs."""

    @workflow.run
    async def run(self, order: dict[str, Any]) -> str:
        return await workflow.execute_activity(
            create_pick_task,
            order["orderId"],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=50),
                backoff_coefficient=1.0,
                maximum_interval=timedelta(milliseconds=100),
            ),
        )


@workflow.defn(name="ReprocessingOrchestrationWorkflow")
class ReprocessingOrchestrationWorkflow:
    """Grows a long history and then waits: the history-size case of section 7."""

    @workflow.run
    async def run(self, batch: dict[str, Any]) -> None:
        await asyncio.gather(*(workflow.sleep(0.01) for _ in range(int(batch["timers"]))))
        await workflow.wait_condition(lambda: False)


WORKFLOWS = [PlanningWorkflow, OrderFulfillmentWorkflow, ReprocessingOrchestrationWorkflow]
ACTIVITIES = [create_pick_task]


@dataclass
class WmsExporter:
    """The WMS's own gauge: how long each order's workflow has been in its current stage."""

    stuck: dict[str, dict[str, str]] = field(default_factory=dict)  # workflow id -> extra labels

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            lines = ["# TYPE wms_workflow_stage_age_seconds gauge"]
            for wid, labels in self.stuck.items():
                extra = "".join(f',{k}="{v}"' for k, v in labels.items())
                lines.append(f'wms_workflow_stage_age_seconds{{workflow_id="{wid}"{extra}}} 3600')
            return PlainTextResponse("\n".join(lines) + "\n")

        return Starlette(routes=[Route("/metrics", metrics)])
