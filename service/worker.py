"""The Temporal worker that runs RemediationWorkflow, DeliveryWorkflow, GovernorWorkflow and their activities."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from service.activities import StepActivities
from service.delivery_workflow import DeliveryWorkflow
from service.governance import governor_queue
from service.governor_workflow import GovernorWorkflow
from service.kill_switch import switch_queue
from service.kill_switch_workflow import KillSwitchWorkflow
from service.workflows import RemediationWorkflow

# Deterministic libraries the workflow uses. Jinja2 imports parts of itself lazily while compiling, which the
# sandbox would otherwise re-import and refuse (it creates locks); ours are pure and need no per-run re-import.
PASSTHROUGH = (
    "jinja2",
    "markupsafe",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "ruamel",
    "pglast",
    "re2",
    "service",
    "sentry_sdk",
)


class Workers:
    """The run worker and the governor's worker of one process, run and stopped together."""

    def __init__(self, *workers: Worker) -> None:
        self.workers = workers

    async def run(self) -> None:
        """Until both stop; if one fails, the other is shut down and the failure raised."""
        tasks = [asyncio.create_task(w.run()) for w in self.workers]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for worker, task in zip(self.workers, tasks, strict=True):
                if not task.done():
                    await worker.shutdown()  # in order, as in shutdown()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        """In order: the run worker drains first (its last writes still ask and release), the governor last."""
        for worker in self.workers:
            await worker.shutdown()


def create_worker(
    client: Client,
    task_queue: str,
    activities: StepActivities,
    max_concurrent_activities: int = 100,
    rails: Sequence[Callable[..., Any]] = (),
    governor_activities: Sequence[Callable[..., Any]] = (),
    graceful_shutdown: timedelta = timedelta(seconds=30),
    interceptors: Sequence[Interceptor] = (),
) -> Workers:
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
    # The governor has its own task queue, so its answers never wait behind a storm of run tasks.
    governor = Worker(
        client,
        task_queue=governor_queue(task_queue),
        workflows=[GovernorWorkflow],
        activities=list(governor_activities),
        workflow_runner=runner,
        graceful_shutdown_timeout=graceful_shutdown,
    )
    # The kill switch has a queue of its own too: reading it never waits behind the governor's asks.
    switch = Worker(
        client,
        task_queue=switch_queue(task_queue),
        workflows=[KillSwitchWorkflow],
        workflow_runner=runner,
        graceful_shutdown_timeout=graceful_shutdown,
    )
    return Workers(
        Worker(
            client,
            task_queue=task_queue,
            workflows=[RemediationWorkflow, DeliveryWorkflow],
            activities=[*activities.all(), *rails],
            max_concurrent_activities=max_concurrent_activities,
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful_shutdown,  # activities in flight finish after SIGTERM, within this
            interceptors=interceptors,
        ),
        governor,
        switch,  # last: the run worker's last writes still look at the switch while it drains
    )
