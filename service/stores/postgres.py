"""The audit store in Postgres (REMEDIATE_DATABASE_URL): runs and their records, kept beyond Temporal's retention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.runs.audit import AuditEvent, AuditQuery, AuditSnapshot
from service.runs.listing import LIST_ORDER, LISTED_AT, ORDER_BY, ListedRun, RunColumns, RunCursor, RunQuery
from service.runs.state import RunState, short_id
from service.vocabulary.errors import AuditRejected, AuditUnavailable
from service.vocabulary.redact import redact

# Each list filter has an index that also holds the list's order, so a page is one index range however deep.
COLUMNS = RunColumns(mark="%s", alertname="(state->>'alertname')")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS remediate_audit_runs (
  run_id text NOT NULL, attempt integer NOT NULL, short_id text NOT NULL, seq integer NOT NULL,
  playbook text NOT NULL, status text NOT NULL, started_at timestamptz, updated_at timestamptz NOT NULL,
  state jsonb NOT NULL,
  PRIMARY KEY (run_id, attempt)
);
DROP INDEX IF EXISTS remediate_audit_runs_started;
CREATE INDEX IF NOT EXISTS remediate_audit_runs_listed ON remediate_audit_runs ({LIST_ORDER});
CREATE INDEX IF NOT EXISTS remediate_audit_runs_playbook ON remediate_audit_runs (playbook, {LIST_ORDER});
CREATE INDEX IF NOT EXISTS remediate_audit_runs_status ON remediate_audit_runs (status, {LIST_ORDER});
CREATE INDEX IF NOT EXISTS remediate_audit_runs_alert ON remediate_audit_runs (({COLUMNS.alertname}), {LIST_ORDER});
CREATE INDEX IF NOT EXISTS remediate_audit_runs_short ON remediate_audit_runs (short_id);
CREATE TABLE IF NOT EXISTS remediate_audit_events (
  run_id text NOT NULL, attempt integer NOT NULL, key text NOT NULL, kind text NOT NULL, at timestamptz,
  playbook text NOT NULL, record jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, attempt, key)
);
CREATE INDEX IF NOT EXISTS remediate_audit_events_at ON remediate_audit_events (at);
"""
_UPSERT_RUN = """
INSERT INTO remediate_audit_runs (run_id, attempt, short_id, seq, playbook, status, started_at, updated_at, state)
VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s)
ON CONFLICT (run_id, attempt) DO UPDATE SET
  seq = excluded.seq, status = excluded.status, started_at = excluded.started_at,
  updated_at = excluded.updated_at, state = excluded.state
WHERE remediate_audit_runs.seq < excluded.seq
"""
_INSERT_EVENT = """
INSERT INTO remediate_audit_events (run_id, attempt, key, kind, at, playbook, record)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
RUNS_SQL = f"SELECT state, {LISTED_AT}, run_id, attempt FROM remediate_audit_runs WHERE true"  # noqa: S608 - our constant
EVENTS_SQL = "SELECT run_id, attempt, key, kind, at, playbook, record FROM remediate_audit_events WHERE true"
# Records of one workflow task share a time: a run's start first, its end last, its steps and decisions between.
ORDER_EVENTS = (
    " ORDER BY at, CASE WHEN key = 'run/received' THEN 0 WHEN starts_with(key, 'run/') THEN 2 ELSE 1 END, run_id, key"
)


@contextmanager
def _errors() -> Iterator[None]:
    """The one place psycopg errors become the service's: the store is down, or its schema is missing."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise AuditUnavailable("the audit tables do not exist: run `remediate migrate audit`") from exc
    except (psycopg.DataError, psycopg.errors.CharacterNotInRepertoire) as exc:
        raise AuditRejected(f"audit store refused the record: {redact(str(exc))}") from exc
    except psycopg.Error as exc:
        raise AuditUnavailable(f"audit store: {redact(str(exc))}") from exc


class PostgresAuditStore:
    """A small pool; every write is one transaction (the run row and its new records together)."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True, "connect_timeout": 5}
        )
        self._opened = False

    async def _open(self) -> None:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def migrate(self) -> None:
        """Create the tables and indexes (idempotent)."""
        await self._open()
        with _errors():
            async with self._pool.connection() as db:
                await db.execute(SCHEMA)

    async def check(self) -> None:
        """Fail with a clear reason unless the store is reachable and migrated."""
        await self._open()
        with _errors():
            async with self._pool.connection(timeout=5) as db:
                await db.execute("SELECT 1 FROM remediate_audit_runs LIMIT 0")
                await db.execute("SELECT 1 FROM remediate_audit_events LIMIT 0")

    async def append(self, snapshot: AuditSnapshot, events: list[AuditEvent]) -> int:
        await self._open()
        state, added = snapshot.state, 0
        with _errors():
            async with self._pool.connection() as db, db.transaction():
                await db.execute(
                    _UPSERT_RUN,
                    (
                        state.run_id,
                        state.attempt,
                        short_id(state.run_id),
                        snapshot.seq,
                        state.playbook,
                        state.status,
                        state.started_at,
                        Jsonb(state.model_dump(mode="json")),
                    ),
                )
                for event in events:
                    cursor = await db.execute(
                        _INSERT_EVENT,
                        (
                            event.run_id,
                            event.attempt,
                            event.key,
                            event.kind,
                            event.at,
                            event.playbook,
                            Jsonb(event.record),
                        ),
                    )
                    added += max(cursor.rowcount, 0)
        return added

    async def runs(self, query: RunQuery) -> list[ListedRun]:
        where, params = query.where(COLUMNS)
        rows = await self._rows(RUNS_SQL + where + ORDER_BY + " LIMIT %s", (*params, query.limit))
        return [
            ListedRun(RunState.model_validate(s), RunCursor(at, run_id, attempt)) for s, at, run_id, attempt in rows
        ]

    async def run(self, run_id: str) -> RunState | None:
        rows = await self._rows(
            "SELECT state FROM remediate_audit_runs WHERE run_id = %s ORDER BY attempt DESC LIMIT 1", (run_id,)
        )
        return RunState.model_validate(rows[0][0]) if rows else None

    async def waiting(self, limit: int = 1000) -> list[RunState]:
        rows = await self._rows(
            "SELECT state FROM remediate_audit_runs WHERE status = 'awaiting_approval' LIMIT %s", (limit,)
        )
        return [RunState.model_validate(row[0]) for row in rows]

    async def find(self, given: str, within: int = 1000) -> list[str]:
        rows = await self._rows(
            "SELECT DISTINCT run_id FROM remediate_audit_runs WHERE short_id = %s OR starts_with(run_id, %s) LIMIT %s",
            (given, given, within),
        )
        return [row[0] for row in rows]

    async def events(self, query: AuditQuery) -> AsyncIterator[AuditEvent]:
        where, params = query.where("at", "%s")
        sql = EVENTS_SQL + where
        for run_id, attempt, key, kind, at, playbook, record in await self._rows(sql + ORDER_EVENTS, tuple(params)):
            yield AuditEvent(
                run_id=run_id,
                attempt=attempt,
                key=key,
                kind=kind,
                at=at.astimezone(UTC) if at else None,
                playbook=playbook,
                record=record,
            )

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        await self._open()
        with _errors():
            async with self._pool.connection() as db:
                cursor = await db.execute(sql, params)
                return await cursor.fetchall()

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
