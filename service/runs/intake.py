"""Intake, pure: which playbooks an alert starts or resolves, one delivery per message, and a memory of known runs."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from service.alerts.webhook import Alert, WebhookMessage, run_id
from service.playbooks.catalog import Catalog
from service.playbooks.playbook import Playbook
from service.rails.governance import Governance
from service.runs.delivery import Delivery, PlaybookTerms, delivery_id
from service.runs.state import Durability, RunStart
from service.vocabulary.modes import Mode, effective_mode


class RunStarter(Protocol):
    """Where runs start and hear that their alert resolved (the service's Temporal, in production)."""

    async def start(self, run: RunStart) -> bool:
        """Start the run; False when this occurrence already has one."""
        ...

    async def resolve(self, run_id: str) -> bool:
        """Tell the run its alert resolved; False when there is no open run."""
        ...


class SeenRuns:
    """A bounded, short memory of run ids known to exist, so re-deliveries skip the Temporal round trip.

    Entries expire after `ttl` seconds: a run that failed meanwhile may then be started again by a later
    delivery (Temporal's id policy and the workflow's attempt limit decide).
    """

    def __init__(self, size: int, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl, self._clock = size, ttl, clock
        self._ids = OrderedDict[str, float]()

    def __contains__(self, key: str) -> bool:
        expires = self._ids.get(key)
        if expires is None:
            return False
        if expires < self._clock():
            del self._ids[key]
            return False
        return True

    def add(self, key: str) -> None:
        if self._size <= 0 or self._ttl <= 0:
            return
        self._ids[key] = self._clock() + self._ttl
        self._ids.move_to_end(key)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


class Deliveries(Protocol):
    """Where a message becomes durable: one delivery workflow per message (the service's Temporal, in production)."""

    async def deliver(self, delivery: Delivery) -> bool:
        """Start the delivery; False when an identical one was already accepted."""
        ...


class Receiver:
    """Turns one webhook message into one durable delivery that starts its runs and resolves others."""

    def __init__(
        self,
        playbooks: Sequence[Playbook] | Catalog,
        deliveries: Deliveries,
        ceiling: Mode,
        seen: SeenRuns,
        approvers: Callable[[list[str]], list[str]] = list,
        channel: str | None = None,
        durability: Durability | None = None,
        governance: Callable[[Playbook], Governance] = lambda _: Governance(),
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = playbooks if isinstance(playbooks, Catalog) else Catalog.of(list(playbooks))
        self.deliveries, self.ceiling, self.seen = deliveries, ceiling, seen
        self.approvers, self.channel = approvers, channel
        self.durability, self.governance = durability or Durability(), governance
        self.window, self.clock = window, clock

    @property
    def playbooks(self) -> list[Playbook]:
        """The current set: a reload swaps it between two messages, never within one."""
        return self.catalog.playbooks

    def playbook_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.playbooks)

    def rails(self) -> dict[str, Governance]:
        """Each loaded playbook's rails as its runs would carry them now."""
        return {p.name: self.governance(p) for p in self.playbooks}

    def _terms(self, playbook: Playbook) -> PlaybookTerms:
        return PlaybookTerms(
            document=self.catalog.document(playbook.name),
            mode=effective_mode(self.ceiling, playbook.mode),
            approvers=self.approvers(playbook.approvers),
            approval_channel=playbook.approval_channel or self.channel,
            governance=self.governance(playbook),
            version=self.catalog.version(playbook.name),
        )

    def _window(self) -> int:
        # Without a dedupe window every message is its own delivery.
        now = self.clock()
        return int(now // self.window) if self.window >= 1 else int(now * 1_000_000)

    async def receive(self, message: WebhookMessage) -> dict[str, int]:
        """Match every alert, then make the message durable with one delivery workflow start, and answer.

        The delivery starts the runs (deterministic ids: one run per occurrence however often it is delivered)
        and signals `resolved`; runs known to this receiver are not delivered again within its memory.
        Temporal unreachable raises TemporalUnavailable (503), and Alertmanager sends the message again.
        """
        counts = {"started": 0, "duplicates": 0, "resolved": 0, "unmatched": 0}
        terms: dict[str, int] = {}  # playbook name -> its index in `carried`
        carried: list[PlaybookTerms] = []
        alerts: list[Alert] = []
        fresh: dict[str, tuple[int, int]] = {}  # run id -> (terms index, alert index), in message order
        resolves: list[str] = []
        playbooks = self.playbooks  # one set for the whole message, even if a reload lands meanwhile
        for alert in message.alerts:
            matched = False
            for playbook in playbooks:
                if playbook.match.matches(alert):
                    matched, key = True, run_id(playbook.name, alert)
                    if key in self.seen or key in fresh:
                        counts["duplicates"] += 1
                        continue
                    if playbook.name not in terms:
                        terms[playbook.name] = len(carried)
                        carried.append(self._terms(playbook))
                    if not alerts or alerts[-1] is not alert:
                        alerts.append(alert)
                    fresh[key] = (terms[playbook.name], len(alerts) - 1)
                elif playbook.match.closes(alert):
                    matched = True
                    resolves.append(run_id(playbook.name, alert))
            counts["unmatched"] += not matched
        if not fresh and not resolves:
            return counts
        delivery = Delivery(
            delivery_id=delivery_id(list(fresh), resolves, self._window()),
            durability=self.durability,
            terms=carried,
            alerts=alerts,
            starts=list(fresh.values()),
            resolves=resolves,
        )
        accepted = await self.deliveries.deliver(delivery)
        counts["started" if accepted else "duplicates"] += len(fresh)
        counts["resolved"] += len(resolves)
        for key in fresh:
            self.seen.add(key)
        return counts
