"""The Temporal worker that runs RemediationWorkflow, DeliveryWorkflow, GovernorWorkflow and their activities."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from service.durable.activities import StepActivities
from service.durable.budget_workflow import BudgetWorkflow
from service.durable.delivery_workflow import DeliveryWorkflow
from service.durable.governor_workflow import GovernorWorkflow
from service.durable.kill_switch_workflow import KillSwitchWorkflow
from service.durable.workflows import RemediationWorkflow
from service.rails.governance import governor_queue
from service.rails.kill_switch import switch_queue

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


RUN_WORKFLOWS = (RemediationWorkflow, DeliveryWorkflow)  # the run worker's; the replay test replays these


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every workflow of ours runs in (and the replay test replays in)."""
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


AFTER_WITHIN = 5.0  # seconds for the budget's hand-back after the runs have drained
RAILS_GRACE = timedelta(seconds=5)  # the governor's and the board's own work is small: they stop fast
log = logging.getLogger("remediate")


class Workers:
    """The run worker and the governor's worker of one process, run and stopped together; `after` runs once all
    have stopped (the worker hands back the budget it holds)."""

    def __init__(self, *workers: Worker, after: Callable[[], Awaitable[None]] | None = None) -> None:
        self.workers, self.after = workers, after

    async def run(self) -> None:
        """Until both stop; if one fails, the other is shut down and the failure raised."""
        tasks = [asyncio.create_task(w.run()) for w in self.workers]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            await self._stop([w for w, task in zip(self.workers, tasks, strict=True) if not task.done()])
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        await self._stop(list(self.workers))

    async def _stop(self, running: list[Worker]) -> None:
        """The run worker drains first, within its grace (its last writes still ask, release and look at the
        switch); then its unused budget goes back; then the governor and the board stop together, quickly."""
        runs, rest = self.workers[0], [w for w in self.workers[1:] if w in running]
        if runs in running:
            await runs.shutdown()
        if self.after is not None:
            try:
                await asyncio.wait_for(self.after(), AFTER_WITHIN)
            except TimeoutError:
                log.warning("worker: unused budget not handed back in time; it ends by itself, counted in full")
        await asyncio.gather(*(w.shutdown() for w in rest))


def create_worker(
    client: Client,
    task_queue: str,
    activities: StepActivities,
    max_concurrent_activities: int = 100,
    rails: Sequence[Callable[..., Any]] = (),
    governor_activities: Sequence[Callable[..., Any]] = (),
    graceful_shutdown: timedelta = timedelta(seconds=30),
    interceptors: Sequence[Interceptor] = (),
    cached_runs: int = 500,
    concurrent_tasks: int = 50,
    after: Callable[[], Awaitable[None]] | None = None,
) -> Workers:
    """Three workers: runs, the governor (shards and budget), the kill switch board. Memory stays bounded by
    `cached_runs` (open runs kept in memory; others are replayed from history when they wake) and by
    `concurrent_tasks` (run workflow tasks at once), whatever number of runs is open."""
    runner = workflow_runner()
    # The governor has its own task queue, so its answers never wait behind a storm of run tasks.
    governor = Worker(
        client,
        task_queue=governor_queue(task_queue),
        workflows=[GovernorWorkflow, BudgetWorkflow],
        activities=list(governor_activities),
        workflow_runner=runner,
        graceful_shutdown_timeout=min(graceful_shutdown, RAILS_GRACE),
    )
    # The kill switch has a queue of its own too: reading it never waits behind the governor's asks.
    switch = Worker(
        client,
        task_queue=switch_queue(task_queue),
        workflows=[KillSwitchWorkflow],
        workflow_runner=runner,
        graceful_shutdown_timeout=min(graceful_shutdown, RAILS_GRACE),
    )
    return Workers(
        Worker(
            client,
            task_queue=task_queue,
            workflows=list(RUN_WORKFLOWS),
            activities=[*activities.all(), *rails],
            max_concurrent_activities=max_concurrent_activities,
            max_concurrent_workflow_tasks=concurrent_tasks,
            max_cached_workflows=cached_runs,
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful_shutdown,  # activities in flight finish after SIGTERM, within this
            interceptors=interceptors,
        ),
        governor,
        switch,  # last: the run worker's last writes still look at the switch while it drains
        after=after,
    )
