"""The audit store in a SQLite file: `remediate dev`'s trail, kept beside its Temporal history."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.runs.audit import AuditEvent, AuditQuery, AuditSnapshot
from service.runs.listing import LIST_ORDER, LISTED_AT, ORDER_BY, ListedRun, RunColumns, RunCursor, RunQuery
from service.runs.state import RunState, short_id


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


COLUMNS = RunColumns(mark="?", alertname="json_extract(state, '$.alertname')", time=_iso)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_runs (
  run_id TEXT NOT NULL, attempt INTEGER NOT NULL, short_id TEXT NOT NULL, seq INTEGER NOT NULL,
  playbook TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT, updated_at TEXT NOT NULL, state TEXT NOT NULL,
  PRIMARY KEY (run_id, attempt)
);
DROP INDEX IF EXISTS audit_runs_started;
CREATE INDEX IF NOT EXISTS audit_runs_listed ON audit_runs ({LIST_ORDER});
CREATE INDEX IF NOT EXISTS audit_runs_playbook ON audit_runs (playbook, {LIST_ORDER});
CREATE INDEX IF NOT EXISTS audit_runs_status ON audit_runs (status, {LIST_ORDER});
CREATE INDEX IF NOT EXISTS audit_runs_alert ON audit_runs ({COLUMNS.alertname}, {LIST_ORDER});
CREATE INDEX IF NOT EXISTS audit_runs_short ON audit_runs (short_id);
CREATE TABLE IF NOT EXISTS audit_events (
  run_id TEXT NOT NULL, attempt INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, at TEXT,
  playbook TEXT NOT NULL, record TEXT NOT NULL, recorded_at TEXT NOT NULL,
  PRIMARY KEY (run_id, attempt, key)
);
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at);
"""
_UPSERT_RUN = """
INSERT INTO audit_runs (run_id, attempt, short_id, seq, playbook, status, started_at, updated_at, state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, attempt) DO UPDATE SET
  seq = excluded.seq, status = excluded.status, started_at = excluded.started_at,
  updated_at = excluded.updated_at, state = excluded.state
WHERE audit_runs.seq < excluded.seq
"""
_INSERT_EVENT = """
INSERT INTO audit_events (run_id, attempt, key, kind, at, playbook, record, recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
"""
RUNS_SQL = f"SELECT state, {LISTED_AT}, run_id, attempt FROM audit_runs WHERE 1=1"  # noqa: S608 - our constant
EVENTS_SQL = "SELECT run_id, attempt, key, kind, at, playbook, record FROM audit_events WHERE 1=1"
# Records of one workflow task share a time: a run's start first, its end last, its steps and decisions between.
ORDER_EVENTS = (
    " ORDER BY at, CASE WHEN key = 'run/received' THEN 0 WHEN key LIKE 'run/%' THEN 2 ELSE 1 END, run_id, key"
)


class SqliteAuditStore:
    """One connection, used from a worker thread under a lock: SQLite serialises writers anyway."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=wal")
            self._db.executescript(SCHEMA)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    async def append(self, snapshot: AuditSnapshot, events: list[AuditEvent]) -> int:
        return await asyncio.to_thread(self._append, snapshot, events)

    def _append(self, snapshot: AuditSnapshot, events: list[AuditEvent]) -> int:
        state, now = snapshot.state, _iso(datetime.now(UTC))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    _UPSERT_RUN,
                    (
                        state.run_id,
                        state.attempt,
                        short_id(state.run_id),
                        snapshot.seq,
                        state.playbook,
                        state.status,
                        _iso(state.started_at),
                        now,
                        state.model_dump_json(),
                    ),
                )
                added = 0
                for event in events:
                    cursor = self._db.execute(
                        _INSERT_EVENT,
                        (
                            event.run_id,
                            event.attempt,
                            event.key,
                            event.kind,
                            _iso(event.at),
                            event.playbook,
                            json.dumps(event.record),
                            now,
                        ),
                    )
                    added += cursor.rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return added

    async def runs(self, query: RunQuery) -> list[ListedRun]:
        where, params = query.where(COLUMNS)
        sql = RUNS_SQL + where + ORDER_BY + " LIMIT ?"
        rows = await asyncio.to_thread(self._run, sql, (*params, query.limit))
        return [
            ListedRun(RunState.model_validate_json(s), RunCursor(datetime.fromisoformat(at), run_id, attempt))
            for s, at, run_id, attempt in rows
        ]

    async def run(self, run_id: str) -> RunState | None:
        rows = await asyncio.to_thread(
            self._run, "SELECT state FROM audit_runs WHERE run_id = ? ORDER BY attempt DESC LIMIT 1", (run_id,)
        )
        return RunState.model_validate_json(rows[0][0]) if rows else None

    async def waiting(self, limit: int = 1000) -> list[RunState]:
        rows = await asyncio.to_thread(
            self._run, "SELECT state FROM audit_runs WHERE status = 'awaiting_approval' LIMIT ?", (limit,)
        )
        return [RunState.model_validate_json(row[0]) for row in rows]

    async def find(self, given: str, within: int = 1000) -> list[str]:
        """Run ids whose short id is `given` or that start with it."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT DISTINCT run_id FROM audit_runs WHERE short_id = ? OR substr(run_id, 1, ?) = ? LIMIT ?",
            (given, len(given), given, within),
        )
        return [row[0] for row in rows]

    async def events(self, query: AuditQuery) -> AsyncIterator[AuditEvent]:
        where, params = query.where("at", "?", _iso)
        sql = EVENTS_SQL + where
        rows = await asyncio.to_thread(self._run, sql + ORDER_EVENTS, tuple(params))
        for run_id, attempt, key, kind, at, playbook, record in rows:
            yield AuditEvent(
                run_id=run_id, attempt=attempt, key=key, kind=kind, at=at, playbook=playbook, record=json.loads(record)
            )

    async def close(self) -> None:
        with self._lock:
            self._db.close()
