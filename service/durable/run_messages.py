"""A run's messages, from inside its workflow: the approval request kept current, and the outcome message."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from service.durable.retries import NOTIFY_RETRY, failure_reason
    from service.runs.engine import Run
    from service.runs.state import NOTIFY_GATE, RunInput
    from service.vocabulary.approvals import Gate, MessageRef, Notice
    from service.vocabulary.outcomes import NOTIFY_OUTCOME, OutcomeNotice


class RunMessages:
    """The approval request (posted as a gate opens, updated as it closes and with the run's end) and the outcome
    message (posted as the first write starts, updated at the end): one message per run, through activities."""

    def __init__(self) -> None:
        self.requests: list[asyncio.Task[None]] = []  # posts and updates of the approval request, in order
        self._outcome: MessageRef | None = None  # the run's outcome message, once posted
        self._outcome_seq = 0
        self._outcome_posting: asyncio.Task[None] | None = None

    def acting(self, run: RunInput, engine: Run) -> None:
        if not run.durability.notify:
            return
        if workflow.patched("outcome-notifications"):  # runs started before this existed replay without it
            self._outcome_posting = asyncio.create_task(self.announce(run, engine, ended=False))

    async def announce(self, run: RunInput, engine: Run, ended: bool) -> None:
        """Post or update the run's outcome message, when its playbook's `notify.on` asks for this run. A run with
        an approval message is told there instead: one message per run."""
        if not run.durability.notify:
            return
        if ended and self._outcome_posting is not None:
            await self._outcome_posting  # the update needs the first message's id
        state = engine.state
        wrote = engine.attempted > 0 and not state.dry_run
        if (state.gate is not None and state.gate.message) or not run.playbook.notify.wants(
            state.status if ended else "acting", wrote or not ended
        ):
            return
        self._outcome_seq += 1
        notice = OutcomeNotice(
            run_id=run.run_id,
            playbook=state.playbook,
            alertname=state.alertname,
            labels=state.labels,
            mode=state.mode.value,
            status=state.status,
            reason=state.reason,
            writes=[
                f"{r.id}: {r.action} on {r.connection}, {len(r.targets)} target(s)"
                + (f": {', '.join(r.targets[:5])}" if r.targets else "")
                for r in state.steps
                if r.effect == "write" and r.status == "ok"
            ],
            ended=ended,
            channel=run.playbook.notify.channel or run.approval_channel,
            message=self._outcome,
            sequence=self._outcome_seq,
        )
        try:
            posted = await _posted(NOTIFY_OUTCOME, notice, "outcome message")
        except FailureError as exc:
            workflow.logger.warning("outcome message for %s not shown: %s", run.run_id, failure_reason(exc))
            return
        if posted.id:
            self._outcome = posted

    def request(self, gate: Gate, channel: str | None) -> None:
        """Post or update the gate's request, without holding up the wait for a decision."""
        self.requests.append(asyncio.create_task(self.show(gate, channel)))

    async def show(self, gate: Gate, channel: str | None, outcome: str = "") -> None:
        notice = Notice(gate=gate, channel=channel, outcome=outcome)
        try:
            posted = await _posted(NOTIFY_GATE, notice, "approval request")
        except FailureError as exc:
            where = "decide through the API or `remediate approve`"
            gate.notice = f"the approval request was not shown: {failure_reason(exc)}; {where}"
            return
        if posted.id:
            gate.message = posted


async def _posted(activity: str, notice: Notice | OutcomeNotice, summary: str) -> MessageRef:
    """Where a notifier showed (or updated) a message; a notifier that stays down raises FailureError."""
    posted: MessageRef = await workflow.execute_activity(
        activity,
        notice,
        result_type=MessageRef,
        start_to_close_timeout=timedelta(seconds=15),
        retry_policy=NOTIFY_RETRY,
        summary=summary,
    )
    return posted
