"""The governor as a run's Policy: asks through local activities before each write and fails closed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from service.playbooks.steps import StepBase
from service.rails.governance import (
    ALERT_FIRING,
    GOVERNOR_ASK,
    GOVERNOR_EFFECTIVENESS,
    GOVERNOR_OCCURRED,
    GOVERNOR_RELEASE,
    SILENCE_CREATE,
    SILENCE_EXPIRE,
    AlertQuery,
    Answer,
    Ask,
    Effectiveness,
    Occurrence,
    Release,
    Report,
    SilenceRef,
    SilenceRequest,
    Tripped,
)
from service.rails.governor_state import BUSY_AT_MOST, WAIT_AT_MOST, Limits
from service.runs.policy import ModeLadder
from service.runs.state import RunInput, RunState
from service.vocabulary.durations import written

# An ask is safe to repeat (a run already granted is renewed, not counted again). Retries are for a governor that
# cannot be reached: a busy one answers `wait` (governor_busy) and the run asks again, with patience (below).
ASK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))
ASK_WITHIN = timedelta(seconds=60)
ASK_ATTEMPT = timedelta(seconds=20)  # one attempt: the activity itself answers `wait` after ASK_PATIENCE (8 s)
BUSY_PATIENCE = timedelta(minutes=2)  # how long a run waits on a busy governor with nothing queued before it …
BUSY_PER_QUEUED = timedelta(milliseconds=500)  # … plus this per ask queued before its own, up to BUSY_AT_MOST
SILENCE_FOR = timedelta(hours=1)  # the silence ends by itself if nothing is left to expire it


def cause(exc: FailureError) -> str:
    """What went wrong: a local activity's failure arrives as the ApplicationError itself, a regular one's inside
    an ActivityError."""
    inner = exc.cause if isinstance(exc, ActivityError) else exc
    return inner.message if isinstance(inner, ApplicationError) else str(inner or exc)


def busy_bound(queued: int) -> timedelta:
    """How long a run waits on a governor that answers `busy`: grows with the queue in front of it, within bounds."""
    return min(BUSY_PATIENCE + queued * BUSY_PER_QUEUED, BUSY_AT_MOST)


def wait_bound(limits: Limits) -> timedelta:
    """How long a run waits for its turn over max_concurrent or an hourly limit."""
    return limits.wait_at_most or WAIT_AT_MOST


def poll_every(place: int) -> float:
    """Seconds before a waiting run asks again unless told its turn came (a release tells the next run at once).
    Each ask is a workflow task and grows the run's history, so a line of thousands polls rarely: every 5 s at the
    front, up to every 60 s far back (well inside WAIT_STALE)."""
    return min(5.0 + 0.1 * max(place - 1, 0), 60.0)


class Turn:
    """Set by the run's `turn` signal: a slot freed and this run is next in line, so it asks now."""

    def __init__(self) -> None:
        self.came = False


class GovernorPolicy(ModeLadder):
    """The mode ladder, then the governor: no answer from it means no write; over a limit that paces, the run waits
    for its turn (in order of arrival); a busy governor makes it wait, never refuses it."""

    def __init__(self, state: RunState, resolved: Callable[[], bool] = lambda: False, turn: Turn | None = None) -> None:
        self.state, self.resolved, self.turn = state, resolved, turn or Turn()

    async def before_write(self, run: RunInput, step: StepBase, key: str) -> Answer:
        if not run.governance.governor:
            return Answer(verdict="grant")
        since = workflow.now()
        status, waits, busy = self.state.status, wait_bound(run.governance.limits), timedelta()
        try:
            while True:
                self.turn.came = False  # before the ask: a turn told while it is answered is not lost
                answer = await self._ask(run, step, key, since)
                if answer.verdict != "wait":
                    return answer
                waited = workflow.now() - since
                if answer.limit == "governor_busy":
                    busy = busy_bound(answer.place)
                if waited >= (busy if answer.limit == "governor_busy" else waits):
                    return self._gave_up(answer, waited)
                self.state.status, self.state.place = "waiting_for_slot", answer.place
                self.state.reason = f"step {step.id!r} waits: {answer.reason}"
                await _until(lambda: self.resolved() or self.turn.came, poll_every(answer.place))
                if self.resolved():
                    return Answer(verdict="refuse", limit="resolved", reason="the alert resolved while it waited")
        finally:
            self.state.waited += (workflow.now() - since).total_seconds()
            if self.state.status == "waiting_for_slot":
                self.state.status, self.state.place, self.state.reason = status, 0, ""

    @staticmethod
    def _gave_up(answer: Answer, waited: timedelta) -> Answer:
        if answer.limit == "governor_busy":
            return Answer(
                verdict="refuse",
                limit="governor_unavailable",
                reason=f"the governor answered nothing but `busy` for {written(waited)}: no write without its grant",
            )
        return Answer(
            verdict="refuse",
            limit=answer.limit,
            reason=f"{answer.reason.rsplit('; place', 1)[0]}; waited {written(waited)} for a turn "
            "(limits.wait_at_most)",
            frees_at=answer.frees_at,
        )

    async def _ask(self, run: RunInput, step: StepBase, key: str, since: datetime) -> Answer:
        governance = run.governance
        ask = Ask(
            run_id=run.run_id,
            playbook=run.playbook.name,
            key=key,
            limits=governance.limits,
            max_writes_per_hour=governance.max_writes_per_hour,
            since=since,
        )
        try:
            answer: Answer = await workflow.execute_local_activity(
                GOVERNOR_ASK,
                ask,
                result_type=Answer,
                start_to_close_timeout=ASK_ATTEMPT,
                schedule_to_close_timeout=ASK_WITHIN,
                retry_policy=ASK_RETRY,
                summary=f"may {step.id} write?",
            )
        except FailureError as exc:
            return Answer(
                verdict="refuse",
                limit="governor_unavailable",
                reason=f"the governor did not answer ({cause(exc)}): no write without its grant",
            )
        return answer

    async def paused(self, run: RunInput) -> None:
        """Before a gate: give the slot back (the run stays counted for the hour and keeps its cooldown)."""
        if run.governance.governor:
            await self._release(run, wrote=True)

    async def acting(self, run: RunInput) -> None:
        """The first write is about to start: silence exactly this alert while the run acts and verifies."""
        governance = run.governance
        if not (governance.silence and governance.alertmanager) or self.state.silence:
            return
        request = SilenceRequest(
            connection=governance.alertmanager,
            labels=dict(run.alert.labels),
            run_id=run.run_id,
            until=workflow.now() + SILENCE_FOR,
        )
        try:
            ref: SilenceRef = await workflow.execute_activity(
                SILENCE_CREATE,
                request,
                result_type=SilenceRef,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="silence while fixing",
            )
        except FailureError as exc:  # a silence spares on-call a page; its absence must not stop a fix
            workflow.logger.warning("no silence for %s: %s", run.run_id, cause(exc))
            return
        self.state.silence = ref.id

    async def after_run(self, run: RunInput, wrote: bool, status: str) -> None:
        """Release the lease (a run that wrote nothing gets its budget back) and expire the silence at once."""
        governance = run.governance
        if self.state.silence and governance.alertmanager:
            try:
                await workflow.execute_activity(
                    SILENCE_EXPIRE,
                    SilenceRef(connection=governance.alertmanager, id=self.state.silence),
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=30)),
                    summary="expire the silence",
                )
            except FailureError as exc:
                workflow.logger.warning("silence %s of %s not expired: %s", self.state.silence, run.run_id, cause(exc))
        if governance.governor:
            await self._release(run, wrote)

    @staticmethod
    async def _release(run: RunInput, wrote: bool) -> None:
        try:
            await workflow.execute_local_activity(
                GOVERNOR_RELEASE,
                Release(run_id=run.run_id, wrote=wrote, playbook=run.playbook.name),
                start_to_close_timeout=ASK_ATTEMPT,
                schedule_to_close_timeout=ASK_WITHIN,
                retry_policy=ASK_RETRY,
                summary="release the lease",
            )
        except FailureError as exc:  # the lease runs out by itself
            workflow.logger.warning("lease of %s not released: %s", run.run_id, cause(exc))

    async def occurred(self, run: RunInput) -> None:
        """Tell the governor about this new occurrence (the storm counts them); reads go on if it cannot hear."""
        if not run.governance.governor or run.governance.limits.storm is None:
            return  # only a storm limit counts occurrences: no call for playbooks without one
        try:
            await workflow.execute_local_activity(
                GOVERNOR_OCCURRED,
                Occurrence(run_id=run.run_id, playbook=run.playbook.name, limits=run.governance.limits),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except FailureError as exc:
            workflow.logger.warning("occurrence of %s not counted: %s", run.run_id, cause(exc))

    async def effectiveness(self, run: RunInput, state: RunState, resolved: Callable[[], bool]) -> None:
        """After a run that wrote: did the alert stop firing within effective_within? Feeds the breaker."""
        governance = run.governance
        result: Effectiveness = "ineffective" if state.status == "failed" else "unknown"
        if state.status == "succeeded":
            state.effectiveness = "checking"
            result = await _stopped_firing(run, resolved)
        state.effectiveness = result
        try:
            tripped: Tripped = await workflow.execute_local_activity(
                GOVERNOR_EFFECTIVENESS,
                Report(run_id=run.run_id, playbook=run.playbook.name, result=result, limits=governance.limits),
                result_type=Tripped,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
            )
        except FailureError as exc:
            workflow.logger.warning("effectiveness of %s not reported: %s", run.run_id, cause(exc))
            return
        if tripped.opened:
            state.reason += (
                f"; breaker opened: {tripped.ineffective_in_a_row} ineffective run(s) in a row, so this playbook's "
                f"writes need approval until `remediate breaker reset {run.playbook.name}`"
            )


async def _stopped_firing(run: RunInput, resolved: Callable[[], bool]) -> Effectiveness:
    """Ask Alertmanager until the alert is gone (effective) or the window ends (ineffective)."""
    governance = run.governance
    deadline = workflow.now() + governance.effective_within
    if governance.alertmanager is None:  # nothing to ask: only a `resolved` already received tells
        return "effective" if resolved() else "unknown"
    every = min(15.0, max(governance.effective_within.total_seconds() / 10, 1.0))
    while True:
        if resolved():
            return "effective"
        try:
            firing: bool = await workflow.execute_local_activity(
                ALERT_FIRING,
                AlertQuery(connection=governance.alertmanager, labels=dict(run.alert.labels)),
                result_type=bool,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except FailureError as exc:
            workflow.logger.warning("cannot tell whether %s still fires: %s", run.run_id, cause(exc))
            return "unknown"
        if not firing:
            return "effective"
        left = (deadline - workflow.now()).total_seconds()
        if left <= 0:
            return "ineffective"
        await _until(resolved, min(every, left))


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    """Wait this long, or until the condition holds (True)."""
    try:
        await workflow.wait_condition(condition, timeout=max(seconds, 0.001))
    except TimeoutError:
        return False
    return True
