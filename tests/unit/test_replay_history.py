"""Replay's inputs: Alertmanager's routing and grouping simulated, ALERTS samples rebuilt into firing intervals, and
history files refused with the line that is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from ruamel.yaml import YAML

from service.alerts.webhook import Alert
from service.replay.history import fingerprint, from_lines
from service.replay.routing import Dispatcher, route_tree
from service.replay.series import Intervals, Rule
from service.vocabulary.errors import ConfigError
from tests.support.paths import ROOT

T0 = datetime(2026, 11, 2, tzinfo=UTC)
ROUTES = YAML(typ="safe").load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())


def _alert(labels: dict[str, str], second: float, status: Literal["firing", "resolved"] = "firing") -> Alert:
    at = T0 + timedelta(seconds=second)
    return Alert(
        status=status,
        labels=labels,
        startsAt=at,
        endsAt=at if status == "resolved" else None,
        fingerprint=fingerprint(labels),
    )


def test_the_shipped_route_sends_only_playbook_labelled_alerts_to_remediate() -> None:
    """deploy/alertmanager/alertmanager.yml: an alert with a `playbook` label reaches remediate's route for its
    runbook (grouped as that route says); one without never does."""
    root = route_tree(ROUTES, "alertmanager.yml")
    stuck = {"alertname": "WorkflowStuck", "namespace": "n1", "playbook": "workflow-stuck"}
    [route] = [r for r in root.match(stuck) if r.receiver == "remediate"]
    assert route.group_by == ("alertname", "namespace") and route.group_wait == timedelta(seconds=10)
    assert route.group_interval == timedelta(minutes=1) and route.repeat_interval == timedelta(hours=4)
    dispatcher = Dispatcher(root, "remediate")
    assert dispatcher.routed(_alert(stuck, 0))
    assert not dispatcher.routed(_alert({"alertname": "WorkflowStuck", "namespace": "n1"}, 0))


def test_a_group_is_sent_after_group_wait_then_on_its_interval_ticks_then_repeated() -> None:
    """Times derived by hand for group_wait 10s, group_interval 1m, repeat_interval 4h: the first message 10s after
    the group's first alert, a change waits for the next tick, nothing is sent on a tick without change, and the
    firing alerts are sent again on the first tick 4h after the last message."""
    dispatcher = Dispatcher(route_tree(ROUTES, "alertmanager.yml"), "remediate")
    a = {"alertname": "MaestroRunsStuck", "playbook": "maestro", "run": "a"}
    b = {**a, "run": "b"}
    dispatcher.add(_alert(a, 0), T0)
    dispatcher.add(_alert(b, 5), T0 + timedelta(seconds=5))
    sent = [
        (d.at - T0, sorted((x.labels["run"], x.status) for x in d.message.alerts))
        for d in dispatcher.due(T0 + timedelta(seconds=30))
    ]
    assert sent == [(timedelta(seconds=10), [("a", "firing"), ("b", "firing")])]
    dispatcher.add(_alert(a, 75, "resolved"), T0 + timedelta(seconds=75))  # next tick: 10s + 2 x 1m = 130s
    sent = [
        (d.at - T0, sorted((x.labels["run"], x.status) for x in d.message.alerts))
        for d in dispatcher.due(T0 + timedelta(hours=5))
    ]
    assert sent == [
        (timedelta(seconds=130), [("a", "resolved"), ("b", "firing")]),
        (timedelta(seconds=130) + timedelta(hours=4), [("b", "firing")]),  # the repeat: a tick falls exactly there
    ]


def test_alerts_samples_become_firing_intervals_that_resolve_one_evaluation_after_their_last_sample() -> None:
    """A series sampled every 60s from 0 to 300s, silent, then again from 900s to 960s is two occurrences: firing
    at 0 and 900, resolved at 360 and 1020; changes are given out only once no later chunk can alter them."""
    labels = {"__name__": "ALERTS", "alertname": "JobsStuck", "alertstate": "firing", "queue": "q1"}
    base = T0.timestamp()
    intervals = Intervals(lambda name: Rule(60.0, {"runbook_url": "https://runbooks/jobs"}))
    first = list(intervals.feed([(labels, [base + s for s in range(0, 301, 60)])], base + 600))
    second = list(intervals.feed([(labels, [base + 900, base + 960])], base + 1200))
    rest = list(intervals.finish())
    changes = [(at - T0, a.status) for at, a in first + second + rest]
    assert changes == [
        (timedelta(0), "firing"),
        (timedelta(seconds=360), "resolved"),
        (timedelta(seconds=900), "firing"),
        (timedelta(seconds=1020), "resolved"),
    ]
    fired = first[0][1]
    assert "alertstate" not in fired.labels and "__name__" not in fired.labels
    assert fired.annotations == {"runbook_url": "https://runbooks/jobs"}
    assert fired.fingerprint == fingerprint({"alertname": "JobsStuck", "queue": "q1"})


def test_a_history_file_out_of_order_or_not_a_message_is_refused_with_its_line() -> None:
    """The replay stops at the first bad line and names it, as `remediate lint` names a playbook's."""
    alert = '{"status": "firing", "labels": {}, "startsAt": "%s", "fingerprint": "ab"}'
    good = '{"version": "4", "status": "firing", "alerts": [' + alert + "]}"
    with pytest.raises(ConfigError, match=r"h\.jsonl:2: at .*before the line above"):
        list(from_lines([good % "2026-11-02T01:00:00Z", good % "2026-11-02T00:00:00Z"], "h.jsonl"))
    with pytest.raises(ConfigError, match=r"h\.jsonl:3: not an Alertmanager webhook message: version"):
        list(from_lines([good % "2026-11-02T01:00:00Z", "", '{"version": "3"}'], "h.jsonl"))
    lines = [
        good % "2026-11-02T01:00:00Z",
        '{"receivedAt": "2026-11-02T02:00:00Z", ' + (good % "2026-11-02T01:00:00Z")[1:],
    ]
    assert [d.at.hour for d in from_lines(lines, "h.jsonl")] == [1, 2]  # receivedAt, when a line says it
