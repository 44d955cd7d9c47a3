"""RemediationWorkflow: one run as a Temporal workflow; deterministic, no I/O imports."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from service.engine import RUN_STEP, Run, RunInput, RunState, StepRequest, StepResult
    from service.errors import PermanentStepError
    from service.steps import StepBase


class _WorkflowClock:
    def now(self) -> datetime:
        return workflow.now()

    async def sleep(self, seconds: float) -> None:
        await workflow.sleep(seconds)


def retry_policy(step: StepBase, dry_run: bool) -> RetryPolicy:
    """Reads retry transient errors; a write is sent once unless the playbook asks for more."""
    if step.retry is not None:
        attempts, interval, backoff = step.retry.attempts, step.retry.interval, step.retry.backoff
    elif step.effect == "read" or dry_run:
        attempts, interval, backoff = 3, timedelta(seconds=1), 2.0
    else:
        attempts, interval, backoff = 1, timedelta(seconds=1), 1.0
    return RetryPolicy(
        maximum_attempts=attempts,
        initial_interval=interval,
        backoff_coefficient=max(backoff, 1.0),
        non_retryable_error_types=["PermanentStepError", "GuardViolation", "ConfigError"],
    )


async def _execute_activity(step: StepBase, request: StepRequest) -> StepResult:
    try:
        result: StepResult = await workflow.execute_activity(
            RUN_STEP,
            request,
            result_type=StepResult,
            start_to_close_timeout=timedelta(seconds=request.timeout_seconds),
            retry_policy=retry_policy(step, request.dry_run),
            summary=f"{step.id}: {step.action}",
        )
    except ActivityError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        raise PermanentStepError(message) from exc
    return result


@workflow.defn(name="RemediationWorkflow")
class RemediationWorkflow:
    """Diagnose, plan, act, verify; a `resolved` signal stops writes that have not started."""

    def __init__(self) -> None:
        self._resolved = False
        self._run: Run | None = None

    @workflow.run
    async def run(self, run: RunInput) -> RunState:
        self._run = Run(run, _execute_activity, _WorkflowClock(), resolved=lambda: self._resolved)
        return await self._run.execute_run()

    @workflow.signal
    def resolve(self) -> None:
        """Alertmanager sent `resolved` for this occurrence."""
        self._resolved = True

    @workflow.query
    def state(self) -> RunState | None:
        return self._run.state if self._run else None
