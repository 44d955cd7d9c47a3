"""Session-wide real servers (Postgres, Temporal dev server, Prometheus) and per-test databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from service.cli.devserver import start_dev_server
from tests.support.jobs import JOBS_SCHEMA, new_database
from tests.support.processes import reap
from tests.support.servers import Postgres, Prometheus, Redis, scratch, start_postgres, start_prometheus, start_redis

MARKED_BY_FOLDER = {"integration", "process", "e2e"}  # a test's kind is the folder it sits in


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration, tests/process or tests/e2e carries that marker (`-m process` selects)."""
    for item in items:
        kinds = MARKED_BY_FOLDER.intersection(item.path.parts)
        for kind in kinds:
            item.add_marker(kind)


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


@pytest.fixture
def jobs_db(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with the example's `jobs` table; every row update is counted in job_updates."""
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(JOBS_SCHEMA)
    monkeypatch.setenv("JOBS_DB_DSN", dsn)
    return dsn


@pytest.fixture(scope="session")
def temporal_env_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host
