"""DeliveryWorkflow: one webhook message made durable; it starts and resolves the message's runs, which outlive it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from service.runs.delivery import DELIVER, Delivery, DeliveryCounts

# Starting runs fails only while the service's own Temporal is away: keep trying, as Alertmanager would have.
DELIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)


@workflow.defn(name="DeliveryWorkflow")
class DeliveryWorkflow:
    """Starts every run of one message (deterministic ids and id policies) and signals `resolved`; then ends."""

    @workflow.run
    async def run(self, delivery: Delivery) -> DeliveryCounts:
        # A local activity: no task-queue round trip, and the message is not written to history a second time.
        counts: DeliveryCounts = await workflow.execute_local_activity(
            DELIVER,
            delivery,
            result_type=DeliveryCounts,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(hours=1),
            retry_policy=DELIVER_RETRY,
            summary=f"{len(delivery.starts)} run(s), {len(delivery.resolves)} resolved",
        )
        return counts
