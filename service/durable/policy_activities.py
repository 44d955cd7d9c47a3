"""The activities of the rails: ask and tell the governor, look at Alertmanager, announce; and their metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.rails.governance import (
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
    Occurrence,
    Release,
    Report,
    SilenceRef,
    SilenceRequest,
    Tripped,
)
from service.rails.kill_switch import SwitchBoard
from service.runs.switch_watch import SwitchWatch
from service.vocabulary.approvals import Notifier
from service.vocabulary.errors import NotifyError, RemediateError, StepError, TemporalUnavailable
from service.vocabulary.redact import redact

log = logging.getLogger("remediate.rails")
ASK_PATIENCE = 8.0  # seconds one ask waits for its batch's answer; then the run hears `busy` and asks again


def _now() -> datetime:
    return datetime.now(UTC)


class Governing(Protocol):
    """The governor workflow as the worker reaches it (an adapter over the service's own Temporal)."""

    async def ask(self, ask: Ask) -> Answer: ...

    async def release(self, release: Release) -> None: ...

    async def report(self, report: Report) -> Tripped: ...

    async def occurred(self, occurrence: Occurrence) -> None: ...

    async def board(self) -> SwitchBoard: ...

    async def switch_seen(self, version: int) -> None:
        """Tell the kill switch board this worker holds this version (flips wait for it)."""
        ...

    def queued(self) -> int:
        """Asks waiting in this process for their shard's next batch."""
        ...

    async def reachable(self) -> bool:
        """Whether Temporal answers at all: a governor that does not answer is busy if so, down if not."""
        ...


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
        self.grant_wait = Histogram(
            "remediate_grant_wait_seconds",
            "From a write's first ask to the governor's grant: its turn in line, and a busy governor",
            ["playbook"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.busy = Counter(
            "remediate_governor_busy",
            "Asks that got no answer in time from a governor Temporal still reaches: the run waited and asked again",
            ["playbook"],
            registry=registry,
        )
        self.waiting = Gauge(
            "remediate_runs_waiting_for_slot",
            "Runs waiting for their turn over max_concurrent or an hourly limit (the playbook's line)",
            ["playbook"],
            registry=registry,
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
        patience: float = ASK_PATIENCE,
    ) -> None:
        self._governor, self._alerts, self._notifier, self._metrics = governor, alerts, notifier, metrics
        self.patience = patience
        self.switch = switch or SwitchWatch(governor.board, seen=governor.switch_seen)
        metrics.watch(self.switch)

    @activity.defn(name=GOVERNOR_ASK)
    async def ask(self, ask: Ask) -> Answer:
        refused = await self.switch.refusal(ask.playbook)  # this worker's own view: no ask waits in front of it
        if refused is not None:
            self._metrics.refusals.labels(ask.playbook, refused.limit).inc()
            return refused
        try:  # asking again is safe: a run already granted is renewed
            answer = await asyncio.wait_for(self._governor.ask(ask), self.patience)
        except TimeoutError:
            return self._busy(ask, f"no answer within {self.patience:g} s")
        except TemporalUnavailable as exc:
            if await self._governor.reachable():
                return self._busy(ask, str(exc))
            raise _failure(exc) from exc
        except RemediateError as exc:
            raise _failure(exc) from exc
        if answer.verdict != "wait" and ask.since is not None:
            self._metrics.grant_wait.labels(ask.playbook).observe(max((_now() - ask.since).total_seconds(), 0.0))
        if answer.verdict == "refuse":
            self._metrics.refusals.labels(ask.playbook, answer.limit).inc()
            if answer.limit == "kill_switch":
                self._metrics.kill_switch.labels("everything").set(1)
        return answer

    def _busy(self, ask: Ask, why: str) -> Answer:
        """Temporal answers but the governor did not, in time: the run waits and asks again (never refused for it)."""
        self._metrics.busy.labels(ask.playbook).inc()
        queued = self._governor.queued()
        return Answer(
            verdict="wait",
            limit="governor_busy",
            place=queued + 1,
            reason=f"the governor is busy ({redact(why)}; {queued} ask(s) queued in this worker)",
        )

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
