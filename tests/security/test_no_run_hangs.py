"""Issue 20's hangs reproduced through `remediate serve` with the Postgres audit store: every run ends or says why."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx2
import psycopg
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from tests.support.deployment import AUTH, cli, env, many, write_config
from tests.support.jobs import new_database
from tests.support.processes import start
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import Postgres, serving
from tests.support.stack import RUNS

pytestmark = pytest.mark.process
NAME = "hang-probe"
HOSTILE = 150
ORDINARY = 20


def audit_statuses(dsn: str) -> dict[str, str]:
    """Each run's last recorded status, read straight from the audit store's table."""
    with psycopg.connect(dsn) as db:
        return {run_id: status for run_id, status in db.execute("select run_id, status from remediate_audit_runs")}


def audit_reasons(dsn: str) -> dict[str, str]:
    """Why each run that did not succeed ended, as the audit store has it (for a failure's message)."""
    with psycopg.connect(dsn) as db:
        rows = db.execute("select run_id, state->>'reason' from remediate_audit_runs where status <> 'succeeded'")
        return {run_id: reason for run_id, reason in rows}


async def open_runs(client: Client, queue: str) -> int:
    query = f"TaskQueue = '{queue}' AND {RUNS} AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def test_nul_labels_end_their_runs_and_starve_no_one(
    postgres: Postgres, temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """150 alerts with a NUL in a label value or name, then 20 ordinary ones: the 20 finish, the 150 end and are
    recorded in the audit store (NUL kept visible as an escape), and none is left RUNNING after 180 s (a liveness
    bound, not a latency goal: the hang this guards against lasted until the run's execution timeout, hours)."""
    dsn, queue, target = new_database(postgres), f"nul-{uuid.uuid4().hex[:8]}", RailTarget()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "probe.yaml").write_text(playbook(NAME, "NulProbe"))
    async with serving(target.app()) as url:
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
        settings["REMEDIATE_DATABASE_URL"] = dsn
        migrated = await cli(["migrate", "audit"], settings)
        assert migrated.returncode == 0, migrated.stderr
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                hostile = many("NulProbe", [f"h{i}" for i in range(HOSTILE)])
                alerts: list[dict[str, dict[str, str]]] = hostile["alerts"]  # type: ignore[assignment]
                for i, item in enumerate(alerts):
                    labels = item["labels"]
                    if i % 2:
                        labels["v"] = f"nul\u0000x{i}"
                    else:
                        labels["bad\u0000name"] = "x"
                reply = await http.post("/alertmanager", json=hostile)
                assert reply.status_code == 200 and reply.json()["started"] == HOSTILE, reply.text
                ordinary = many("NulProbe", [f"o{i}" for i in range(ORDINARY)])
                started = time.monotonic()
                reply = await http.post("/alertmanager", json=ordinary)
                assert reply.status_code == 200 and reply.json()["started"] == ORDINARY, reply.text
                deadline = started + 180  # 170 runs on two cores shared with the rest of the suite (a browser, too)
                while time.monotonic() < deadline:
                    if sum(target.writes[f"o{i}"] for i in range(ORDINARY)) == ORDINARY and not await open_runs(
                        temporal_client, queue
                    ):
                        break
                    await asyncio.sleep(0.5)
                assert await open_runs(temporal_client, queue) == 0
                assert {f"o{i}": 1 for i in range(ORDINARY)}.items() <= target.writes.items()
                statuses = audit_statuses(dsn)
                assert len(statuses) == HOSTILE + ORDINARY
                assert set(statuses.values()) == {"succeeded"}, audit_reasons(dsn)
                with psycopg.connect(dsn) as db:
                    (labels,) = db.execute(
                        "select state->'labels' from remediate_audit_runs where state->'labels' ? 'v' limit 1"
                    ).fetchone() or (None,)
                assert labels is not None and "\\u0000" in labels["v"]
                assert (await http.get("/readyz", headers=AUTH)).status_code == 200
        finally:
            assert await service.terminate() == 0


OVERFLOW = """
name: overflow-probe
match: {alertname: OverflowProbe}
inputs: {pages: "{{ range(alert.labels.pages|int) | list | length }}"}
diagnose:
  - id: check
    action: http.request
    connection: target
    with: {path: "/check/{{ inputs.pages }}"}
"""
HUGE = """
name: huge-probe
match: {alertname: HugeProbe}
diagnose:
  - id: check
    action: http.request
    connection: target
    with: {path: "/check/one", query: {a: "{{ alert.labels }}", b: "{{ alert.labels }}"}}
act:
  - id: fix
    action: http.request
    connection: target
    approval: none
    with:
      method: POST
      path: "/fix/one"
      body: {a: "{{ alert.labels }}", b: "{{ alert.labels }}", c: "{{ alert.labels }}", d: "{{ alert.labels }}"}
"""


async def test_template_overflow_and_the_largest_alert_fail_their_runs_with_a_reason(
    postgres: Postgres, temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """`range(labels.pages|int)` with pages=1000000 and 16 labels of 16,000 characters rendered into two steps:
    each run ends `failed` with the reason (the sandbox's overflow, the bytes over the step limit), recorded."""
    dsn, queue, target = new_database(postgres), f"big-{uuid.uuid4().hex[:8]}", RailTarget()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "overflow.yaml").write_text(OVERFLOW)
    (books / "huge.yaml").write_text(HUGE)
    async with serving(target.app()) as url:
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
        settings["REMEDIATE_DATABASE_URL"] = dsn
        assert (await cli(["migrate", "audit"], settings)).returncode == 0
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                overflow = many("OverflowProbe", ["p1"])
                overflow["alerts"][0]["labels"]["pages"] = "1000000"  # type: ignore[index]
                huge = many("HugeProbe", ["h1"])
                huge["alerts"][0]["labels"].update({f"l{i}": "x" * 16_000 for i in range(15)})  # type: ignore[index]
                for message in (overflow, huge):
                    reply = await http.post("/alertmanager", json=message)
                    assert reply.status_code == 200 and reply.json()["started"] == 1, reply.text
                deadline = time.monotonic() + 60
                while len(audit_statuses(dsn)) < 2 or await open_runs(temporal_client, queue):
                    assert time.monotonic() < deadline, "runs still open after 60 s"
                    await asyncio.sleep(0.5)
                with psycopg.connect(dsn) as db:
                    ended: dict[str, str] = dict(
                        db.execute("select playbook, state->>'reason' from remediate_audit_runs").fetchall()
                    )
                assert set(audit_statuses(dsn).values()) == {"failed"}
                assert "OverflowError" in ended["overflow-probe"] and "nothing was written" in ended["overflow-probe"]
                assert "over the 65536 a step may send" in ended["huge-probe"], ended
                assert target.writes == {}
        finally:
            assert await service.terminate() == 0


@workflow.defn(name="RemediationWorkflow", sandboxed=False)
class BrokenRun:
    """A run whose workflow task fails every time, as a bug or an unforeseen value once made ours do."""

    @workflow.run
    async def run(self, _input: object) -> None:
        raise RuntimeError("a workflow task that always fails")


async def test_a_run_whose_workflow_tasks_fail_is_seen(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """A run stuck on failing workflow tasks shows in `remediate runs list --stuck` (with what Temporal reports),
    in the `remediate_runs_stuck` gauge and in /readyz's advice, which still answers ready."""
    queue, broken_queue = f"stuck-{uuid.uuid4().hex[:8]}", f"broken-{uuid.uuid4().hex[:8]}"
    run_id = f"stuck-probe/{uuid.uuid4().hex[:16]}/1"
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "probe.yaml").write_text(playbook(NAME, "NulProbe"))
    settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", "one"), books)
    service = start("serve", ["serve", "--web-only"], settings, tmp_path)
    async with Worker(temporal_client, task_queue=broken_queue, workflows=[BrokenRun]):
        handle = await temporal_client.start_workflow(
            "RemediationWorkflow", {}, id=run_id, task_queue=broken_queue, memo={"playbook": "stuck-probe"}
        )
        try:
            await service.wait_ready()
            listed = ""
            for _ in range(60):
                listed = (await cli(["runs", "list", "--stuck"], settings)).stdout
                if run_id in listed:
                    break
                await asyncio.sleep(1)
            assert run_id in listed and "category=WorkflowTaskFailed" in listed and "stuck-probe" in listed, listed
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=10) as http:
                for _ in range(40):
                    ready = await http.get("/readyz")
                    if "stuck run(s)" in ready.json().get("advice", {}).get("runs", ""):
                        break
                    await asyncio.sleep(1)
                assert ready.status_code == 200 and "runs list --stuck" in ready.json()["advice"]["runs"], ready.text
                # The count is the namespace's (other tests on this Temporal may have stuck runs of their own): ours
                # makes it at least 1, as /readyz's advice already said from the same count.
                stuck = re.search(r"^remediate_runs_stuck (\S+)$", (await http.get("/metrics")).text, re.M)
                assert stuck is not None and float(stuck.group(1)) >= 1, stuck
        finally:
            await handle.terminate("test over")
            assert await service.terminate() == 0
