"""RemediationWorkflow: one run as a Temporal workflow; deterministic, no I/O imports."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from service.approvals import Decision, DecisionRecord, Gate, Notice, Posted
    from service.engine import Run
    from service.errors import PermanentStepError
    from service.runs import NOTIFY_GATE, RUN_STEP, RunInput, RunState, StepRequest, StepResult
    from service.steps import StepBase

# Slack may be down or rate-limited: keep trying for a while, without holding up the wait for a decision.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)


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
    """Diagnose, plan, gate, act, verify; `resolve` stops writes that have not started, `decide` answers a gate."""

    def __init__(self) -> None:
        self._resolved = False
        self._run: Run | None = None
        self._input: RunInput | None = None
        self._early: list[DecisionRecord] = []
        self._notify_tasks: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, run: RunInput) -> RunState:
        self._input = run
        self._run = Run(
            run, _execute_activity, _WorkflowClock(), resolved=lambda: self._resolved, gatekeeper=self._gatekeeper
        )
        state = await self._run.execute_run()
        gate = state.gate
        if gate is not None:
            await asyncio.gather(*self._notify_tasks)  # the request must exist before its outcome is shown
            if gate.slack_ts:
                await self._notify(gate, outcome=f"{state.status}: {state.reason}")
        return state

    async def _gatekeeper(self, gate: Gate) -> None:
        for early in self._early:
            gate.decisions.append(early.model_copy(update={"outcome": "ignored", "reason": "before the gate opened"}))
        self._notify_tasks.append(asyncio.create_task(self._notify(gate)))
        remaining = (gate.request.expires_at - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(
                lambda: gate.status != "open" or self._resolved, timeout=max(remaining, 0.001)
            )
        except TimeoutError:
            gate.close("expired")
        if self._resolved:
            gate.close("resolved")
        if gate.slack_ts:
            self._notify_tasks.append(asyncio.create_task(self._notify(gate)))

    async def _notify(self, gate: Gate, outcome: str = "") -> None:
        assert self._input is not None  # noqa: S101 - set before any gate opens
        notice = Notice(gate=gate, channel=self._input.approval_channel, outcome=outcome)
        try:
            posted = await workflow.execute_activity(
                NOTIFY_GATE,
                notice,
                result_type=Posted,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=NOTIFY_RETRY,
                summary="approval request",
            )
        except ActivityError as exc:
            cause = exc.cause
            gate.notice = (
                f"Slack: {cause.message if isinstance(cause, ApplicationError) else exc}; "
                "decide through the API or `remediate approve`"
            )
            return
        if posted.ts:
            gate.slack_channel, gate.slack_ts = posted.channel, posted.ts

    @workflow.signal
    def resolve(self) -> None:
        """Alertmanager sent `resolved` for this occurrence."""
        self._resolved = True

    @workflow.signal
    def decide(self, decision: Decision) -> None:
        """An approve or reject from Slack, the API or the CLI; the gate decides whether it counts."""
        gate = self._run.state.gate if self._run else None
        if gate is None:
            self._early.append(
                DecisionRecord(
                    decision_id=decision.decision_id,
                    user=decision.user,
                    verdict=decision.verdict,
                    source=decision.source,
                    outcome="ignored",
                    at=workflow.now(),
                )
            )
            return
        gate.apply(decision, workflow.now())

    @workflow.query
    def state(self) -> RunState | None:
        return self._run.state if self._run else None
