"""Slack: signature v0 on the raw body, the decision it hands to the run, and the Block Kit message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from freezegun import freeze_time

from service.notify.slack.messages import approval_blocks
from service.vocabulary.approvals import Decision, Gate, GateRequest, PlannedWrite
from tests.support.slack_signing import client, sign

NOW = 1_795_400_000


def body(user: str = "U_ALICE", action: str = "approve") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [
            {"action_id": action, "action_ts": "1795400000.1", "value": json.dumps({"run": "p/f/1", "gate": "act"})}
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@freeze_time(datetime.fromtimestamp(NOW, UTC))
def test_a_signed_click_becomes_one_decision() -> None:
    """A correctly signed click is answered 200 and handed to the run as that user's decision."""
    http, runs = client()
    raw = body()
    reply = http.post(
        "/slack/interactions",
        content=raw,
        headers={
            "X-Slack-Request-Timestamp": str(NOW),
            "X-Slack-Signature": sign(raw, NOW),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert reply.status_code == 200
    [(run_id, decision)] = runs.decided
    assert run_id == "p/f/1" and decision.user == "U_ALICE" and decision.verdict == "approve"
    assert decision.source == "slack" and decision.decision_id == "slack:U_ALICE:1795400000.1"


@freeze_time(datetime.fromtimestamp(NOW, UTC))
@pytest.mark.parametrize(
    "case",
    [
        "tampered",
        "wrong-secret",
        "late",
        "early",
        "missing-ts",
        "missing-sig",
        "duplicate-ts",
        "duplicate-sig",
        "not-v0",
    ],
)
def test_bad_signatures_get_401_and_record_nothing(case: str) -> None:
    """Tampered bodies, wrong secrets, timestamps ±301 s and missing or repeated headers are all refused."""
    http, runs = client()
    raw, ts = body(), NOW
    signature = sign(raw, ts)
    headers: list[tuple[str, str]] = [("X-Slack-Request-Timestamp", str(ts)), ("X-Slack-Signature", signature)]
    if case == "tampered":
        raw = body(user="U_MALLORY")
    elif case == "wrong-secret":
        headers[1] = ("X-Slack-Signature", sign(raw, ts, "another-secret"))
    elif case in ("late", "early"):
        moved = ts - 301 if case == "late" else ts + 301
        headers = [("X-Slack-Request-Timestamp", str(moved)), ("X-Slack-Signature", sign(raw, moved))]
    elif case == "missing-ts":
        headers = headers[1:]
    elif case == "missing-sig":
        headers = headers[:1]
    elif case == "duplicate-ts":
        headers.append(("X-Slack-Request-Timestamp", str(ts)))
    elif case == "duplicate-sig":
        headers.append(("X-Slack-Signature", signature))
    elif case == "not-v0":
        headers[1] = ("X-Slack-Signature", signature.replace("v0=", "v1="))
    assert http.post("/slack/interactions", content=raw, headers=headers).status_code == 401
    assert runs.decided == []


@freeze_time(datetime.fromtimestamp(NOW, UTC))
def test_a_signature_300_seconds_old_is_still_accepted() -> None:
    """The window is 300 s inclusive, as Slack documents."""
    http, runs = client()
    raw = body()
    reply = http.post(
        "/slack/interactions",
        content=raw,
        headers={"X-Slack-Request-Timestamp": str(NOW - 300), "X-Slack-Signature": sign(raw, NOW - 300)},
    )
    assert reply.status_code == 200 and len(runs.decided) == 1


def test_the_message_names_targets_and_identifies_only_run_and_gate() -> None:
    """Approve is primary, Reject is danger with a confirm dialog, and button values carry only run and gate."""
    g = Gate(
        request=GateRequest(
            run_id="stuck-jobs/f/1",
            playbook="stuck-jobs",
            alertname="JobsStuck",
            labels={"queue": "q1"},
            diagnosis=["stuck: 2 row(s)"],
            approvers=["U_ALICE"],
            min_approvals=1,
            expires_at=datetime(2026, 11, 23, 5, tzinfo=UTC),
            writes=[
                PlannedWrite(
                    step="requeue",
                    action="postgres.execute",
                    summary="would change 2 row(s)",
                    targets=["row 1", "row 2"],
                    blast_radius="2 row(s); cap: max_rows 50",
                )
            ],
        )
    )
    blocks = approval_blocks(g)
    text = json.dumps(blocks)
    assert "row 1, row 2" in text and "cap: max_rows 50" in text and "<@U_ALICE>" in text
    [actions] = [b for b in blocks if b["type"] == "actions"]
    approve, reject = actions["elements"]
    assert approve["style"] == "primary" and reject["style"] == "danger" and "confirm" in reject
    assert json.loads(approve["value"]) == {"run": "stuck-jobs/f/1", "gate": "act"}
    g.apply(Decision(verdict="approve", user="U_ALICE", decision_id="d1"))
    closed = json.dumps(approval_blocks(g, outcome="succeeded: 2 write(s) done"))
    assert '"actions"' not in closed and "Approved" in closed and "2 write(s) done" in closed


def test_a_caution_from_the_governor_is_shown_escaped_above_the_writes() -> None:
    """A storm or breaker caution appears as "Why a human is asked", escaped like every other text."""
    g = Gate(
        request=GateRequest(
            run_id="r/f/1",
            playbook="p",
            alertname="A",
            labels={},
            diagnosis=[],
            approvers=["U_ALICE"],
            min_approvals=1,
            expires_at=datetime(2026, 11, 23, 5, tzinfo=UTC),
            writes=[],
            caution="21 new occurrences within 5m <!channel>",
        )
    )
    texts = [b["text"]["text"] for b in approval_blocks(g) if b["type"] == "section"]
    assert "*Why a human is asked*\n21 new occurrences within 5m &lt;!channel&gt;" in texts
