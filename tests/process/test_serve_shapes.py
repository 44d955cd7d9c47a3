"""`remediate serve` as one process and split, as deploy/ runs it: live remediation through Alertmanager, a target
Postgres that restarts or goes away, and the service's own Temporal down for a minute."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import psycopg
from temporalio.client import Client

from service.runs.state import RunState
from service.temporal.client import TemporalRuns, connect
from tests.support.crash import webhook_message
from tests.support.jobs import JOBS_SCHEMA, job_states, seed_jobs, update_counts
from tests.support.paths import DATA
from tests.support.processes import REMEDIATE, ServiceProcess, start
from tests.support.servers import (
    TemporalDevServer,
    free_port,
    scratch,
    start_alertmanager,
    start_postgres,
)
from tests.support.stack import RUNS, state_now

TOKEN = "shape-token"
PLAYBOOKS = DATA / "playbooks"


def env_for(address: str, queue: str, config: Path, dsn: str, **extra: str) -> dict[str, str]:
    return {
        "REMEDIATE_TEMPORAL_ADDRESS": address,
        "REMEDIATE_TASK_QUEUE": queue,
        "REMEDIATE_PLAYBOOKS": str(PLAYBOOKS),
        "REMEDIATE_CONFIG": str(config),
        "REMEDIATE_MODE": "auto",
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
        "REMEDIATE_HEARTBEAT_TIMEOUT": "2",
        "REMEDIATE_DEDUPE_TTL": "1",
        "REMEDIATE_ATTEMPT_BACKOFF": "1",
        "JOBS_DB_DSN": dsn,
        **extra,
    }


def firing(queue: str, fingerprint: str, starts: str) -> dict[str, object]:
    return webhook_message({"alertname": "JobsStuck", "queue": queue, "severity": "critical"}, fingerprint, starts)


async def finished(client: Client, queue: str, want: int, within: float = 60) -> list[RunState]:
    """Wait until `want` runs on this task queue have finished; return their states."""
    runs, deadline, states = TemporalRuns(client, queue), time.monotonic() + within, []
    while time.monotonic() < deadline:
        ids = [e.id async for e in client.list_workflows(f"TaskQueue = '{queue}' AND {RUNS}")]
        states = [s for s in [await state_now(runs, i) for i in ids] if s is not None and s.finished_at]
        if len(states) >= want:
            return states
        await asyncio.sleep(0.3)
    raise AssertionError(f"{len(states)} of {want} run(s) finished on {queue} after {within}s")


async def test_serve_in_one_process_remediates_what_alertmanager_delivers(
    temporal_env_address: str, temporal_client: Client, jobs_db: str, tmp_path: Path
) -> None:
    """`remediate serve` (web + worker, one process) fixes the stuck rows once through one delivery workflow, counts
    it in /metrics, then SIGTERM stops it with 0."""
    seed_jobs(jobs_db, stuck=[1, 2], fresh=[3])
    queue = f"one-{uuid.uuid4().hex[:8]}"
    service = start(
        "serve", ["serve"], env_for(temporal_env_address, queue, DATA / "jobs-config.yaml", jobs_db), tmp_path
    )
    am = None
    try:
        await service.wait_ready()
        am = start_alertmanager(tmp_path / "am", f"{service.url}/alertmanager", TOKEN)
        am.post_alerts([{"labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "critical"}}])
        [state] = await finished(temporal_client, queue, 1)
        assert state.status == "succeeded", state.reason
        assert job_states(jobs_db) == {1: "pending", 2: "pending", 3: "running"}
        assert update_counts(jobs_db) == {1: 1, 2: 1}
        deliveries = f"TaskQueue = '{queue}' AND WorkflowType = 'DeliveryWorkflow' AND ExecutionStatus = 'Completed'"
        assert (await temporal_client.count_workflows(deliveries)).count >= 1
        async with httpx2.AsyncClient() as http:
            scraped = (await http.get(f"{service.url}/metrics")).text
        assert 'remediate_delivered_runs_total{outcome="started"} 1.0' in scraped, scraped
    finally:
        if am is not None:
            am.process.stop()
        assert await service.terminate() == 0, service.text()[-2000:]
    assert "remediate serve: stopped" in service.text()


async def test_a_target_postgres_restarted_between_diagnosis_and_write_does_not_fail_the_run(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """The pool's connections die with the restart; they are checked before use, so the write goes through."""
    pg = start_postgres(scratch("pg-restart"))
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(JOBS_SCHEMA)
        seed_jobs(dsn, stuck=[7])
        queue = f"restart-{uuid.uuid4().hex[:8]}"
        env = env_for(
            temporal_env_address, queue, DATA / "jobs-config.yaml", dsn, REMEDIATE_PAUSE_AT="before:requeue=4"
        )
        service = start("serve", ["serve"], env, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                body = firing("q1", uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
                assert (await http.post(f"{service.url}/alertmanager", json=body)).json()["started"] == 1
            await service.wait_log("paused before:requeue")
            pg.stop()
            pg.start()
            [state] = await finished(temporal_client, queue, 1)
        finally:
            assert await service.terminate() == 0
        assert state.status == "succeeded", state.reason
        assert update_counts(dsn) == {7: 1}
    finally:
        pg.stop()


NOTES = """
create table job_notes (job_id int not null, note text not null);
"""
TWO_WRITES = """
name: annotate-and-requeue
match: {alertname: JobsStuck}
inputs: {queue: "{{ alert.labels.queue }}"}
diagnose:
  - id: stuck
    action: postgres.query
    connection: jobs-db
    with:
      sql: select id from jobs where status = 'running' and queue = %(queue)s order by id
      params: {queue: "{{ inputs.queue }}"}
act:
  - id: annotate
    action: postgres.execute
    connection: jobs-db
    when: "steps.stuck.rows | length > 0"
    approval: none
    with:
      sql: insert into job_notes (job_id, note) select unnest(%(ids)s::int[]), 'requeued by remediate'
      params: {ids: "{{ steps.stuck.rows | map(attribute='id') | list }}"}
      max_rows: 10
  - id: requeue
    action: postgres.execute
    connection: jobs-db
    when: "steps.stuck.rows | length > 0"
    approval: none
    retry: {attempts: 2, interval: 1s}
    with:
      sql: update jobs set status = 'pending' where id = any(%(ids)s) and status = 'running'
      params: {ids: "{{ steps.stuck.rows | map(attribute='id') | list }}"}
      max_rows: 10
"""


async def test_a_run_failed_by_a_lost_target_is_remediated_by_the_next_delivery_without_repeating_writes(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Attempt 1 annotates, then loses Postgres and fails; the next delivery starts attempt 2, which finds the
    annotation in the ledger (not inserted again) and requeues the rows once."""
    pg = start_postgres(scratch("pg-lost"))
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(JOBS_SCHEMA)
            conn.execute(NOTES)
        seed_jobs(dsn, stuck=[1, 2])
        (tmp_path / "playbooks").mkdir()
        (tmp_path / "playbooks" / "two.yaml").write_text(TWO_WRITES)
        (tmp_path / "config.yaml").write_text(
            'connections:\n  jobs-db: {type: postgres, dsn: "env:JOBS_DB_DSN", ledger: remediate.ledger}\n'
        )
        queue = f"lost-{uuid.uuid4().hex[:8]}"
        env = env_for(
            temporal_env_address,
            queue,
            tmp_path / "config.yaml",
            dsn,
            REMEDIATE_PLAYBOOKS=str(tmp_path / "playbooks"),
            REMEDIATE_PAUSE_AT="before:requeue=3",
        )
        migrate = await asyncio.create_subprocess_exec(REMEDIATE, "migrate", "jobs-db", env={**os.environ, **env})
        assert await migrate.wait() == 0
        service = start("serve", ["serve"], env, tmp_path)
        try:
            await service.wait_ready()
            body = firing("q1", uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                assert (await http.post(f"{service.url}/alertmanager", json=body)).json()["started"] == 1
                await service.wait_log("paused before:requeue")
                pg.stop()  # the target goes away between the two writes
                [failed] = await finished(temporal_client, queue, 1)
                assert failed.status == "failed" and failed.attempt == 1, failed
                pg.start()
                await asyncio.sleep(1.5)  # Alertmanager re-sends on its own interval; the receiver's memory expires
                again = (await http.post(f"{service.url}/alertmanager", json=body)).json()
                assert again["started"] == 1, again
                state = await _attempt(temporal_client, queue, failed.run_id, 2)
        finally:
            assert await service.terminate() == 0
        assert state.status == "succeeded", state.reason
        annotate = next(s for s in state.steps if s.id == "annotate")
        assert "already applied" in annotate.summary and "ledger" in annotate.note, annotate
        with psycopg.connect(dsn) as conn:
            notes = conn.execute("select job_id, count(*) from job_notes group by job_id order by 1").fetchall()
        assert notes == [(1, 1), (2, 1)]
        assert update_counts(dsn) == {1: 1, 2: 1}
    finally:
        pg.stop()


async def _attempt(client: Client, queue: str, run_id: str, attempt: int, within: float = 60) -> RunState:
    runs, deadline = TemporalRuns(client, queue), time.monotonic() + within
    while time.monotonic() < deadline:
        state = await state_now(runs, run_id)
        if state is not None and state.attempt == attempt and state.finished_at:
            return state
        await asyncio.sleep(0.3)
    raise AssertionError(f"attempt {attempt} of {run_id} did not finish within {within}s")


async def test_temporal_down_for_a_minute_gets_503s_and_every_alert_is_remediated_when_it_returns(
    jobs_db: str, tmp_path: Path
) -> None:
    """Split web and worker; Temporal stops for 60 s: webhooks get 503 (Alertmanager keeps them), a worker started
    meanwhile waits with back-off, and after Temporal returns every alert's rows are fixed once. The web replica
    serves the console; the worker-only one does not."""
    temporal = TemporalDevServer(free_port(), tmp_path / "temporal.db", tmp_path / "temporal.log")
    temporal.start()
    queue = f"down-{uuid.uuid4().hex[:8]}"
    seed_jobs(jobs_db, stuck=[1, 2, 3])
    with psycopg.connect(jobs_db, autocommit=True) as conn:
        conn.execute("update jobs set queue = 'q' || id")  # three queues: three alerts, three runs
        conn.execute("truncate job_updates")  # count only what remediation changes
    env = env_for(temporal.address, queue, DATA / "jobs-config.yaml", jobs_db)
    procs: list[ServiceProcess] = [
        start("web", ["serve", "--web-only"], env, tmp_path),
        start("worker1", ["serve", "--worker-only"], env, tmp_path),
    ]
    am = None
    try:
        for proc in procs:
            await proc.wait_ready()
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{procs[0].url}/ui/sign-in")).status_code == 200  # the console is the web side's
            assert (await http.get(f"{procs[1].url}/ui/sign-in")).status_code == 404  # a worker-only replica: none
        am = start_alertmanager(tmp_path / "am", f"{procs[0].url}/alertmanager", TOKEN)
        temporal.stop()
        down_since = time.monotonic()
        for q in ("q1", "q2", "q3"):
            am.post_alerts([{"labels": {"alertname": "JobsStuck", "queue": q, "severity": "critical"}}])
        procs.append(start("worker2", ["serve", "--worker-only"], env, tmp_path))
        async with httpx2.AsyncClient() as http:
            while (
                'remediate_webhook_requests_total{code="503"}' not in (await http.get(f"{procs[0].url}/metrics")).text
            ):
                assert time.monotonic() - down_since < 30, "Alertmanager never got a 503"
                await asyncio.sleep(0.2)
            ready = await http.get(f"{procs[0].url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ready.status_code == 503 and ready.json()["checks"]["temporal"].startswith("failed")
        await procs[2].wait_log("unreachable (attempt 2)")
        assert job_states(jobs_db) == {1: "running", 2: "running", 3: "running"}
        await asyncio.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
        temporal.start()
        client = await connect(temporal.address, "default")
        states = await finished(client, queue, 3, within=120)
        assert sorted(s.status for s in states) == ["succeeded"] * 3, [(s.run_id, s.reason) for s in states]
        assert update_counts(jobs_db) == {1: 1, 2: 1, 3: 1}
        for proc in procs:
            assert proc.proc.poll() is None, f"{proc.name} died while Temporal was down:\n{proc.text()[-2000:]}"
    finally:
        if am is not None:
            am.process.stop()
        codes = [await p.terminate() for p in procs]
        temporal.stop()
    assert codes == [0, 0, 0]


async def test_a_worker_stopped_after_temporal_went_away_still_exits(jobs_db: str, tmp_path: Path) -> None:
    """SIGTERM to a worker whose Temporal has just stopped (a whole node going down): its drain cannot reach the
    server, and it still exits 0 within its bound (grace + 15 s), instead of waiting on the SDK forever."""
    temporal = TemporalDevServer(free_port(), tmp_path / "temporal.db", tmp_path / "temporal.log")
    temporal.start()
    env = env_for(temporal.address, f"gone-{uuid.uuid4().hex[:8]}", DATA / "jobs-config.yaml", jobs_db)
    worker = start("worker", ["serve", "--worker-only"], {**env, "REMEDIATE_SHUTDOWN_GRACE": "2"}, tmp_path)
    try:
        await worker.wait_ready()
        temporal.stop()
        await asyncio.sleep(1)
        assert await worker.terminate(within=2 + 15 + 15) == 0
    finally:
        worker.kill()
        temporal.stop()
