"""Runbook 003 end to end: a dead worker's RUNNING workflows are reclaimed by worker NAME, the live worker's kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest
from temporalio.client import Client

from service.runs.policy import Mode
from tests.support.jobs import new_database
from tests.support.pipeline import Pipeline, connections_config, pipeline
from tests.support.servers import Postgres, serving
from tests.targets import flovyn
from tests.targets.sql_exporter import SqlExporter


@pytest.fixture
async def flovyn_db(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, str]]:
    dsn = new_database(postgres)
    monkeypatch.setenv("FLOVYN_DSN", dsn)
    exporter = SqlExporter(dsn, "flovyn_worker_last_heartbeat_timestamp_seconds", flovyn.HEARTBEATS)
    async with serving(exporter.app()) as url:
        yield dsn, url.removeprefix("http://")


def running(client: Client, scrape: str, mode: Mode) -> AbstractAsyncContextManager[Pipeline]:
    return pipeline(client, connections_config(), mode, "worker-heartbeat-stale.yaml", [scrape])


async def test_dry_run_names_the_dead_workers_workflows_only(
    flovyn_db: tuple[str, str], temporal_client: Client
) -> None:
    """The plan covers the dead worker and its 2 workflows (rolled back); nothing changes."""
    dsn, scrape = flovyn_db
    ids = flovyn.seed(dsn)
    async with running(temporal_client, scrape, Mode.DRY_RUN) as p:
        [state] = await p.runs()
    steps = {s.id: s for s in state.steps}
    assert state.status == "succeeded", state.reason
    assert sorted(t.removeprefix("row ") for t in steps["reclaim-workflows"].targets) == sorted(ids["dead"])
    assert steps["mark-offline"].result["rowcount"] == 1  # type: ignore[index]
    assert flovyn.changes(dsn) == []


async def test_live_reclaims_exactly_the_dead_workers_workflows_once(
    flovyn_db: tuple[str, str], temporal_client: Client
) -> None:
    """Marked offline, its workflows and tasks back to PENDING with worker_id NULL, once; the live worker's kept."""
    dsn, scrape = flovyn_db
    ids = flovyn.seed(dsn)
    async with running(temporal_client, scrape, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    now = flovyn.workflows(dsn)
    assert all(now[i] == ("PENDING", None) for i in ids["dead"])
    assert all(now[i] == ("RUNNING", "worker-live") for i in ids["live"])
    changed = flovyn.changes(dsn)
    assert len(changed) == 1 + 2 + 2  # the worker, its 2 workflows, its 2 tasks: each exactly once
    assert {tbl for tbl, _, _ in changed} == {"worker", "workflow_execution", "task_execution"}
    assert next(s for s in state.steps if s.id == "none-orphaned").status == "ok"


async def test_healthy_workers_mean_no_write(flovyn_db: tuple[str, str], temporal_client: Client) -> None:
    """With every worker heartbeating, an alert (posted by hand) finds no dead worker and writes nothing."""
    dsn, scrape = flovyn_db
    flovyn.seed(dsn, dead=None)
    async with running(temporal_client, scrape, Mode.AUTO) as p:
        p.fire({"alertname": "FlovynWorkerHeartbeatStale", "worker_name": "worker-live", "status": "ONLINE"})
        [state] = await p.runs()
    assert state.status == "succeeded" and all(s.status == "skipped" for s in state.steps if s.phase == "act")
    assert flovyn.changes(dsn) == []


async def test_reclaiming_waits_for_approval(flovyn_db: tuple[str, str], temporal_client: Client) -> None:
    """The worker is marked offline at once, but no workflow moves until an approval arrives through the API."""
    dsn, scrape = flovyn_db
    ids = flovyn.seed(dsn)
    async with running(temporal_client, scrape, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        assert [tbl for tbl, _, _ in flovyn.changes(dsn)] == ["worker"]
        assert all(flovyn.workflows(dsn)[i][0] == "RUNNING" for i in ids["dead"])
        assert waiting.gate is not None
        assert {w.step for w in waiting.gate.request.writes} == {"reclaim-workflows", "reclaim-tasks"}
        await p.approve(waiting.run_id)
        await p.runs(status="succeeded")
    assert all(flovyn.workflows(dsn)[i] == ("PENDING", None) for i in ids["dead"])
