"""Recorded workflow histories for the replay test: each scenario run for real, its histories saved as JSON.

Run: .venv/bin/python -m tests.support.histories tests/data/histories/<label>

Starts a Postgres, the Temporal dev server and the composed service (as `remediate serve` runs it), then runs
four scenarios of the `stuck-jobs` playbook: a dry run, a run that writes (the governor's limits on), a run held at
an approval gate and approved through the API (with a Slack endpoint that records calls), and a write whose
rendered parameters are invalid. Every run's and delivery's history is written to `<dir>/<workflow>.json`.
Histories recorded by one version of the code are replayed by every later one (tests/unit/test_replay.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from temporalio.client import Client

from service.app.compose import Notifiers
from service.cli.devserver import start_dev_server
from service.notify.slack.kind import SlackSettings
from service.runs.policy import Mode
from tests.support.fake_slack import FakeSlack
from tests.support.jobs import JOBS_SCHEMA, new_database, seed_jobs
from tests.support.messages import message
from tests.support.paths import DATA
from tests.support.servers import Postgres, scratch, serving, start_postgres
from tests.support.stack import TOKEN, run_handle, running_stack

AUTH = {"Authorization": f"Bearer {TOKEN}"}
APPROVER = "approver-token-of-alice"
BAD_RENDER = """
  - id: end-sessions
    action: postgres.terminate_backends
    connection: jobs-db
    approval: none
    with:
      backends: "{{ alert.labels.queue }}"
      max_targets: 2
"""


def _run_id(body: dict[str, object]) -> str:
    alert = body["alerts"][0]  # type: ignore[index]
    starts = int(datetime.fromisoformat(alert["startsAt"]).timestamp())
    return f"stuck-jobs/{alert['fingerprint']}/{starts}"


async def _scenario(client: Client, base: Path, mode: Mode, name: str, pg: Postgres, slack: str = "") -> list[str]:
    """One alert through one stack, on a database of its own; the ids of the run and its delivery."""
    dsn = new_database(pg)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(JOBS_SCHEMA)
    seed_jobs(dsn, stuck=[1, 2])
    os.environ["JOBS_DB_DSN"] = dsn
    config = base / f"{name}-config.yaml"
    config.write_text(
        (DATA / "jobs-config.yaml").read_text()
        + f"approvers: [U_ALICE]\napprover_tokens: {{U_ALICE: 'file:{base / 'alice'}'}}\n"
    )
    (base / "alice").write_text(APPROVER)
    books = base / f"{name}-playbooks"
    books.mkdir()
    text = (DATA / "playbooks" / "stuck-jobs.yaml").read_text()
    if name == "approved":
        text = text.replace("    approval: none\n", "")
    if name == "bad-render":
        text = text.replace("\nverify:", BAD_RENDER + "verify:")
    (books / "stuck-jobs.yaml").write_text(text)
    queue = f"rec-{uuid.uuid4().hex[:6]}"
    slack_settings = SlackSettings(bot_token="xoxb-test", channel="C_OPS", api_url=f"{slack}/api")
    extra: dict[str, Any] = {"notifiers": Notifiers({"slack": slack_settings})} if slack else {}
    async with (
        running_stack(client, config, books, mode, task_queue=queue, **extra) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        body = message()
        assert (await http.post("/alertmanager", json=body)).status_code == 200
        run_id = _run_id(body)
        handle = await run_handle(client, run_id)
        if name == "approved":
            for _ in range(200):
                answer = await http.post(
                    f"/api/v1/runs/{run_id}/approve", headers={"Authorization": f"Bearer {APPROVER}"}
                )
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.1)
        await asyncio.gather(handle.result(), return_exceptions=True)
        deliveries = [
            e.id async for e in client.list_workflows(f"TaskQueue = '{queue}' AND WorkflowType = 'DeliveryWorkflow'")
        ]
    return [run_id, *deliveries]


async def record(out: Path) -> None:
    pg = start_postgres(scratch("histories-pg"))
    env = await start_dev_server()
    base = scratch("histories")
    slack = FakeSlack()
    try:
        async with serving(slack.app()) as slack_url:
            scenarios = [
                (Mode.DRY_RUN, "dry-run", ""),
                (Mode.AUTO, "wrote", ""),
                (Mode.AUTO, "approved", slack_url),
                (Mode.AUTO, "bad-render", ""),
            ]
            for mode, name, url in scenarios:
                ids = await _scenario(env.client, base, mode, name, pg, url)
                for kind, workflow_id in zip(("run", "delivery"), ids, strict=False):
                    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
                    (out / f"{name}-{kind}.json").write_text(history.to_json())
                    print(f"{name}-{kind}: {workflow_id}", file=sys.stderr)
    finally:
        await env.shutdown()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    target = parser.parse_args().out
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(record(target))
