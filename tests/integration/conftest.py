"""The audit store each integration test of it runs against: a migrated database on the real Postgres, or SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.runs.audit import AuditStore
from service.stores.postgres import PostgresAuditStore
from service.stores.sqlite import SqliteAuditStore
from tests.support.jobs import new_database
from tests.support.servers import Postgres


@pytest.fixture(params=["postgres", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    if request.param == "postgres":
        postgres: Postgres = request.getfixturevalue("postgres")
        found: AuditStore = PostgresAuditStore(new_database(postgres))
        await found.migrate()  # type: ignore[attr-defined]
    else:
        found = SqliteAuditStore(tmp_path / "audit.db")
    yield found
    await found.close()
