"""GovernorWorkflow: one shard of the governor (one playbook's rails), durable and shared by every replica."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from service.rails.exchange import decide, occurred
    from service.rails.governance import (
        ANNOUNCE,
        Answer,
        Ask,
        GovernorState,
        Message,
        Occurrence,
        Reply,
        Switch,
        SwitchChange,
    )
    from service.rails.governor import Governor

CONTINUE_AFTER = 2_000  # history events: keeps replay after a worker restart short; state is carried over
ANNOUNCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=10
)


@workflow.defn(name="GovernorWorkflow")
class GovernorWorkflow:
    """Holds one Governor; every change is an Update (answered once, in order) or the `occurred` signal."""

    @workflow.init
    def __init__(self, carried: GovernorState | None = None, continue_after: int = CONTINUE_AFTER) -> None:
        self._governor = Governor(carried.model_copy(deep=True) if carried else None)
        self._continue_after = continue_after
        self._announcements: list[str] = []

    @workflow.run
    async def run(self, carried: GovernorState | None = None, continue_after: int = CONTINUE_AFTER) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._announcements) or self._should_continue())
            while self._announcements:
                await self._announce(self._announcements.pop(0))
            if self._should_continue():
                # Let Updates already accepted finish first, so none is lost to the new run.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[self._governor.state, self._continue_after])

    def _should_continue(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._continue_after

    async def _announce(self, text: str) -> None:
        try:
            await workflow.execute_activity(
                ANNOUNCE,
                text,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=ANNOUNCE_RETRY,
                summary="policy announcement",
            )
        except FailureError as exc:
            workflow.logger.warning("could not announce %r: %s", text, exc)

    @workflow.update
    def exchange(self, messages: list[Message]) -> list[Reply]:
        """One worker's batch (asks, releases, reports), decided in order as if they came one after the other: one
        Update per worker per shard per tick, however many runs ask, so Temporal's in-flight limit is never met."""
        return [self._one(message) for message in messages]

    def _one(self, message: Message) -> Reply:
        reply, announcement = decide(self._governor, message, workflow.now())
        if announcement:
            self._announcements.append(announcement)
        return reply

    @workflow.update
    def ask(self, asks: list[Ask]) -> list[Answer]:
        """Asks alone (tests and tools); workers send `exchange`."""
        return [answer for a in asks if (answer := self._one(a).answer) is not None]

    @workflow.update
    def set_switch(self, change: SwitchChange) -> Switch:
        return self._governor.set_switch(change.on, change.by, change.reason, workflow.now(), change.playbook)

    @workflow.update
    def reset_breaker(self, playbook: str) -> None:
        self._governor.reset_breaker(playbook)

    @workflow.signal
    def occurred(self, occurrences: list[Occurrence]) -> None:
        for occurrence in occurrences:
            announcement = occurred(self._governor, occurrence, workflow.now())
            if announcement:
                self._announcements.append(announcement)

    @workflow.query
    def state(self) -> GovernorState:
        return self._governor.state

    @workflow.query
    def waiting(self) -> int:
        """How many runs wait in line: what the gauge needs, without the whole state (large in a storm)."""
        return len(self._governor.state.waiting)
