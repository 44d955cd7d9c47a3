"""Postgres actions: read-only queries and guarded, dry-runnable writes with bound parameters only."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import JsonValue

from service.config import PostgresConnection, resolve_secret
from service.errors import ConfigError, GuardViolation, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult, per_target
from service.step_base import bounded_targets
from service.steps import BackendRef, Params, PostgresExecuteParams, PostgresQueryParams, TerminateBackendsParams

_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)
_DML = re.compile(r"^\s*(update|delete|insert)\b", re.IGNORECASE)
ROWS_RECORDED = 100  # rows kept in the run record per step; counts are always exact


def _json(value: Any) -> JsonValue:
    # Rows go into Temporal history as JSON: make every Postgres type plain data.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return str(value)


def _rows(rows: list[dict[str, Any]]) -> list[JsonValue]:
    return [{k: _json(v) for k, v in row.items()} for row in rows]


def _with_returning(statement: str) -> str:
    """Ask a DML statement for the rows it changes, so a run can say which rows, not only how many."""
    text = statement.strip().rstrip(";").rstrip()
    if _DML.match(text) and not _RETURNING.search(text):
        return f"{text} RETURNING *"
    return text


def ledger_sql(ledger: str) -> str:
    """The idempotency ledger: one row per applied write, committed in the write's own transaction."""
    schema, table = ledger.split(".")
    return (
        f"create schema if not exists {schema};\n"
        f"create table if not exists {schema}.{table} (\n"
        "  key text primary key,          -- <run id>/<step id>[<item>]: the same on every retry\n"
        "  statement_sha256 text not null,\n"
        "  rowcount integer,\n"
        "  rows jsonb,\n"
        "  applied_at timestamptz not null default now()\n"
        ");\n"
    )


def _ledger(name: str) -> sql.Composed:
    schema, table = name.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _row_key(row: JsonValue) -> str:
    if isinstance(row, dict):
        key = row.get("id", next(iter(row.values()), None))
        return str(key)
    return str(row)


class PostgresAdapter:
    """One pool per configured Postgres connection, opened on first use."""

    def __init__(self, connections: Mapping[str, PostgresConnection]) -> None:
        self._connections = dict(connections)
        self._pools: dict[str, AsyncConnectionPool[psycopg.AsyncConnection[Any]]] = {}

    def actions(self) -> dict[str, Handler]:
        return {
            "postgres.query": self._query,
            "postgres.execute": self._execute,
            "postgres.terminate_backends": self._terminate,
        }

    async def _pool(self, name: str) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        pool = self._pools.get(name)
        if pool is None:
            conn = self._connections.get(name)
            if conn is None:
                raise ConfigError(f"no postgres connection named {name!r}")
            dsn = resolve_secret(conn.dsn)
            pool = AsyncConnectionPool(
                dsn,
                min_size=0,
                max_size=conn.pool_size,
                open=False,
                kwargs={"autocommit": True, "application_name": "remediate"},
                timeout=5.0,  # waiting for a connection from a target that is down
                # A target that restarted leaves dead connections in the pool: check before handing one out.
                check=AsyncConnectionPool.check_connection,
            )
            await pool.open()
            self._pools[name] = pool
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    async def ping(self, name: str) -> None:
        pool = await self._pool(name)
        async with pool.connection() as conn:
            await conn.execute("select 1")

    async def migrate(self, name: str) -> str:
        """Create the connection's ledger table (idempotent); returns the SQL that was run."""
        conn = self._connections.get(name)
        if conn is None:
            raise ConfigError(f"no postgres connection named {name!r}")
        if conn.ledger is None:
            raise ConfigError(f"connection {name!r} sets no `ledger:` (for example ledger: remediate.ledger)")
        statements = ledger_sql(conn.ledger)
        pool = await self._pool(name)
        try:
            async with pool.connection() as c:
                await c.execute(statements.encode())  # our own DDL, no parameters: the simple protocol is fine
        except psycopg.Error as exc:
            raise ConfigError(f"postgres {name}: creating the ledger failed: {exc}") from exc
        return statements

    def _timeout_ms(self, name: str, request: StepRequest) -> int:
        conn = self._connections[name]
        return int(min(conn.statement_timeout, request.timeout_seconds) * 1000)

    async def _query(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, PostgresQueryParams)  # noqa: S101 - the registry validated it
        pool = await self._pool(request.connection)
        try:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("set transaction read only")
                await conn.execute(
                    sql.SQL("set local statement_timeout = {}").format(
                        sql.Literal(self._timeout_ms(request.connection, request))
                    )
                )
                async with conn.cursor(row_factory=dict_row) as cur:
                    # Prepared, so the extended protocol: a second statement could not run even past the checks.
                    await cur.execute(params.sql, params.params, prepare=True)
                    fetched = await cur.fetchmany(params.max_rows + 1)
        except psycopg.OperationalError as exc:
            raise RetryableStepError(f"postgres {request.connection}: {exc}") from exc
        except psycopg.Error as exc:
            raise PermanentStepError(f"postgres {request.connection}: {exc}") from exc
        truncated = len(fetched) > params.max_rows
        rows = _rows(fetched[: params.max_rows])
        note = f" (truncated at max_rows {params.max_rows})" if truncated else ""
        return StepResult(
            data={"rows": rows, "count": len(rows), "truncated": truncated}, summary=f"{len(rows)} row(s){note}"
        )

    async def _execute(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, PostgresExecuteParams)  # noqa: S101 - the registry validated it
        ledger = self._connections[request.connection].ledger if request.connection in self._connections else None
        if request.attempt > 1 and ledger is None and not request.dry_run:
            raise PermanentStepError(
                f"attempt {request.attempt} of a write on {request.connection}, which has no ledger: the earlier "
                "attempt may have committed, so it is not sent again (at most once; see `remediate migrate`)"
            )
        pool = await self._pool(request.connection)
        statement = _with_returning(params.sql)
        digest = hashlib.sha256(params.sql.encode()).hexdigest()
        changed: list[JsonValue] = []
        sent = False
        try:
            async with pool.connection() as conn, conn.transaction() as tx:
                await conn.execute(
                    sql.SQL("set local statement_timeout = {}").format(
                        sql.Literal(self._timeout_ms(request.connection, request))
                    )
                )
                if ledger is not None:
                    applied = await _claim(conn, ledger, request.key, digest, request.dry_run)
                    if applied is not None:
                        raise _AlreadyApplied(applied)
                async with conn.cursor(row_factory=dict_row) as cur:
                    sent = True
                    await cur.execute(statement, params.params, prepare=True)
                    count = cur.rowcount
                    if cur.description is not None:
                        changed = _rows(await cur.fetchall())
                if count > params.max_rows:
                    # Raising inside the transaction block rolls it back.
                    raise GuardViolation(
                        f"would change {count} row(s), over max_rows {params.max_rows}; rolled back, nothing changed"
                    )
                if request.dry_run:
                    raise psycopg.Rollback(tx)
                if ledger is not None:
                    await conn.execute(
                        sql.SQL("update {} set rowcount = %s, rows = %s where key = %s").format(_ledger(ledger)),
                        [count, Jsonb(changed[:ROWS_RECORDED]), request.key],
                    )
        except _AlreadyApplied as done:
            return _from_ledger(done.row, params, request)
        except GuardViolation:
            raise
        except psycopg.OperationalError as exc:
            if sent and not request.dry_run and ledger is None:
                # The statement may have committed before the connection broke: never send it again.
                raise PermanentStepError(f"postgres {request.connection}: outcome unknown: {exc}") from exc
            # Nothing was sent, or the ledger will tell a retry whether this attempt committed.
            raise RetryableStepError(f"postgres {request.connection}: {exc}") from exc
        except psycopg.Error as exc:
            raise PermanentStepError(f"postgres {request.connection}: {exc}") from exc
        verb = "would change" if request.dry_run else "changed"
        return StepResult(
            data={"rowcount": count, "rows": changed[:ROWS_RECORDED], "dry_run": request.dry_run},
            summary=f"{verb} {count} row(s) (max_rows {params.max_rows})"
            + ("; rolled back" if request.dry_run else ""),
            targets=[f"row {_row_key(r)}" for r in changed[:ROWS_RECORDED]],
            dry_run=request.dry_run,
            note="" if ledger or request.dry_run else f"at most once: connection {request.connection} has no ledger",
        )

    async def _terminate(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, TerminateBackendsParams)  # noqa: S101 - the registry validated it
        targets: list[BackendRef] = list(bounded_targets(list(params.backends), params.max_targets, "sessions"))  # type: ignore[arg-type]
        pool = await self._pool(request.connection)
        verb = "pg_terminate_backend" if params.mode == "terminate" else "pg_cancel_backend"
        outcomes: list[tuple[str, str]] = []
        try:
            async with pool.connection() as conn:
                for ref in targets:
                    # Re-check just before acting: the same session (pid and start), still matching what selected it.
                    still = await conn.execute(
                        STILL_A_TARGET,
                        {
                            "pid": ref.pid,
                            "start": ref.backend_start,
                            "states": params.still.state or None,
                            "idle": params.still.idle_for,
                        },
                        prepare=True,
                    )
                    target = f"session pid {ref.pid} started {ref.backend_start}"
                    if await still.fetchone() is None:
                        outcomes.append((target, "skipped: gone, or no longer matches what selected it"))
                    elif request.dry_run:
                        outcomes.append((target, f"would {params.mode}"))
                    else:
                        done = await conn.execute(sql.SQL("select {}(%s)").format(sql.Identifier(verb)), [ref.pid])
                        row = await done.fetchone()
                        ended = {"terminate": "terminated", "cancel": "query cancelled"}[params.mode]
                        outcomes.append((target, ended if row and row[0] else "skipped: already gone"))
        except psycopg.OperationalError as exc:
            raise RetryableStepError(f"postgres {request.connection}: {exc}") from exc
        except psycopg.Error as exc:
            raise PermanentStepError(f"postgres {request.connection}: {exc}") from exc
        summary = f"{params.mode} {len(targets)} session(s)" + (
            " (dry-run: listed, none ended)" if request.dry_run else ""
        )
        return per_target(outcomes, summary, request.dry_run)


STILL_A_TARGET = """
select pid from pg_stat_activity
where pid = %(pid)s and backend_start = %(start)s::timestamptz and pid <> pg_backend_pid()
  and (%(states)s::text[] is null or state = any(%(states)s::text[]))
  and (%(idle)s::interval is null or now() - state_change >= %(idle)s::interval)
"""


class _AlreadyApplied(Exception):
    """The ledger holds this write's key: an earlier attempt committed it."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__("already applied")
        self.row = row


async def _claim(
    conn: psycopg.AsyncConnection[Any], ledger: str, key: str, digest: str, dry_run: bool
) -> dict[str, Any] | None:
    """Claim the key in this transaction, or return the row of the attempt that already committed it.

    The insert takes the key's index lock: a concurrent attempt waits here until this one commits or rolls back.
    """
    table = _ledger(ledger)
    if not dry_run:
        claimed = await conn.execute(
            sql.SQL("insert into {} (key, statement_sha256) values (%s, %s) on conflict (key) do nothing").format(
                table
            ),
            [key, digest],
        )
        if claimed.rowcount == 1:
            return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("select rowcount, rows, applied_at from {} where key = %s").format(table), [key])
        row = await cur.fetchone()
    if row is None and not dry_run:
        raise RetryableStepError(f"ledger key {key} conflicted but is not readable yet")
    return row


def _from_ledger(row: dict[str, Any], params: PostgresExecuteParams, request: StepRequest) -> StepResult:
    rows = _rows(list(row.get("rows") or []))
    count = int(row.get("rowcount") or 0)
    return StepResult(
        data={"rowcount": count, "rows": rows, "dry_run": request.dry_run, "already_applied": True},
        summary=f"already applied at {_json(row.get('applied_at'))}: {count} row(s) (max_rows {params.max_rows})",
        targets=[f"row {_row_key(r)}" for r in rows],
        dry_run=request.dry_run,
        note="already applied; result from the ledger",
    )
