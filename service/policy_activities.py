"""The activities of the rails: ask and tell the governor, look at Alertmanager, announce; and their metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.approvals import Notifier
from service.errors import NotifyError, RemediateError, StepError
from service.governance import (
    ALERT_FIRING,
    ANNOUNCE,
    GOVERNOR_ASK,
    GOVERNOR_EFFECTIVENESS,
    GOVERNOR_OCCURRED,
    GOVERNOR_RELEASE,
    SILENCE_CREATE,
    SILENCE_EXPIRE,
    AlertQuery,
    Answer,
    Ask,
    GovernorView,
    Occurrence,
    Release,
    Report,
    SilenceRef,
    SilenceRequest,
    Tripped,
)
from service.kill_switch import CONFIRM_WITHIN, POLL_EVERY, SwitchBoard
from service.redact import redact

log = logging.getLogger("remediate.rails")


class Governing(Protocol):
    """The governor workflow as the worker reaches it (an adapter over the service's own Temporal)."""

    async def ask(self, ask: Ask) -> Answer: ...

    async def release(self, release: Release) -> None: ...

    async def report(self, report: Report) -> Tripped: ...

    async def occurred(self, occurrence: Occurrence) -> None: ...

    async def view(self) -> GovernorView: ...

    async def board(self) -> SwitchBoard: ...


class SwitchWatch:
    """This worker's view of the kill switch, kept by polling the board (a query) every `poll` seconds and consulted
    before every ask without a round trip. A view older than `fresh_for` is not trusted: an ask then waits for a
    fresh one, and is refused if none comes within `wait` (fail closed)."""

    def __init__(
        self,
        read: Callable[[], Awaitable[SwitchBoard]],
        poll: float = POLL_EVERY,
        fresh_for: float = CONFIRM_WITHIN,
        wait: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self.poll, self.fresh_for, self.wait, self._clock = read, poll, fresh_for, wait, clock
        self.board: SwitchBoard | None = None
        self.confirmed = float("-inf")  # when the last answer was asked for: it is at least that fresh
        self._task: asyncio.Task[None] | None = None
        self._answered = asyncio.Event()  # set by every answer from the board: waiting writes look again
        self._warned = False

    def age(self) -> float:
        return self._clock() - self.confirmed

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            asked = self._clock()
            try:
                self.board, self.confirmed = await self._read(), asked
                self._answered.set()
                if self._warned:
                    log.warning("kill switch confirmed again (version %d)", self.board.version)
                    self._warned = False
            except RemediateError as exc:
                if self.age() > self.fresh_for and not self._warned:
                    log.warning(
                        "kill switch unconfirmed for %.1fs, writes wait and then are refused: %s", self.age(), exc
                    )
                    self._warned = True
            await asyncio.sleep(self.poll)

    async def forbids(self, playbook: str) -> str | None:
        """For a write about to be sent: why it may not be, or None."""
        refused = await self.refusal(playbook)
        return refused.reason if refused is not None else None

    async def refusal(self, playbook: str) -> Answer | None:
        """A refusal when a switch forbids this playbook's write, or when the switch cannot be confirmed."""
        self.start()
        deadline = self._clock() + self.wait
        while self.board is None or self.age() > self.fresh_for:
            remaining = deadline - self._clock()
            if remaining <= 0:
                age = "ever" if self.board is None else f"{self.age():.0f}s"
                return Answer(
                    verdict="refuse",
                    limit="kill_switch_unconfirmed",
                    reason=f"the kill switch could not be confirmed for {age}: no write (fail closed)",
                )
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), timeout=min(remaining, self.poll))
        why = self.board.refusal(playbook)
        if why:
            # A refusal ends the run: worth one fresh read, so a switch turned off a moment ago refuses nothing.
            asked = self._clock()
            with contextlib.suppress(RemediateError):
                self.board, self.confirmed = await self._read(), asked
                why = self.board.refusal(playbook)
        return Answer(verdict="refuse", limit="kill_switch", reason=why) if why else None


class AlertStatus(Protocol):
    """Alertmanager as the rails use it (an adapter)."""

    async def firing(self, query: AlertQuery) -> bool: ...

    async def silence(self, request: SilenceRequest) -> SilenceRef: ...

    async def expire(self, ref: SilenceRef) -> None: ...


class PolicyMetrics:
    """What the rails did, as Prometheus sees it; one instance per process, on the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.switch_age = Gauge(
            "remediate_kill_switch_unconfirmed_seconds",
            "Seconds since this worker last confirmed the kill switch's state (-1: no worker here, or not yet)",
            registry=registry,
        )
        self.switch_age.set(-1)
        self.refusals = Counter(
            "remediate_policy_refusals", "Writes refused by the governor", ["playbook", "reason"], registry=registry
        )
        self.effectiveness = Counter(
            "remediate_run_effectiveness",
            "Runs that wrote, by whether the alert stopped firing",
            ["playbook", "result"],
            registry=registry,
        )
        self.kill_switch = Gauge(
            "remediate_kill_switch",
            "1 while the kill switch is on (scope: everything or a playbook)",
            ["scope"],
            registry=registry,
        )

    def watch(self, switch: SwitchWatch) -> None:
        """Show how old this worker's view of the kill switch is (writes wait, then are refused, past a bound)."""
        self.switch_age.set_function(lambda: max(switch.age(), 0.0) if switch.board is not None else -1.0)

    def show(self, board: SwitchBoard) -> None:
        self.kill_switch.labels("everything").set(1 if board.everything.on else 0)
        for name, switch in board.playbooks.items():
            self.kill_switch.labels(name).set(1 if switch.on else 0)


def _failure(exc: RemediateError) -> ApplicationError:
    retryable = exc.retryable if isinstance(exc, StepError) else True
    return ApplicationError(redact(str(exc)), type=type(exc).__name__, non_retryable=not retryable)


class PolicyActivities:
    """Holds the governor client, the Alertmanager adapter (when one is configured), the notifier and metrics."""

    def __init__(
        self,
        governor: Governing,
        alerts: AlertStatus | None,
        notifier: Notifier,
        metrics: PolicyMetrics,
        switch: SwitchWatch | None = None,
    ) -> None:
        self._governor, self._alerts, self._notifier, self._metrics = governor, alerts, notifier, metrics
        self.switch = switch or SwitchWatch(governor.board)
        metrics.watch(self.switch)

    @activity.defn(name=GOVERNOR_ASK)
    async def ask(self, ask: Ask) -> Answer:
        refused = await self.switch.refusal(ask.playbook)  # this worker's own view: no ask waits in front of it
        if refused is not None:
            self._metrics.refusals.labels(ask.playbook, refused.limit).inc()
            return refused
        try:
            answer = await self._governor.ask(ask)  # asking again is safe: a run already granted is renewed
        except RemediateError as exc:
            raise _failure(exc) from exc
        if answer.verdict == "refuse":
            self._metrics.refusals.labels(ask.playbook, answer.limit).inc()
            if answer.limit == "kill_switch":
                self._metrics.kill_switch.labels("everything").set(1)
        return answer

    @activity.defn(name=GOVERNOR_RELEASE)
    async def release(self, release: Release) -> None:
        try:
            await self._governor.release(release)
        except RemediateError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=GOVERNOR_OCCURRED)
    async def occurred(self, occurrence: Occurrence) -> None:
        try:
            await self._governor.occurred(occurrence)
        except RemediateError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=GOVERNOR_EFFECTIVENESS)
    async def effectiveness(self, report: Report) -> Tripped:
        try:
            tripped = await self._governor.report(report)
        except RemediateError as exc:
            raise _failure(exc) from exc
        self._metrics.effectiveness.labels(report.playbook, report.result).inc()
        return tripped

    def _alertmanager(self) -> AlertStatus:
        if self._alerts is None:
            raise ApplicationError("no alertmanager connection is configured", non_retryable=True)
        return self._alerts

    @activity.defn(name=ALERT_FIRING)
    async def firing(self, query: AlertQuery) -> bool:
        try:
            return await self._alertmanager().firing(query)
        except RemediateError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=SILENCE_CREATE)
    async def silence(self, request: SilenceRequest) -> SilenceRef:
        try:
            return await self._alertmanager().silence(request)
        except RemediateError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=SILENCE_EXPIRE)
    async def expire(self, ref: SilenceRef) -> None:
        try:
            await self._alertmanager().expire(ref)
        except RemediateError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=ANNOUNCE)
    async def announce(self, text: str) -> None:
        try:
            await self._notifier.announce(text)
        except NotifyError as exc:
            raise ApplicationError(
                str(exc), type="NotifyError", non_retryable=not exc.retryable, next_retry_delay=exc.retry_after
            ) from exc

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.ask,
            self.release,
            self.occurred,
            self.effectiveness,
            self.firing,
            self.silence,
            self.expire,
            self.announce,
        ]
