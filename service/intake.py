"""Intake, pure: which playbooks an alert starts or resolves, with what mode, and a short memory of known runs."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from service.alerts import Alert, WebhookMessage, run_id
from service.catalog import Catalog
from service.errors import IntakeIncomplete
from service.governance import Governance
from service.modes import Mode, effective_mode
from service.playbook import Playbook
from service.runs import Durability, RunInput


class RunStarter(Protocol):
    """Where runs start and hear that their alert resolved (the service's Temporal, in production)."""

    async def start(self, run: RunInput) -> bool:
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


class Receiver:
    """Turns one webhook message into run starts and `resolved` signals."""

    def __init__(
        self,
        playbooks: Sequence[Playbook] | Catalog,
        runs: RunStarter,
        ceiling: Mode,
        seen: SeenRuns,
        approvers: Callable[[list[str]], list[str]] = list,
        channel: str | None = None,
        durability: Durability | None = None,
        governance: Callable[[Playbook], Governance] = lambda _: Governance(),
        concurrency: int = 32,
        answer_within: float = 8.0,
    ) -> None:
        self.catalog = playbooks if isinstance(playbooks, Catalog) else Catalog.of(list(playbooks))
        self.runs, self.ceiling, self.seen = runs, ceiling, seen
        self.approvers, self.channel = approvers, channel
        self.durability, self.governance = durability or Durability(), governance
        # Alertmanager gives a webhook at least 10 s (notify.MinTimeout) before it retries the whole message.
        self.concurrency, self.answer_within = concurrency, answer_within

    @property
    def playbooks(self) -> list[Playbook]:
        """The current set: a reload swaps it between two messages, never within one."""
        return self.catalog.playbooks

    def playbook_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.playbooks)

    async def _start(self, playbook: Playbook, alert: Alert) -> str:
        key = run_id(playbook.name, alert)
        if key in self.seen:
            return "duplicates"
        run = RunInput(
            run_id=key,
            playbook=playbook,
            alert=alert,
            mode=effective_mode(self.ceiling, playbook.mode),
            approvers=self.approvers(playbook.approvers),
            approval_channel=playbook.approval_channel or self.channel,
            durability=self.durability,
            governance=self.governance(playbook),
            version=self.catalog.version(playbook.name),
        )
        started = await self.runs.start(run)
        self.seen.add(key)
        return "started" if started else "duplicates"

    async def _resolve(self, playbook: Playbook, alert: Alert) -> str:
        await self.runs.resolve(run_id(playbook.name, alert))
        return "resolved"

    async def receive(self, message: WebhookMessage) -> dict[str, int]:
        """Start or resolve every matching run, a bounded number at a time, within `answer_within` seconds.

        Runs started stay started; if time runs out, IntakeIncomplete (503) makes Alertmanager send the message
        again, and the second delivery adds only duplicates and the rest.
        """
        counts = {"started": 0, "duplicates": 0, "resolved": 0, "unmatched": 0}
        jobs: list[Callable[[], Awaitable[str]]] = []
        for alert in message.alerts:
            before = len(jobs)
            for playbook in self.playbooks:
                if playbook.match.matches(alert):
                    jobs.append(partial(self._start, playbook, alert))
                elif playbook.match.closes(alert):
                    jobs.append(partial(self._resolve, playbook, alert))
            if len(jobs) == before:
                counts["unmatched"] += 1
        # A resend that also runs out of time then covers other alerts first, so every resend makes progress.
        secrets.SystemRandom().shuffle(jobs)
        loop = asyncio.get_running_loop()
        deadline, pending = loop.time() + self.answer_within, iter(jobs)

        async def lane() -> None:
            for job in pending:
                if loop.time() > deadline:
                    return
                counts[await job()] += 1

        await asyncio.gather(*(lane() for _ in range(min(self.concurrency, len(jobs)))))
        done = sum(counts[k] for k in ("started", "duplicates", "resolved"))
        if done < len(jobs):
            raise IntakeIncomplete(
                f"{len(jobs) - done} of {len(jobs)} run(s) not started within {self.answer_within:.0f}s; retry", counts
            )
        return counts
