"""Issue 20's hangs reproduced through `remediate serve` with the Postgres audit store: every run ends or says why."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx2
import psycopg
import pytest
from temporalio.client import Client

from tests.conftest import new_database
from tests.process.test_rails import AUTH, cli, env, many, write_config
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


async def open_runs(client: Client, queue: str) -> int:
    query = f"TaskQueue = '{queue}' AND {RUNS} AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def test_nul_labels_end_their_runs_and_starve_no_one(
    postgres: Postgres, temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """150 alerts with a NUL in a label value or name, then 20 ordinary ones: the 20 finish, the 150 end and are
    recorded in the audit store (NUL kept visible as an escape), and none is left RUNNING after 60 s."""
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
                deadline = started + 60
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
                assert set(statuses.values()) == {"succeeded"}, statuses
                with psycopg.connect(dsn) as db:
                    (labels,) = db.execute(
                        "select state->'labels' from remediate_audit_runs where state->'labels' ? 'v' limit 1"
                    ).fetchone() or (None,)
                assert labels is not None and "\\u0000" in labels["v"]
                assert (await http.get("/readyz", headers=AUTH)).status_code == 200
        finally:
            assert await service.terminate() == 0
