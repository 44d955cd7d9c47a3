"""Alertmanager's routing and grouping, simulated: which alerts reach remediate's receiver, in which messages, when."""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.alerts.matching import LabelMatcher
from service.alerts.webhook import Alert, WebhookMessage
from service.replay.history import Delivered
from service.vocabulary.errors import ConfigError

_SPAN = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Alertmanager's defaults for the root route (config.DefaultRouteOpts).
DEFAULT_WAIT, DEFAULT_INTERVAL, DEFAULT_REPEAT = timedelta(seconds=30), timedelta(minutes=5), timedelta(hours=4)


class Route(BaseModel):
    """One node of the route tree, its options resolved against its parent's as Alertmanager does."""

    model_config = ConfigDict(frozen=True)

    key: str
    receiver: str
    group_by: tuple[str, ...] | None = Field(description="None: every label ('...').")
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    matchers: tuple[LabelMatcher, ...] = ()
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with these labels notifies (dispatch.Route.Match): the deepest matching ones,
        siblings after a match only when it says `continue`."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]


def _matchers(node: Mapping[str, Any], where: str) -> tuple[LabelMatcher, ...]:
    try:
        parsed = [LabelMatcher.parse(text) for text in node.get("matchers") or []]
        parsed += [LabelMatcher(name, "=", str(value)) for name, value in (node.get("match") or {}).items()]
        parsed += [LabelMatcher.parse(f"{n}=~{json.dumps(str(v))}") for n, v in (node.get("match_re") or {}).items()]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return tuple(parsed)


def _duration(node: Mapping[str, Any], name: str, inherited: timedelta, where: str) -> timedelta:
    if name not in node:
        return inherited
    return prometheus_duration(str(node[name]), f"{where}.{name}")


def prometheus_duration(text: str, where: str) -> timedelta:
    """A duration as Prometheus and Alertmanager write them: 30s, 5m, 1h30m, 14d, 2w."""
    parts = _SPAN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ConfigError(f"{where}: {text!r} is not a duration like 30s, 5m, 1h30m or 14d")
    return timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in parts))


def route_tree(config: Mapping[str, Any], source: str) -> Route:
    """The `route:` of an alertmanager.yml, every option inherited down the tree."""
    root = config.get("route")
    if not isinstance(root, Mapping) or not root.get("receiver"):
        raise ConfigError(f"{source}: no `route:` with a receiver")

    def build(node: Mapping[str, Any], parent: Route | None, key: str) -> Route:
        where = f"{source}: route {key}"
        group_by = node.get("group_by")
        own = Route(
            key=key,
            receiver=str(node.get("receiver") or (parent.receiver if parent else "")),
            group_by=(None if "..." in group_by else tuple(group_by))
            if group_by is not None
            else (parent.group_by if parent else ()),
            group_wait=_duration(node, "group_wait", parent.group_wait if parent else DEFAULT_WAIT, where),
            group_interval=_duration(
                node, "group_interval", parent.group_interval if parent else DEFAULT_INTERVAL, where
            ),
            repeat_interval=_duration(
                node, "repeat_interval", parent.repeat_interval if parent else DEFAULT_REPEAT, where
            ),
            matchers=_matchers(node, where) if parent else (),  # the root matches every alert
            continue_=bool(node.get("continue", False)),
        )
        children = tuple(build(child, own, f"{key}/{i}") for i, child in enumerate(node.get("routes") or []))
        return own.model_copy(update={"routes": children})

    return build(root, None, "root")


def flat_route(receiver: str) -> Route:
    """No route file: every alert reaches the receiver, grouped by alertname with Alertmanager's default timings."""
    return Route(
        key="root",
        receiver=receiver,
        group_by=("alertname",),
        group_wait=DEFAULT_WAIT,
        group_interval=DEFAULT_INTERVAL,
        repeat_interval=DEFAULT_REPEAT,
    )


@dataclass
class _Group:
    route: Route
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    due: datetime | None = None  # the flush scheduled next
    anchor: datetime | None = None  # the first flush: later ones fall on anchor + k·group_interval
    flushed: datetime | None = None  # the last flush
    sent_firing: frozenset[str] | None = None  # None: never notified
    sent_resolved: frozenset[str] = frozenset()
    sent_at: datetime | None = None

    def tick_after(self, at: datetime) -> datetime:
        """The first of this group's flush times at or after `at`."""
        assert self.anchor is not None  # noqa: S101 - asked only after the group's first flush
        interval = self.route.group_interval
        tick = self.anchor + max(0, -(-(at - self.anchor) // interval)) * interval
        return tick + interval if self.flushed is not None and tick <= self.flushed else tick


class Dispatcher:
    """Alertmanager's aggregation groups for one receiver: a group's first message after group_wait, later ones on
    its group_interval ticks when something changed, a repeat after repeat_interval (dispatch + notify dedup)."""

    def __init__(self, root: Route, receiver: str) -> None:
        self.root, self.receiver = root, receiver
        self._groups: dict[str, _Group] = {}
        self._due: list[tuple[datetime, int, str]] = []
        self._seq = 0

    def _routes(self, alert: Alert) -> list[Route]:
        return [r for r in self.root.match(alert.labels) if r.receiver == self.receiver]

    def routed(self, alert: Alert) -> bool:
        """Whether this alert reaches the receiver at all."""
        return bool(self._routes(alert))

    def add(self, alert: Alert, at: datetime) -> bool:
        """An alert starts firing or resolves at `at`; False when no route sends it to the receiver."""
        routes = self._routes(alert)
        for route in routes:
            labels = (
                dict(alert.labels)
                if route.group_by is None
                else {n: alert.labels[n] for n in route.group_by if n in alert.labels}
            )
            key = f"{route.key}:{sorted(labels.items())}"
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(route, labels)
                self._schedule(key, group, at + route.group_wait)
            elif group.anchor is not None:  # before its first message, group_wait's timer stands
                self._schedule(key, group, group.tick_after(at))
            group.alerts[alert.fingerprint] = alert
        return bool(routes)

    def _schedule(self, key: str, group: _Group, at: datetime) -> None:
        if group.due is not None and group.due <= at:
            return
        group.due = at
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, key))

    def due(self, until: datetime) -> Iterator[Delivered]:
        """The messages sent up to `until`, in time order."""
        while self._due and self._due[0][0] <= until:
            at, _, key = heapq.heappop(self._due)
            group = self._groups.get(key)
            if group is None or group.due != at:
                continue  # superseded by an earlier flush
            group.due, group.flushed = None, at
            group.anchor = group.anchor or at
            message = self._flush(key, group, at)
            if message is not None:
                yield Delivered(at, message)

    def _flush(self, key: str, group: _Group, at: datetime) -> WebhookMessage | None:
        firing = frozenset(fp for fp, a in group.alerts.items() if a.status == "firing")
        resolved = frozenset(fp for fp, a in group.alerts.items() if a.status == "resolved")
        if group.sent_firing is None:
            needed = bool(firing)
        elif not firing <= group.sent_firing:
            needed = True
        elif not firing:
            needed = bool(group.sent_firing)
        else:
            needed = not resolved <= group.sent_resolved or at - (group.sent_at or at) >= group.route.repeat_interval
        alerts = list(group.alerts.values())
        if needed:
            group.sent_firing, group.sent_resolved, group.sent_at = firing, resolved, at
        for fp in resolved:  # a resolved alert leaves its group once flushed
            del group.alerts[fp]
        if not group.alerts:
            del self._groups[key]
        elif group.sent_at is not None:  # the next repeat falls on a tick
            self._schedule(key, group, group.tick_after(group.sent_at + group.route.repeat_interval))
        if not needed:
            return None
        return WebhookMessage(
            version="4",
            status="firing" if firing else "resolved",
            receiver=self.receiver,
            alerts=alerts,
            groupLabels=group.labels,
            groupKey=key,
        )
