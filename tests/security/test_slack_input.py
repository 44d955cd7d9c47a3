"""Issue 9, items 3 and 7: Slack interactions answer 4xx with a reason for anything hostile, and alert text in a
Slack message stays text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.notify.slack.messages import approval_blocks, escape
from service.vocabulary.approvals import Gate, GateRequest, PlannedWrite
from tests.support.slack_signing import SECRET, client, signed_headers


def _payload(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U_ALICE"},
        "actions": [{"action_id": "approve", "action_ts": "1.2", "value": json.dumps({"run": "p/f/1", "gate": "act"})}],
    }
    payload.update(overrides)
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize("timestamp", ["9" * 310, "١٧٩٥٤٠٠٠٠٠", "12.5", "-1", "", " 1795400000"])
def test_unparseable_timestamps_get_401_before_anything_else(timestamp: str) -> None:
    """Reproduction: a 310-digit or non-ASCII-digit timestamp answered 500; now 401, nothing parsed or signalled."""
    http, runs = client()
    reply = http.post(
        "/slack/interactions",
        content=_payload(),
        headers={b"X-Slack-Request-Timestamp": timestamp.encode(), b"X-Slack-Signature": b"v0=00"},
    )
    assert reply.status_code == 401 and runs.decided == []


ACTION = {"action_id": "approve", "action_ts": "1.2"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"actions": [{**ACTION, "value": json.dumps(["p/f/1"])}]},
        {"actions": [{**ACTION, "value": json.dumps("p/f/1")}]},
        {"actions": [{**ACTION, "value": "not json"}]},
        {"actions": "approve"},
        {"actions": [{**ACTION, "value": json.dumps({"gate": "act"})}]},
        {"actions": [{**ACTION, "value": json.dumps({"run": "r" * 301})}]},
        {"actions": [{**ACTION, "value": json.dumps({"run": "p/f/1", "gate": "x" * 65})}]},
        {"user": {"id": "U" * 65}},
        {"user": "U_ALICE"},
        {"actions": [{**ACTION, "value": json.dumps({"run": "p/f/1", "extra": 1})}]},
    ],
)
def test_signed_but_malformed_payloads_get_400_with_a_reason(overrides: dict[str, Any]) -> None:
    """Reproduction: nine kinds of correctly signed, malformed payloads answered 500; now 400 and no decision."""
    http, runs = client()
    raw = _payload(**overrides)
    reply = http.post("/slack/interactions", content=raw, headers=signed_headers(raw))
    assert reply.status_code == 400 and "block_actions" in reply.json()["error"] and runs.decided == []


def test_a_huge_body_is_refused_by_its_size_before_it_is_read_whole() -> None:
    """Reproduction: 50 MB were read into memory unauthenticated; the declared size alone now answers 413."""
    http, runs = client()
    reply = http.post("/slack/interactions", content=b"x" * (65 * 1024), headers={"X-Slack-Signature": "v0=00"})
    assert reply.status_code == 413 and runs.decided == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_no_signed_body_gets_a_5xx(raw: bytes) -> None:
    """Property: any body, correctly signed, is answered 200 or 4xx, never 5xx."""
    http, _ = client()
    assert http.post("/slack/interactions", content=raw, headers=signed_headers(raw)).status_code < 500


HOSTILE = ["<!channel>", "<@U024BE7LH>", "<https://evil.example|Approve>", "a & b", "x>y<z"]


@pytest.mark.parametrize("text", HOSTILE)
def test_alert_text_in_an_approval_message_is_escaped(text: str) -> None:
    """Reproduction: label text reached Slack unescaped (`<!channel>`, mentions, disguised links); now it is data."""
    gate = Gate(
        request=GateRequest(
            run_id=f"p/{text}/1",
            playbook="p",
            alertname=text,
            labels={"queue": text},
            diagnosis=[f"stuck: {text}"],
            approvers=["U_ALICE"],
            min_approvals=1,
            expires_at=datetime(2026, 11, 23, 5, tzinfo=UTC),
            writes=[PlannedWrite(step="s", action="http.request", summary=text, targets=[text], blast_radius=text)],
        )
    )
    rendered = json.dumps([b for b in approval_blocks(gate, outcome=text) if b["type"] != "actions"])
    for dangerous in ("<!channel>", "<@U024BE7LH>", "<https://evil"):
        assert dangerous not in rendered
    assert escape(text) in rendered
    assert SECRET not in rendered
