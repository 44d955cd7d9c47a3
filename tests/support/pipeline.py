"""The whole path for runbook tests: a real Prometheus evaluates the shipped rule, a real Alertmanager delivers it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from ruamel.yaml import YAML
from temporalio.client import Client

from service.runs.policy import Mode
from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from tests.support.paths import ROOT
from tests.support.servers import Alertmanager, free_port, scratch, start_alertmanager, start_prometheus
from tests.support.stack import RUNS, TOKEN, running_stack, state_now

APPROVER = "U_ONCALL"
APPROVER_TOKEN = "approver-token-of-the-on-call"
RULES = ROOT / "deploy" / "prometheus" / "rules"


def fast_rules(rule_file: Path, into: Path) -> Path:
    """The shipped rule with `for:` set to 0s so a test does not wait minutes; expressions stay as shipped."""
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(rule_file.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    into.mkdir(parents=True, exist_ok=True)
    target = into / rule_file.name
    with target.open("w") as out:
        yaml.dump(doc, out)
    return target


@dataclass
class Pipeline:
    client: Client
    http: httpx2.AsyncClient
    alertmanager: Alertmanager
    task_queue: str

    async def runs(self, want: int = 1, status: str | None = None, within: float = 45) -> list[RunState]:
        """Wait for `want` runs on this pipeline (optionally in a given status) and return their states."""
        deadline = time.monotonic() + within
        runs = TemporalRuns(self.client, self.task_queue)
        states: list[RunState] = []
        while time.monotonic() < deadline:
            ids = [e.id async for e in self.client.list_workflows(f"TaskQueue = '{self.task_queue}' AND {RUNS}")]
            states = [s for s in [await state_now(runs, i) for i in ids] if s is not None]
            done = [s for s in states if (s.status == status if status else s.finished_at is not None)]
            if len(done) >= want:
                return done
            await asyncio.sleep(0.3)
        raise AssertionError(
            f"fewer than {want} run(s) {status or 'finished'} after {within}s: "
            f"{[(s.run_id, s.status, s.reason) for s in states]}"
        )

    async def approve(self, run_id: str) -> None:
        reply = await self.http.post(
            f"/api/v1/runs/{run_id}/approve", headers={"Authorization": f"Bearer {APPROVER_TOKEN}"}
        )
        assert reply.status_code == 200, reply.text

    def fire(self, labels: dict[str, str]) -> None:
        """Post an alert to Alertmanager directly (for a healthy target, where no rule fires)."""
        self.alertmanager.post_alerts([{"labels": labels, "annotations": {"summary": "posted by the test"}}])


@asynccontextmanager
async def pipeline(
    client: Client, config: str, mode: Mode, rule: str | None, scrape: list[str], **settings: Any
) -> AsyncIterator[Pipeline]:
    """Service (shipped playbooks), Alertmanager → service, Prometheus with the shipped rule → Alertmanager."""
    work = scratch("e2e")
    (work / "approver-token").write_text(APPROVER_TOKEN)
    (work / "config.yaml").write_text(config + f"approver_tokens: {{{APPROVER}: 'file:{work / 'approver-token'}'}}\n")
    port, task_queue = free_port(), f"rb-{uuid.uuid4().hex[:8]}"
    async with (
        running_stack(
            client, work / "config.yaml", ROOT / "playbooks", mode, task_queue=task_queue, port=port, **settings
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        am = start_alertmanager(work / "am", f"http://127.0.0.1:{port}/alertmanager", TOKEN)
        rules = [fast_rules(RULES / rule, work / "rules")] if rule else []
        prom = start_prometheus(work / "prom", rule_files=rules, scrape_targets=scrape, alertmanager_port=am.port)
        try:
            yield Pipeline(client, http, am, task_queue)
        finally:
            prom.process.stop()
            am.process.stop()


def connections_config(**env_dsns: str) -> str:
    """Every connection the shipped playbooks name; tests point the ones they use at real servers."""
    return f"""
approvers: [{APPROVER}]
connections:
  remediate: {{type: http, base_url: "http://127.0.0.1:9"}}
  jobs-db: {{type: postgres, dsn: "env:JOBS_DB_DSN"}}
  llm-orchestrator-db: {{type: postgres, dsn: "env:LLM_ORCHESTRATOR_DSN"}}
  llm-orchestrator-api: {{type: http, base_url: "{env_dsns.get("llm_api", "http://127.0.0.1:9")}"}}
  greenlang-api: {{type: http, base_url: "{env_dsns.get("greenlang_api", "http://127.0.0.1:9")}"}}
  greenlang-redis: {{type: redis, url: "env:GREENLANG_REDIS_URL"}}
  wms-temporal: {{type: temporal, address: "{env_dsns.get("wms_temporal", "127.0.0.1:9")}", namespace: default}}
  flovyn-db: {{type: postgres, dsn: "env:FLOVYN_DSN"}}
  maestro-db: {{type: postgres, dsn: "env:MAESTRO_DSN"}}
  maestro-redis: {{type: redis, url: "env:MAESTRO_REDIS_URL"}}
  cluster: {{type: kubernetes, kubeconfig: "{env_dsns.get("kubeconfig", "/nonexistent")}"}}
"""
