"""The replay's virtual clock: what happens next and when, and the runs in flight it moves."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from service.rails.governor_state import WAIT_STALE
from service.replay.planning import Plan
from service.runs.state import RunInput
from service.vocabulary.modes import Mode

EventKind = Literal["ask", "end", "check", "stay"]
FORGET_AFTER = timedelta(hours=24)  # a run id is remembered this long after its start (duplicates within it)
KEEP_ALIVE = WAIT_STALE - timedelta(seconds=10)  # a waiting run keeps its place at least this often, or it lapses
MIN_STEP = timedelta(milliseconds=100)  # a run asks again no sooner than this
# At one instant: runs end (and free slots) first, then runs ask, then polls that were left out keep places.
RANK: dict[EventKind, int] = {"end": 0, "check": 0, "ask": 1, "stay": 2}


@dataclass(frozen=True)
class Assumptions:
    """What replay cannot know from history, stated: the mode played, and how long a run that writes takes."""

    mode: Mode = Mode.AUTO
    acting_for: timedelta = timedelta(minutes=1)
    resolves_known: bool = True  # False (the audit trail's history): effectiveness is unknown, not ineffective


@dataclass
class RunInFlight:
    """One replayed run between its start and its end (or its effectiveness report)."""

    start: RunInput
    plan: Plan
    since: datetime
    approval: str = ""
    waiting: bool = False
    place: int = 0
    ended: bool = False
    wrote_at: datetime | None = None
    stay: datetime | None = None  # its next keep-alive

    @property
    def name(self) -> str:
        return self.start.playbook.name


@dataclass(order=True)
class Event:
    at: datetime
    rank: int
    seq: int
    kind: EventKind = field(compare=False)
    run_id: str = field(compare=False)


class Timeline:
    """The events to come, in time order (and by RANK within one instant, then as scheduled)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._seq = 0

    def at(self, when: datetime, kind: EventKind, run_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, Event(when, RANK[kind], self._seq, kind, run_id))

    def until(self, when: datetime) -> Iterator[Event]:
        """Each event due by `when`, including those scheduled meanwhile."""
        while self._events and self._events[0].at <= when:
            yield heapq.heappop(self._events)
