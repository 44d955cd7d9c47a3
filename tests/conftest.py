"""Session-wide real servers (Postgres, Temporal dev server, Prometheus) and per-test databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from service.cli.devserver import start_dev_server
from tests.support.processes import reap
from tests.support.servers import Postgres, Prometheus, Redis, scratch, start_postgres, start_prometheus, start_redis

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def reap_service_processes() -> Iterator[None]:
    """`remediate` processes a failed test did not stop are killed when the session ends."""
    yield
    reap()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = start_postgres(scratch("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    server = start_prometheus(scratch("prom"))
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = start_redis(scratch("redis"))
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


JOBS_SCHEMA = """
create table jobs (id int primary key, queue text not null, status text not null, worker text,
                   updated_at timestamptz not null default now());
create table job_updates (job_id int not null, at timestamptz not null default clock_timestamp());
create function count_update() returns trigger language plpgsql as $$
begin insert into job_updates (job_id) values (new.id); return new; end $$;
create trigger jobs_updated after update on jobs for each row execute function count_update();
"""


def new_database(postgres: Postgres) -> str:
    """A fresh, empty database on the session's Postgres server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return postgres.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def jobs_db(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with the example's `jobs` table; every row update is counted in job_updates."""
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(JOBS_SCHEMA)
    monkeypatch.setenv("JOBS_DB_DSN", dsn)
    return dsn


def seed_jobs(dsn: str, stuck: list[int], fresh: list[int] = (), other_queue: list[int] = ()) -> None:  # type: ignore[assignment]
    """Stuck jobs are `running` for an hour on queue q1; fresh ones were updated now; others sit on q2."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in stuck:
            conn.execute("insert into jobs values (%s, 'q1', 'running', 'w1', now() - interval '1 hour')", [i])
        for i in fresh:
            conn.execute("insert into jobs values (%s, 'q1', 'running', 'w2', now())", [i])
        for i in other_queue:
            conn.execute("insert into jobs values (%s, 'q2', 'running', 'w3', now() - interval '1 hour')", [i])


def job_states(dsn: str) -> dict[int, str]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: r[1] for r in conn.execute("select id, status from jobs order by id")}


def update_counts(dsn: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: r[1] for r in conn.execute("select job_id, count(*) from job_updates group by job_id")}


@pytest.fixture(scope="session")
def temporal_env_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host
