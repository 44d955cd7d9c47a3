"""Issue 9's reproductions replayed against `remediate serve` as a real process: none of them reproduces."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import pytest

from tests.support.paths import DATA
from tests.support.processes import start

pytestmark = pytest.mark.process
TOKEN = "serve-webhook-token"
APPROVER_TOKEN = "serve-approver-token-01"
SIGNING = "serve-signing-secret"


def _slack(payload: object) -> tuple[bytes, dict[str, str]]:
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SIGNING.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


async def test_hostile_requests_get_reasoned_4xx_from_the_real_process(
    temporal_env_address: str, tmp_path: Path
) -> None:
    """Hostile query strings, Slack headers and payloads, oversized labels, the webhook token approving, unknown
    runs and anonymous readiness: each answered 4xx (or a bare 503) by `remediate serve`, and the process lives."""
    (tmp_path / "approver").write_text(APPROVER_TOKEN)
    (tmp_path / "config.yaml").write_text(
        (DATA / "jobs-config.yaml").read_text()
        + f"approvers: [U_ALICE]\napprover_tokens: {{U_ALICE: 'file:{tmp_path / 'approver'}'}}\n"
    )
    env = {
        "REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address,
        "REMEDIATE_TASK_QUEUE": f"hostile-{uuid.uuid4().hex[:8]}",
        "REMEDIATE_PLAYBOOKS": str(DATA / "playbooks"),
        "REMEDIATE_CONFIG": str(tmp_path / "config.yaml"),
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING,
        "JOBS_DB_DSN": "postgresql://nobody@127.0.0.1:1/none",
    }
    service = start("serve", ["serve", "--web-only"], env, tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[tuple[str, int]] = []
    try:
        await service.wait_ready()
        async with httpx2.AsyncClient(base_url=service.url, timeout=10) as http:
            for limit in ("abc", "1.5", "1e3", "9" * 5000):
                answers.append(
                    (
                        f"limit={limit[:8]}",
                        (await http.get("/api/v1/runs", params={"limit": limit}, headers=auth)).status_code,
                    )
                )
            for ts in ("9" * 310, "12.5"):
                reply = await http.post(
                    "/slack/interactions",
                    content=b"payload=%7B%7D",
                    headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=0"},
                )
                answers.append((f"slack ts {ts[:6]}", reply.status_code))
            for payload in (
                {"user": {"id": "U1"}, "actions": [{"action_id": "approve", "value": "[]"}]},
                {"user": {"id": "U1"}, "actions": "approve"},
                {"user": {"id": "U1"}, "actions": [{"action_id": "approve", "value": json.dumps({"gate": "act"})}]},
            ):
                raw, headers = _slack(payload)
                answers.append(
                    (
                        "slack payload",
                        (await http.post("/slack/interactions", content=raw, headers=headers)).status_code,
                    )
                )
            big = {
                "version": "4",
                "status": "firing",
                "alerts": [
                    {
                        "status": "firing",
                        "fingerprint": "f1",
                        "startsAt": "2026-11-23T10:00:00Z",
                        "labels": {"alertname": "JobsStuck", "v": "x" * 600_000},
                    }
                ],
            }
            answers.append(("600 KB label", (await http.post("/alertmanager", json=big, headers=auth)).status_code))
            answers.append(
                ("webhook token approves", (await http.post("/api/v1/runs/a/b/1/approve", headers=auth)).status_code)
            )
            for hostile_id in ("a%00b/f/1", "p/f/1%0a", "x" * 600):  # control characters, or far too long
                shown = await http.get(f"/api/v1/runs/{hostile_id}", headers=auth)
                answers.append((f"run id {hostile_id[:10]}", shown.status_code))
                decided = await http.post(
                    f"/api/v1/runs/{hostile_id}/approve", headers={"Authorization": f"Bearer {APPROVER_TOKEN}"}
                )
                answers.append((f"approve {hostile_id[:10]}", decided.status_code))
            approver = {"Authorization": f"Bearer {APPROVER_TOKEN}"}
            answers.append(
                ("unknown run", (await http.post("/api/v1/runs/a/b/1/approve", headers=approver)).status_code)
            )
            answers.append(
                (
                    "huge gate",
                    (
                        await http.post("/api/v1/runs/a/b/1/approve", headers=approver, json={"gate": "g" * 300_000})
                    ).status_code,
                )
            )
            ready = await http.get("/readyz")
            answers.append(("anonymous readyz", ready.status_code))
            assert set(ready.json()) == {"ready"}
            assert (await http.get("/healthz")).status_code == 200
    finally:
        assert await service.terminate() == 0
    assert [a for a in answers if not 400 <= a[1] < 500 and a != ("anonymous readyz", 200)] == [], answers
    assert "Traceback" not in service.text()
