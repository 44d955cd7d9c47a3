"""The activities of the rails: ask and tell the governor, look at Alertmanager, announce; and their metrics."""

from __future__ import annotations

from collections.abc import Callable
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
from service.redact import redact


class Governing(Protocol):
    """The governor workflow as the worker reaches it (an adapter over the service's own Temporal)."""

    async def ask(self, ask: Ask) -> Answer: ...

    async def release(self, release: Release) -> None: ...

    async def report(self, report: Report) -> Tripped: ...

    async def occurred(self, occurrence: Occurrence) -> None: ...

    async def view(self) -> GovernorView: ...


class AlertStatus(Protocol):
    """Alertmanager as the rails use it (an adapter)."""

    async def firing(self, query: AlertQuery) -> bool: ...

    async def silence(self, request: SilenceRequest) -> SilenceRef: ...

    async def expire(self, ref: SilenceRef) -> None: ...


class PolicyMetrics:
    """What the rails did, as Prometheus sees it; one instance per process, on the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
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

    def show(self, view: GovernorView) -> None:
        self.kill_switch.labels("everything").set(1 if view.state.switch.on else 0)
        for name, playbook in view.state.playbooks.items():
            self.kill_switch.labels(name).set(1 if playbook.switch.on else 0)


def _failure(exc: RemediateError) -> ApplicationError:
    retryable = exc.retryable if isinstance(exc, StepError) else True
    return ApplicationError(redact(str(exc)), type=type(exc).__name__, non_retryable=not retryable)


class PolicyActivities:
    """Holds the governor client, the Alertmanager adapter (when one is configured), the notifier and metrics."""

    def __init__(
        self, governor: Governing, alerts: AlertStatus | None, notifier: Notifier, metrics: PolicyMetrics
    ) -> None:
        self._governor, self._alerts, self._notifier, self._metrics = governor, alerts, notifier, metrics

    @activity.defn(name=GOVERNOR_ASK)
    async def ask(self, ask: Ask) -> Answer:
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
