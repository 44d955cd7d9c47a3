"""Errors and logs as deployed: `remediate serve` with SENTRY_DSN pointing at a local endpoint that records what
the SDK sends, and REMEDIATE_LOG_FORMAT=json."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx2
from temporalio.client import Client

from tests.support.deployment import AUTH, ONCALL, alert, env, finished, until, write_config
from tests.support.fake_sentry import FakeSentry
from tests.support.processes import start
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving

NAME = "sentry-drill"


def tags(event: dict[str, Any]) -> dict[str, str]:
    found = event.get("tags", {})
    return dict(found) if isinstance(found, dict) else {k: v for k, v in found}


async def test_a_failing_step_reaches_sentry_tagged_and_scrubbed_and_every_log_line_is_json(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """A write the target refuses fails its run: Sentry gets the step's failure and the run's, each tagged with run
    id, playbook and step, and neither carries the canary (a configured secret that the alert happened to contain);
    every line the service logged is one JSON object, and the step's lines name the run, the step and the action."""
    target, sentry, queue = RailTarget(), FakeSentry(), f"sentry-{uuid.uuid4().hex[:8]}"
    canary = ONCALL  # the approver token's value: a secret this process knows
    target.failing.add(canary)
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "drill.yaml").write_text(playbook(NAME, "SentryDrill"))
    async with serving(target.app()) as url, serving(sentry.app()) as sentry_url:
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
        settings |= {"SENTRY_DSN": sentry.dsn(sentry_url), "REMEDIATE_LOG_FORMAT": "json"}
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                await http.post("/alertmanager", json=alert("SentryDrill", canary))
            (failed,) = await finished(temporal_client, queue, NAME, 1)
            assert failed.status == "failed"
            await until(lambda: len(sentry.items) >= 2)
            async with httpx2.AsyncClient(base_url=service.url, timeout=30) as http:
                assert (await http.get("/readyz")).status_code == 200  # pings the target too
        finally:
            await service.terminate()
    step = next(e for e in sentry.items if tags(e).get("step") == "fix")
    assert tags(step)["run_id"] == failed.run_id and tags(step)["playbook"] == NAME
    assert tags(step)["action"] == "http.request"
    run = next(e for e in sentry.items if "step" not in tags(e))
    assert tags(run)["run_id"] == failed.run_id and "run failed" in json.dumps(run)
    # Sentry's trace propagation is off: neither a step nor a readiness ping tells a target about Sentry.
    assert not target.header_names & {"baggage", "sentry-trace"}, target.header_names
    sent = b"".join(sentry.raw).decode()
    assert canary not in sent and "***" in sent

    lines = [line for line in service.text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: one JSON object
    assert records[0]["message"].startswith("remediate serve (web + worker)")
    mine = [r for r in records if r.get("run_id") == failed.run_id]
    assert {r.get("step") for r in mine} >= {"check", "fix"}
    assert all(r["playbook"] == NAME for r in mine)
    read = next(r for r in mine if r.get("step") == "check" and r["logger"] == "httpx2")
    assert read["action"] == "http.request" and "/check/" in read["message"]
    assert any(r.get("step") == "fix" and r["level"] == "warning" and "failed" in r["message"] for r in mine)
    assert canary not in service.text()
