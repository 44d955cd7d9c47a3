"""A busy governor is not a down one: the ask activity answers `wait` (governor_busy) while Temporal answers, and
fails (so the run ends governor_unavailable) only when Temporal cannot be reached; the run's patience grows with
the queue in front of it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from temporalio.exceptions import ApplicationError

from service.durable.policy_activities import PolicyActivities, PolicyMetrics
from service.rails.governance import Answer, Ask, Limits, Occurrence, Release, Report, Tripped
from service.rails.governor_state import BUSY_AT_MOST
from service.rails.kill_switch import SwitchBoard
from service.runs.governor_policy import BUSY_PATIENCE, busy_bound
from service.runs.switch_watch import SwitchWatch
from service.vocabulary.approvals import NoNotifier
from service.vocabulary.errors import TemporalUnavailable

ASK = Ask(run_id="r", playbook="p", key="k", limits=Limits())


class Governor:
    """The governor as a worker reaches it, answering slowly, failing, or not at all, with Temporal up or down."""

    def __init__(self, delay: float = 0.0, failing: bool = False, reachable: bool = True) -> None:
        self.delay, self.failing, self.up = delay, failing, reachable

    async def ask(self, ask: Ask) -> Answer:
        await asyncio.sleep(self.delay)
        if self.failing:
            raise TemporalUnavailable("no answer in time while asking the governor of p")
        return Answer(verdict="grant")

    async def release(self, release: Release) -> None: ...

    async def report(self, report: Report) -> Tripped:
        return Tripped()

    async def occurred(self, occurrence: Occurrence) -> None: ...

    async def board(self) -> SwitchBoard:
        return SwitchBoard()

    async def switch_seen(self, version: int) -> None: ...

    def queued(self) -> int:
        return 41

    async def reachable(self) -> bool:
        return self.up


def activities(governor: Governor) -> PolicyActivities:
    watch = SwitchWatch(governor.board, poll=10)
    return PolicyActivities(governor, None, NoNotifier(), PolicyMetrics(CollectorRegistry()), watch, patience=0.05)


async def test_a_slow_governor_makes_the_run_wait_with_its_place_behind_the_queue() -> None:
    """No answer within the activity's patience: `wait`, limit governor_busy, placed behind the 41 queued asks."""
    answer = await activities(Governor(delay=10)).ask(ASK)
    assert (answer.verdict, answer.limit, answer.place) == ("wait", "governor_busy", 42)


async def test_an_unanswered_update_with_temporal_up_is_busy_and_with_temporal_down_is_a_failure() -> None:
    """The same TemporalUnavailable is `busy` when Temporal passes a health check, and an activity failure (retried,
    then governor_unavailable) when it does not."""
    busy = await activities(Governor(failing=True, reachable=True)).ask(ASK)
    assert busy.verdict == "wait" and busy.limit == "governor_busy"
    with pytest.raises(ApplicationError, match="no answer in time"):
        await activities(Governor(failing=True, reachable=False)).ask(ASK)


def test_patience_with_a_busy_governor_grows_with_the_queue_and_is_bounded() -> None:
    """Two minutes with nothing queued in front, half a second more per queued ask, never more than 30 minutes."""
    assert busy_bound(0) == BUSY_PATIENCE
    assert busy_bound(100) == BUSY_PATIENCE + timedelta(seconds=50)
    assert busy_bound(1_000_000) == BUSY_AT_MOST
