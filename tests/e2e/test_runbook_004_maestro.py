"""Runbook 004 end to end: stalled BullMQ jobs go back to wait, stuck runs are failed as 'Stalled' after approval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from temporalio.client import Client

from service.runs.policy import Mode
from tests.support.jobs import new_database
from tests.support.pipeline import Pipeline, connections_config, pipeline
from tests.support.servers import Postgres, Redis, serving
from tests.targets import maestro
from tests.targets.sql_exporter import SqlExporter


@dataclass
class World:
    dsn: str
    redis_url: str
    scrape: str


@pytest.fixture
async def world(postgres: Postgres, redis_server: Redis, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    dsn = new_database(postgres)
    cache = aioredis.Redis.from_url(redis_server.url)
    await cache.flushdb()
    await cache.aclose()
    monkeypatch.setenv("MAESTRO_DSN", dsn)
    monkeypatch.setenv("MAESTRO_REDIS_URL", redis_server.url)
    async with serving(SqlExporter(dsn, "maestro_run_running_age_seconds", maestro.AGES).app()) as url:
        yield World(dsn, redis_server.url, url.removeprefix("http://"))


def running(world: World, client: Client, mode: Mode) -> AbstractAsyncContextManager[Pipeline]:
    return pipeline(client, connections_config(), mode, "maestro-stuck-runs.yaml", [world.scrape])


async def test_dry_run_names_the_stalled_jobs_and_stuck_runs(world: World, temporal_client: Client) -> None:
    """The plan names exactly the stalled jobs and the stuck runs; Redis and Postgres are unchanged."""
    maestro.seed(world.dsn, world.redis_url, stuck=["RUN-1", "RUN-2"], healthy=["RUN-3"])
    async with running(world, temporal_client, Mode.DRY_RUN) as p:
        [state] = await p.runs()
    steps = {s.id: s for s in state.steps}
    assert state.status == "succeeded", state.reason
    assert sorted(steps["requeue-stalled"].targets) == ["job queue/RUN-1", "job queue/RUN-2"]
    assert sorted(steps["fail-stuck-runs"].targets) == ["row RUN-1", "row RUN-2"]
    assert maestro.queue(world.redis_url) == {"active": ["RUN-1", "RUN-2", "RUN-3"], "wait": []}
    assert maestro.changes(world.dsn) == []


async def test_live_requeues_stalled_jobs_and_fails_stuck_runs_once(world: World, temporal_client: Client) -> None:
    """Stalled jobs go back to wait, the stuck runs become FAILED/'Stalled' once, the healthy run and job stay."""
    maestro.seed(world.dsn, world.redis_url, stuck=["RUN-1", "RUN-2"], healthy=["RUN-3"])
    async with running(world, temporal_client, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    assert maestro.queue(world.redis_url) == {"active": ["RUN-3"], "wait": ["RUN-1", "RUN-2"]}
    assert maestro.runs(world.dsn) == {
        "RUN-1": ("FAILED", "Stalled"),
        "RUN-2": ("FAILED", "Stalled"),
        "RUN-3": ("RUNNING", None),
    }
    assert maestro.changes(world.dsn) == [("RUN-1", "FAILED"), ("RUN-2", "FAILED")]
    assert next(s for s in state.steps if s.id == "none-stuck").status == "ok"


async def test_healthy_maestro_means_no_write(world: World, temporal_client: Client) -> None:
    """With only healthy runs and locked jobs, an alert (posted by hand) leads to no write."""
    maestro.seed(world.dsn, world.redis_url, healthy=["RUN-3"])
    async with running(world, temporal_client, Mode.AUTO) as p:
        p.fire({"alertname": "MaestroRunsStuck"})
        [state] = await p.runs()
    assert state.status == "succeeded" and all(s.status == "skipped" for s in state.steps if s.phase == "act")
    assert maestro.queue(world.redis_url) == {"active": ["RUN-3"], "wait": []} and maestro.changes(world.dsn) == []


async def test_failing_runs_waits_for_approval(world: World, temporal_client: Client) -> None:
    """Stalled jobs are requeued at once; no run is failed until an approval arrives through the API."""
    maestro.seed(world.dsn, world.redis_url, stuck=["RUN-1"])
    async with running(world, temporal_client, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        assert maestro.queue(world.redis_url)["wait"] == ["RUN-1"] and maestro.changes(world.dsn) == []
        assert waiting.gate is not None and [w.step for w in waiting.gate.request.writes] == ["fail-stuck-runs"]
        await p.approve(waiting.run_id)
        await p.runs(status="succeeded")
    assert maestro.changes(world.dsn) == [("RUN-1", "FAILED")]
