"""As deployed: two `serve --web-only` and workers from `serve --worker-only`, Alertmanager delivering to both web
replicas; workers are SIGKILLed or SIGTERMed at named points and every write is counted at its target."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import httpx2
import psycopg
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.crash import (
    POINTS,
    SLOW_TRIGGER,
    TOKEN,
    Cluster,
    base_env,
    cluster_config,
    crash_round,
    pokeable_worker,
    reach,
    start_cluster_alertmanager,
    webhook_message,
    write_playbooks,
)
from tests.support.jobs import JOBS_SCHEMA, new_database
from tests.support.processes import REMEDIATE
from tests.support.servers import Postgres, serving
from tests.targets.jobs_api import JobsApi


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(
    temporal_client: Client, temporal_env_address: str, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """Two web replicas up for the whole module; workers come and go per test."""
    root = tmp_path_factory.mktemp("cluster")
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(JOBS_SCHEMA)
        conn.execute(SLOW_TRIGGER)
    api, target_queue = JobsApi(), f"targets-{uuid.uuid4().hex[:8]}"
    async with serving(api.app()) as api_url, pokeable_worker(temporal_client, target_queue):
        (root / "config.yaml").write_text(cluster_config("CRASH_DB_DSN", temporal_env_address, api_url))
        env = base_env(
            temporal_env_address,
            f"crash-{uuid.uuid4().hex[:8]}",
            write_playbooks(root / "playbooks"),
            root / "config.yaml",
            dsn,
        )
        # The ledger, created the way an operator does it.
        migrate = await asyncio.create_subprocess_exec(
            REMEDIATE, "migrate", "jobs-db", env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE
        )
        _, err = await migrate.communicate()
        assert migrate.returncode == 0, err
        cluster = Cluster(temporal_client, dsn, api, env, root / "logs", target_queue=target_queue)
        webs = [cluster.web(), cluster.web()]
        for web in webs:
            await web.wait_ready()
        start_cluster_alertmanager(cluster, root / "am")
        try:
            yield cluster
        finally:
            assert cluster.alertmanager is not None
            cluster.alertmanager.process.stop()
            for worker in cluster.workers:
                worker.kill()
            codes = [await web.terminate() for web in webs]
            assert codes == [0, 0], [w.text()[-1000:] for w in webs]


@pytest.mark.asyncio(loop_scope="session")
async def test_six_concurrent_deliveries_over_both_web_replicas_make_one_run(cluster: Cluster) -> None:
    """One occurrence delivered six times at once, three times to each web replica, starts one run and one write."""
    worker = cluster.worker()
    await worker.wait_ready()
    target = await cluster.arm("pg", slow=False, gated=False)
    message = webhook_message(target.labels, uuid.uuid4().hex[:16], "2026-11-23T10:00:00Z")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        replies = await asyncio.gather(
            *(http.post(f"{cluster.webs[i % 2].url}/alertmanager", json=message) for i in range(6))
        )
    counts = [r.json() for r in replies]
    assert sum(c["started"] for c in counts) == 1 and sum(c["duplicates"] for c in counts) == 5, counts
    state = await cluster.run_for(target)
    assert state.status == "succeeded", state.reason
    assert await cluster.writes(target) == 1
    assert await worker.terminate() == 0


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("point", POINTS)
async def test_a_worker_killed_at_each_point_leaves_runs_that_finish_with_each_write_applied_once(
    cluster: Cluster, point: str
) -> None:
    """SIGKILL at `point` for a Postgres write, a Temporal signal and an HTTP write: a replacement worker finishes
    every run and each write reaches its target exactly once."""
    results = await crash_round(cluster, point)
    summary = [(t.kind, s.status, s.reason, n) for t, s, n in results]
    assert all(s.status == "succeeded" and n == 1 for _, s, n in results), summary
    if point == "applied":
        notes = {t.kind: next(r.note for r in s.steps if r.phase == "act") for t, s, _ in results}
        assert "already applied; result from the ledger" in notes["pg"], notes
        assert all(note.startswith("attempt 2") for note in notes.values()), notes


@pytest.mark.asyncio(loop_scope="session")
async def test_sigterm_lets_a_write_in_flight_finish_then_exits_zero(cluster: Cluster) -> None:
    """SIGTERM while a Postgres write is in flight: the worker stops polling, the write commits once, exit code 0."""
    worker = cluster.worker()
    await worker.wait_ready()
    target = await cluster.arm("pg", slow=True, gated=False)
    cluster.fire(target)
    await reach(cluster, worker, target, "in_flight")
    began = time.monotonic()
    assert await worker.terminate() == 0, worker.text()[-2000:]
    drained = time.monotonic() - began
    assert drained > 1.0, f"exited after {drained:.1f}s: the write was not waited for"
    assert await cluster.writes(target) == 1
    successor = cluster.worker()  # the run goes on (verify) on another worker
    state = await cluster.run_for(target)
    write = next(r for r in state.steps if r.phase == "act")
    assert state.status == "succeeded" and write.attempts == 1 and not write.note.startswith("attempt"), write
    assert await successor.terminate() == 0
