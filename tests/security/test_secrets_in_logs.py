"""Issue 9, item 8: a secret never reaches a log line, a readiness answer or a run record, through any failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from service.vocabulary.redact import redact
from tests.support.crash import webhook_message
from tests.support.paths import DATA
from tests.support.processes import start

CANARY = "CANARY-s3cret-7f3a"
pytestmark = pytest.mark.process


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://remediate:{CANARY}@db.internal:5432/jobs%zz",
        f"host=db user=remediate password={CANARY} dbname=jobs",
        f"redis://:{CANARY}@cache:6379/0",
        f"Authorization: Bearer {CANARY}",
        f"https://api.example/v1?token={CANARY}&x=1",
    ],
)
def test_redaction_masks_every_credential_form(text: str) -> None:
    """URL passwords, keyword DSNs, bearer tokens and token query parameters are masked."""
    assert CANARY not in redact(text) and "***" in redact(text)


async def test_a_dsn_with_a_bad_percent_encoding_never_shows_its_password(
    temporal_env_address: str, tmp_path: Path
) -> None:
    """Reproduction: psycopg's pool warning logged the DSN, password included, on an unauthenticated /readyz.
    Through `remediate serve`: readiness probes, a run that fails on that connection, its record, and the log."""
    dsn = f"postgresql://remediate:{CANARY}@127.0.0.1:1/jobs%zz"
    env = {
        "REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address,
        "REMEDIATE_TASK_QUEUE": f"canary-{uuid.uuid4().hex[:8]}",
        "REMEDIATE_PLAYBOOKS": str(DATA / "playbooks"),
        "REMEDIATE_CONFIG": str(DATA / "jobs-config.yaml"),
        "REMEDIATE_WEBHOOK_TOKEN": "canary-webhook-token",
        "JOBS_DB_DSN": dsn,
    }
    service = start("serve", ["serve"], env, tmp_path)
    auth = {"Authorization": "Bearer canary-webhook-token"}
    try:
        await service.wait_log("polling on Temporal")
        async with httpx2.AsyncClient(base_url=service.url, timeout=10) as http:
            bare = await http.get("/readyz")
            detailed = await http.get("/readyz", headers=auth)
            assert bare.status_code == 503 and bare.json() == {"ready": False}
            assert "connection:jobs-db" in detailed.json()["checks"] and CANARY not in detailed.text
            body = webhook_message(
                {"alertname": "JobsStuck", "queue": "q1", "severity": "critical"},
                uuid.uuid4().hex[:16],
                datetime.now(UTC).isoformat(),
            )
            assert (await http.post("/alertmanager", json=body, headers=auth)).json()["started"] == 1
            first = body["alerts"][0]  # type: ignore[index]
            run_id = f"stuck-jobs/{first['fingerprint']}/{int(datetime.fromisoformat(first['startsAt']).timestamp())}"
            shown = ""
            for _ in range(300):  # the read is retried while the pool waits for a connection that never comes
                shown = (await http.get(f"/api/v1/runs/{run_id}", headers=auth)).text
                if '"status":"failed"' in shown:
                    break
                await asyncio.sleep(0.3)
            listed = (await http.get("/api/v1/runs", headers=auth)).text
            assert '"status":"failed"' in shown and "connection" in shown, shown[:500]
            assert CANARY not in listed and CANARY not in shown
            await asyncio.sleep(1)  # let the pool's own background warnings land in the log
    finally:
        assert await service.terminate() == 0
    log = service.text()
    assert "WARNING" in log and CANARY not in log, log[-3000:]
