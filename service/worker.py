"""The Temporal worker that runs RemediationWorkflow, GovernorWorkflow and their activities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from service.activities import StepActivities
from service.governor_workflow import GovernorWorkflow
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
)


def create_worker(
    client: Client,
    task_queue: str,
    activities: StepActivities,
    max_concurrent_activities: int = 100,
    rails: Sequence[Callable[..., Any]] = (),
    graceful_shutdown: timedelta = timedelta(seconds=30),
) -> Worker:
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RemediationWorkflow, GovernorWorkflow],
        activities=[*activities.all(), *rails],
        max_concurrent_activities=max_concurrent_activities,
        workflow_runner=runner,
        graceful_shutdown_timeout=graceful_shutdown,  # activities in flight finish after SIGTERM, within this
    )
