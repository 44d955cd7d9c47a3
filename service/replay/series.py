"""Prometheus' `ALERTS` samples rebuilt into firing intervals: an alert fires at its first sample and resolves one
evaluation after its last, as the rule's own evaluations would have told Alertmanager."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from service.alerts.webhook import Alert
from service.replay.history import fingerprint

Series = tuple[Mapping[str, str], list[float]]  # a series' labels and its sample times (unix seconds)
_NOT_LABELS = ("__name__", "alertstate")


@dataclass(frozen=True)
class Rule:
    """What the rule says beyond the series: how often it is evaluated, and its annotations (those without
    templates: a runbook_url, a summary)."""

    interval: float = 60.0
    annotations: Mapping[str, str] | None = None


@dataclass
class _Firing:
    alert: Alert
    last: float


class Intervals:
    """Feeds chunks of samples in time order and yields each alert change (firing, then resolved) once it is final."""

    def __init__(self, rules: Callable[[str], Rule], generator_url: str = "") -> None:
        self.rules, self.generator_url = rules, generator_url
        self._open: dict[str, _Firing] = {}
        self._pending: list[tuple[float, int, Alert]] = []
        self._seq = 0
        self._longest = 0.0  # the longest gap of any rule seen: changes before `until - longest` are final

    def _push(self, at: float, alert: Alert) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (at, self._seq, alert))

    def _close(self, fp: str, firing: _Firing, interval: float) -> None:
        del self._open[fp]
        ended = firing.last + interval
        self._push(ended, firing.alert.model_copy(update={"status": "resolved", "endsAt": _time(ended)}))

    def feed(self, chunk: Iterable[Series], until: float) -> Iterator[tuple[datetime, Alert]]:
        """Samples up to `until`; the changes that no later sample can alter, in time order."""
        for raw, times in chunk:
            labels = {k: v for k, v in raw.items() if k not in _NOT_LABELS}
            fp = fingerprint(labels)
            rule = self.rules(labels.get("alertname", ""))
            gap = 2 * rule.interval  # one evaluation missed is a gap; two mean the alert was gone
            self._longest = max(self._longest, gap)
            for at in sorted(times):
                firing = self._open.get(fp)
                if firing is not None and at - firing.last > gap:
                    self._close(fp, firing, rule.interval)
                    firing = None
                if firing is None:
                    alert = Alert(
                        status="firing",
                        labels=labels,
                        annotations=dict(rule.annotations or {}),
                        startsAt=_time(at),
                        generatorURL=self.generator_url,
                        fingerprint=fp,
                    )
                    self._open[fp] = _Firing(alert, at)
                    self._push(at, alert)
                else:
                    firing.last = at
        for fp, firing in list(self._open.items()):
            rule = self.rules(firing.alert.alertname)
            if until - firing.last > 2 * rule.interval:
                self._close(fp, firing, rule.interval)
        yield from self._release(until - self._longest)

    def _release(self, horizon: float) -> Iterator[tuple[datetime, Alert]]:
        while self._pending and self._pending[0][0] <= horizon:
            at, _, alert = heapq.heappop(self._pending)
            yield _time(at), alert

    def finish(self) -> Iterator[tuple[datetime, Alert]]:
        """The rest: alerts still firing at the end stay firing."""
        yield from self._release(float("inf"))


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
