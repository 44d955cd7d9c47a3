"""RemediationWorkflow: one run as a Temporal workflow; deterministic, no I/O imports."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from service.durable.retries import (
        AUDIT_RETRY,
        FINAL_AUDIT_RETRY,
        LOCAL_RETRY_THRESHOLD,
        failure_reason,
        retry_policy,
    )
    from service.durable.run_messages import RunMessages
    from service.playbooks.shelf import SHELF
    from service.playbooks.steps import StepBase
    from service.rails.governance import TURN
    from service.runs.audit import FINAL, RECORD_AUDIT, AuditSnapshot
    from service.runs.engine import Run, internal_error
    from service.runs.governor_policy import GovernorPolicy, Turn
    from service.runs.shadow import watch
    from service.runs.state import (
        PRIOR_ATTEMPTS,
        RUN_STEP,
        SETTLE,
        PriorAttempts,
        RunInput,
        RunStart,
        RunState,
        RunTerms,
        StepRequest,
        StepResult,
    )
    from service.vocabulary.approvals import Decision, DecisionRecord, Gate
    from service.vocabulary.errors import PermanentStepError, WriteRefused
    from service.vocabulary.modes import Mode


class _WorkflowClock:
    def now(self) -> datetime:
        return workflow.now()

    async def sleep(self, seconds: float) -> None:
        await workflow.sleep(seconds)


@workflow.defn(name="RemediationWorkflow")
class RemediationWorkflow:
    """Diagnose, plan, gate, act, verify; `resolve` stops writes that have not started, `decide` answers a gate."""

    def __init__(self) -> None:
        self._resolved = False
        self._turn = Turn()
        self._run: Run | None = None
        self._input: RunInput | None = None
        self._early: list[DecisionRecord] = []
        self._read_locally = False  # reads ran as local activities since the last workflow task boundary
        self._audit_seq = 0  # snapshots sent to the audit store; a newer one replaces an older one
        self._messages = RunMessages()  # the approval request and the outcome message

    @workflow.run
    async def run(self, start: RunStart) -> RunState:
        try:
            # The playbook from this process's shelf, by its document's digest: decoded once per worker, not per run.
            return await self._run_to_end(start.resolved(SHELF))
        except (ApplicationError, workflow.NondeterminismError):
            raise  # our own RunFailed; a changed workflow is fixed by deploying code, not by failing the run
        except Exception as exc:  # noqa: BLE001 - the workflow's boundary: no error may fail its task for ever
            return await self._stopped(start, exc)

    async def _stopped(self, run: RunTerms, exc: Exception) -> RunState:
        """An error outside the engine's own boundary (our bug, a value no code foresaw) ends the run with the reason,
        recorded, instead of a workflow task that fails and is retried for ever. A run that had already reached its
        outcome keeps it (and completes: a failed execution could be attempted again)."""
        workflow.logger.error("run %s stopped by an internal error: %r", run.run_id, exc)
        if self._run is None:
            raise ApplicationError(
                f"run failed: {internal_error(exc, 0)}", type="RunFailed", non_retryable=True
            ) from exc
        state, ended = self._run.state, self._run.state.status in FINAL
        if ended:
            state.reason = f"{state.reason}; afterwards {internal_error(exc, self._run.attempted)}"
        else:
            state.status, state.reason = "failed", internal_error(exc, self._run.attempted)
            state.finished_at = workflow.now()
        try:
            await self._record(final=True)
        except Exception as again:  # noqa: BLE001 - recording is best effort here; the outcome itself must land
            workflow.logger.error("run %s: its last record failed too: %r", run.run_id, again)
        if ended:
            return state
        raise ApplicationError(f"run failed: {state.reason}", state, type="RunFailed", non_retryable=True) from exc

    async def _run_to_end(self, run: RunInput) -> RunState:
        self._input = run
        self._run = Run(
            run,
            self._execute_activity,
            _WorkflowClock(),
            resolved=lambda: self._resolved,
            gatekeeper=self._gatekeeper,
            settle=self._settle,
            record=self._record,
            acting=self._acting,
            check_rendered=workflow.patched("check-rendered-params"),  # runs started before replay without it
        )
        # One start time wherever the run is read: Temporal's list and the audit trail show the same instant.
        self._run.state.started_at = workflow.info().start_time
        self._run.policy = governor = GovernorPolicy(self._run.state, lambda: self._resolved, self._turn)
        # A run started as a first attempt skips the visibility query: its id had no execution before.
        prior = PriorAttempts() if run.first_attempt else await self._prior_attempts(run)
        if not prior.count:
            await governor.occurred(run)
        self._run.state.attempt = prior.count + 1
        if prior.count >= run.durability.max_attempts:
            state = self._run.stop_before_start(
                "blocked_by_policy",
                f"this occurrence already failed {prior.count} time(s); not attempted again "
                f"(REMEDIATE_MAX_ATTEMPTS_PER_OCCURRENCE={run.durability.max_attempts})",
            )
            await self._announce(ended=True)
            await self._record(final=True)
            return state
        await self._back_off(run, prior)
        state = await self._run.execute_run()
        if run.mode == Mode.SHADOW and state.status == "succeeded":
            await watch(run, state, self._execute_activity, _WorkflowClock(), self._until_resolved, self._record)
        if self._run.attempted and run.governance.governor and state.status in ("succeeded", "failed"):
            await governor.effectiveness(run, state, lambda: self._resolved)
        gate = state.gate
        if gate is not None:
            await asyncio.gather(*self._messages.requests)  # the request must exist before its outcome is shown
            if gate.message:
                await self._messages.show(gate, run.approval_channel, outcome=f"{state.status}: {state.reason}")
        await self._announce(ended=True)
        await self._record(final=True)
        if state.status == "failed":
            # A failed execution lets a later delivery of the same occurrence start it again (bounded above).
            raise ApplicationError(f"run failed: {state.reason}", state, type="RunFailed", non_retryable=True)
        return state

    async def _until_resolved(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._resolved, timeout=max(seconds, 0.001))
        return self._resolved

    async def _prior_attempts(self, run: RunInput) -> PriorAttempts:
        """Earlier failed executions of this occurrence, from visibility (a local activity: no extra task)."""
        try:
            prior: PriorAttempts = await workflow.execute_local_activity(
                PRIOR_ATTEMPTS,
                run.run_id,
                result_type=PriorAttempts,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except FailureError as exc:
            workflow.logger.warning("cannot count earlier attempts of %s: %s", run.run_id, failure_reason(exc))
            return PriorAttempts()
        return prior

    async def _back_off(self, run: RunInput, prior: PriorAttempts) -> None:
        if not prior.count or prior.last_closed_at is None:
            return
        not_before = prior.last_closed_at + timedelta(seconds=run.durability.attempt_backoff * 2 ** (prior.count - 1))
        wait = (not_before - workflow.now()).total_seconds()
        if wait > 0:
            assert self._run is not None  # noqa: S101 - set above
            self._run.state.reason = f"attempt {prior.count + 1} waits {wait:.0f}s after the last failure"
            await workflow.sleep(wait)
            self._run.state.reason = ""

    async def _execute_activity(self, step: StepBase, request: StepRequest) -> StepResult:
        assert self._input is not None  # noqa: S101 - set before any step runs
        durability = self._input.durability
        heartbeat = timedelta(seconds=durability.heartbeat_timeout)
        policy = retry_policy(step, request.dry_run, durability.ledgers)
        try:
            if step.effect == "read":
                self._read_locally = True
                # Reads are short and safe to repeat: a local activity runs in this workflow task, with no round
                # trip through the server's task queue; the history still shows each one as a marker.
                local: StepResult = await workflow.execute_local_activity(
                    RUN_STEP,
                    request,
                    result_type=StepResult,
                    start_to_close_timeout=timedelta(seconds=request.timeout_seconds),
                    retry_policy=policy,
                    summary=f"{step.id}: {step.action}",
                )
                return local
            result: StepResult = await workflow.execute_activity(
                RUN_STEP,
                request,
                result_type=StepResult,
                start_to_close_timeout=timedelta(seconds=request.timeout_seconds) + heartbeat,
                heartbeat_timeout=heartbeat,
                retry_policy=policy,
                summary=f"{step.id}: {step.action}",
            )
        except FailureError as exc:
            refused = isinstance(exc.cause, ApplicationError) and exc.cause.type == "WriteRefused"
            raise (WriteRefused if refused else PermanentStepError)(failure_reason(exc)) from exc
        return result

    async def _record(self, final: bool = False) -> None:
        """Append the run as it is now to the audit store, when one is configured, and its end to the metrics in any
        case. A local activity: no round trip through the server, and its input is not copied into the history."""
        if self._input is None or self._run is None or not (final or self._input.durability.audit):
            return
        self._audit_seq += 1
        try:
            await workflow.execute_local_activity(
                RECORD_AUDIT,
                AuditSnapshot(seq=self._audit_seq, state=self._run.state, final=final),
                result_type=int,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(minutes=15 if final else 1),
                retry_policy=FINAL_AUDIT_RETRY if final else AUDIT_RETRY,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                summary="audit",
            )
        except FailureError as exc:
            # The next snapshot carries everything this one had; only a lost last one leaves the record behind.
            workflow.logger.warning(
                "audit record %d of %s not written: %s", self._audit_seq, self._input.run_id, failure_reason(exc)
            )

    def _acting(self) -> None:
        """The first real write starts: announce it without holding the write up (the end updates the message)."""
        if self._input is not None and self._run is not None:
            self._messages.acting(self._input, self._run)

    async def _announce(self, ended: bool) -> None:
        if self._input is not None and self._run is not None:
            await self._messages.announce(self._input, self._run, ended)

    async def _settle(self) -> None:
        """Before a write that follows reads: end this workflow task. The reads ran as local activities inside it,
        and a signal that came meanwhile (a `resolved`) is delivered only in the next one."""
        if self._read_locally:
            self._read_locally = False
            # A regular activity is the cheapest boundary: a timer takes about a second to fire.
            await workflow.execute_activity(
                SETTLE, start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=5)
            )

    async def _gatekeeper(self, gate: Gate) -> None:
        for early in self._early:
            gate.decisions.append(early.model_copy(update={"outcome": "ignored", "reason": "before the gate opened"}))
        assert self._input is not None  # noqa: S101 - set before any gate opens
        self._messages.request(gate, self._input.approval_channel)
        await self._record()
        remaining = (gate.request.expires_at - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(lambda: gate.status != "open" or self._stops(), timeout=max(remaining, 0.001))
        except TimeoutError:
            gate.close("expired")
        if self._stops():
            gate.close("resolved")
        if gate.message:
            self._messages.request(gate, self._input.approval_channel)
        await self._record()

    def _stops(self) -> bool:
        """Whether the alert's `resolved` stops this run (its playbook may say its own fix resolves it)."""
        return self._resolved and (self._input is None or self._input.playbook.stop_when_resolved)

    @workflow.signal
    def resolve(self) -> None:
        """Alertmanager sent `resolved` for this occurrence."""
        self._resolved = True

    @workflow.signal(name=TURN)
    def turn(self) -> None:
        """A slot of its playbook freed and this run is next in line: it asks now, not at its next poll."""
        self._turn.came = True

    @workflow.signal
    def decide(self, decision: Decision) -> None:
        """An approve or reject from a notifier, the API or the CLI; the gate decides whether it counts."""
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
