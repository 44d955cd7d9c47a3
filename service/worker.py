"""The Temporal worker that runs RemediationWorkflow and the step activity."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from service.activities import StepActivities
from service.workflows import RemediationWorkflow


def create_worker(
    client: Client, task_queue: str, activities: StepActivities, max_concurrent_activities: int = 100
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RemediationWorkflow],
        activities=[activities.run_step],
        max_concurrent_activities=max_concurrent_activities,
    )
