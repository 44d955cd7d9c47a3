"""Alertmanager messages, occurrence keys and the matcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.alerts.webhook import Alert, WebhookMessage, run_id
from service.playbooks.playbook import LabelMatcher, Match

DATA = Path(__file__).resolve().parent.parent / "data"


def _alert(status: str = "firing", **labels: str) -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "labels": {"alertname": "JobsStuck", **labels},
            "startsAt": "2026-11-23T04:07:23.123Z",
            "fingerprint": "abc123",
        }
    )


def test_real_alertmanager_samples_parse_and_share_one_occurrence() -> None:
    """The captured firing and resolved messages name the same occurrence, so they address the same run."""
    firing = WebhookMessage.model_validate_json((DATA / "alertmanager-0.25-firing.json").read_text())
    resolved = WebhookMessage.model_validate_json((DATA / "alertmanager-0.25-resolved.json").read_text())
    assert firing.alerts[0].occurrence_key() == resolved.alerts[0].occurrence_key()
    assert run_id("p", firing.alerts[0]) == "p/3bf6c991693764f7/1795406843"


def test_unknown_fields_from_newer_alertmanagers_are_accepted() -> None:
    """notification_reason and routeLabels (newer Alertmanagers) do not break parsing."""
    raw = (
        (DATA / "alertmanager-0.25-firing.json")
        .read_text()
        .replace('"version": "4"', '"version": "4", "notification_reason": "new", "routeLabels": {"a": "b"}')
    )
    assert WebhookMessage.model_validate_json(raw).alerts[0].alertname == "OrchestratorExecutionTimeout"


@pytest.mark.parametrize("body", ['{"version": "3", "status": "firing", "alerts": []}', '{"alerts": 1}', "[]"])
def test_non_v4_messages_are_rejected(body: str) -> None:
    """Anything that is not a v4 message with at least one alert fails validation."""
    with pytest.raises(ValueError, match="validation error"):
        WebhookMessage.model_validate_json(body)


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ('severity!="critical"', {}, True),
        ('severity=~"warning|critical"', {"severity": "critical"}, True),
        ('severity=~"warn"', {"severity": "warning"}, False),  # anchored like Alertmanager: no substring match
        ('severity=~"crit.*"', {"severity": "xcritical"}, False),
        ('severity!~"warning|critical"', {"severity": "info"}, True),
        ('team=~""', {}, True),  # a missing label matches as the empty string
        ('queue="a\\"b"', {"queue": 'a"b'}, True),
    ],
)
def test_matchers_follow_alertmanager_semantics(matcher: str, labels: dict[str, str], expected: bool) -> None:
    """=, !=, =~ and !~ behave as in Alertmanager, with fully anchored regexes."""
    assert LabelMatcher.parse(matcher).matches(labels) is expected


@pytest.mark.parametrize("bad", ["severity", "=x", 'a=~"("', 'a="unterminated'])
def test_bad_matchers_are_refused_with_a_reason(bad: str) -> None:
    """A malformed matcher is an error at load time, not a silent never-match."""
    with pytest.raises(ValueError, match="matcher"):
        LabelMatcher.parse(bad)


def test_match_needs_alertname_or_matchers_and_checks_status() -> None:
    """A match block never matches everything, and a firing playbook ignores resolved alerts."""
    with pytest.raises(ValueError, match="never matches everything"):
        Match()
    match = Match(alertname="JobsStuck", matchers=['severity=~"warning|critical"'])
    assert match.matches(_alert(severity="warning"))
    assert not match.matches(_alert(severity="info"))
    assert not match.matches(_alert("resolved", severity="warning"))
    assert match.matches_labels(_alert("resolved", severity="warning"))
