"""Postgres actions: read-only queries and guarded, dry-runnable writes with bound parameters only."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import JsonValue

from service.config import resolve_secret
from service.playbooks.sql_check import facts
from service.playbooks.systems.postgres import (
    POSTGRES,
    PostgresConnection,
    PostgresExecute,
    PostgresExecuteParams,
    PostgresQuery,
    PostgresQueryParams,
    TerminateBackends,
    TerminateBackendsParams,
)
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult, per_target
from service.targets.base import ConnectionAdapter
from service.targets.postgres.functions import StatementRules, reset
from service.targets.postgres.ledger import claim, from_ledger, ledger_sql, record, row_targets, rows_json
from service.vocabulary.errors import ConfigError, GuardViolation, PermanentStepError, RetryableStepError, StepError

Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)
_DML = re.compile(r"^\s*(update|delete|insert)\b", re.IGNORECASE)
ROWS_RECORDED = 100  # rows kept in the run record per step; counts are always exact


def _with_returning(statement: str) -> str:
    """Ask a DML statement for the rows it changes, so a run can say which rows, not only how many."""
    text = statement.strip().rstrip(";").rstrip()
    if _DML.match(text) and not _RETURNING.search(text):
        return f"{text} RETURNING *"
    return text


@contextmanager
def _errors(connection: str, outcome_unknown: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """The one place psycopg errors become step errors. A broken connection is retried, unless a write was sent
    without a ledger: then it may have committed, and it is never sent again."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if outcome_unknown():
            raise PermanentStepError(f"postgres {connection}: outcome unknown: {exc}") from exc
        raise RetryableStepError(f"postgres {connection}: {exc}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"postgres {connection}: {exc}") from exc


class PostgresAdapter(ConnectionAdapter[PostgresConnection, Pool]):
    """One pool per configured Postgres connection, opened on first use."""

    system = POSTGRES
    rules: StatementRules | None = None

    def actions(self) -> dict[str, Action[Any]]:
        return specs(
            Action(PostgresQuery, self._query),
            Action(PostgresExecute, self._execute),
            Action(TerminateBackends, self._terminate),
        )

    async def _open(self, name: str, conn: PostgresConnection) -> Pool:
        pool = Pool(
            resolve_secret(conn.dsn),
            min_size=0,
            max_size=conn.pool_size,
            open=False,
            kwargs={"autocommit": True, "application_name": "remediate"},
            timeout=5.0,  # waiting for a connection from a target that is down
            # A target that restarted leaves dead connections in the pool: check before handing one out.
            check=Pool.check_connection,
            reset=reset,  # no advisory lock, setting or temporary table outlives the step that made it
        )
        await pool.open()
        return pool

    async def _close(self, client: Pool) -> None:
        await client.close()

    async def ping(self, connection: str) -> None:
        pool = await self.client(connection)
        with _errors(connection):
            async with pool.connection() as conn:
                await conn.execute("select 1")

    async def migrate(self, name: str) -> str:
        """Create the connection's ledger table (idempotent); returns the SQL that was run."""
        conn = self.connection(name)
        if conn.ledger is None:
            raise ConfigError(f"connection {name!r} sets no `ledger:` (for example ledger: remediate.ledger)")
        statements = ledger_sql(conn.ledger)
        pool = await self.client(name)
        try:
            with _errors(name):
                async with pool.connection() as c:
                    await c.execute(statements.encode())  # our own DDL, no parameters: the simple protocol is fine
        except StepError as exc:
            raise ConfigError(f"creating the ledger failed: {exc}") from exc
        return statements

    def _timeout(self, request: StepRequest) -> sql.Composed:
        conn = self.connection(request.connection)
        ms = int(min(conn.statement_timeout, request.timeout_seconds) * 1000)
        return sql.SQL("set local statement_timeout = {}").format(sql.Literal(ms))

    def _rules(self) -> StatementRules:
        if self.rules is None:
            self.rules = StatementRules()
        return self.rules

    async def _query(self, request: StepRequest, params: PostgresQueryParams) -> StepResult:
        pool = await self.client(request.connection)
        with _errors(request.connection):
            async with pool.connection() as conn, conn.transaction():
                await self._rules().functions(conn, request.connection, params.sql)
                await conn.execute("set transaction read only")
                await conn.execute(self._timeout(request))
                async with conn.cursor(row_factory=dict_row) as cur:
                    # Prepared, so the extended protocol: a second statement could not run even past the checks.
                    await cur.execute(params.sql, params.params, prepare=True)
                    fetched = await cur.fetchmany(params.max_rows + 1)
        truncated = len(fetched) > params.max_rows
        rows = rows_json(fetched[: params.max_rows])
        note = f" (truncated at max_rows {params.max_rows})" if truncated else ""
        return StepResult(
            data={"rows": rows, "count": len(rows), "truncated": truncated}, summary=f"{len(rows)} row(s){note}"
        )

    async def _checked(self, pool: Pool, request: StepRequest, statement: str) -> tuple[str, ...]:
        """Every write is also dry-run (plans, previews, dry-run mode), so it meets a read's function rule; returns,
        for a dry-run INSERT, the columns it leaves to a sequence (then it is planned, not run)."""
        rules = self._rules()
        known = rules.known(request.connection, statement, request.dry_run)
        if known is not None:  # asked before: no round trip
            return known
        with _errors(request.connection):
            async with pool.connection() as conn:
                await rules.functions(conn, request.connection, statement)
                return await rules.sequenced(conn, request.connection, statement) if request.dry_run else ()

    async def _execute(self, request: StepRequest, params: PostgresExecuteParams) -> StepResult:
        ledger = self.connection(request.connection).ledger
        if request.attempt > 1 and ledger is None and not request.dry_run:
            raise PermanentStepError(
                f"attempt {request.attempt} of a write on {request.connection}, which has no ledger: the earlier "
                "attempt may have committed, so it is not sent again (at most once; see `remediate migrate`)"
            )
        pool = await self.client(request.connection)
        sequenced = await self._checked(pool, request, params.sql)
        if sequenced:
            return _not_run(params, sequenced)
        statement = _with_returning(params.sql)
        digest = hashlib.sha256(params.sql.encode()).hexdigest()
        changed: list[JsonValue] = []
        sent, applied = False, None
        with _errors(request.connection, outcome_unknown=lambda: sent and not request.dry_run and ledger is None):
            async with pool.connection() as conn, conn.transaction() as tx:
                await conn.execute(self._timeout(request))
                if ledger is not None:
                    applied = await claim(conn, ledger, request.key, digest, request.dry_run)
                    if applied is not None:
                        raise psycopg.Rollback(tx)  # an earlier attempt committed this write
                async with conn.cursor(row_factory=dict_row) as cur:
                    sent = True
                    await cur.execute(statement, params.params, prepare=True)
                    count = cur.rowcount
                    if cur.description is not None:
                        changed = rows_json(await cur.fetchall())
                if count > params.max_rows:
                    # Raising inside the transaction block rolls it back.
                    raise GuardViolation(
                        f"would change {count} row(s), over max_rows {params.max_rows}; rolled back, nothing changed"
                    )
                if request.dry_run:
                    raise psycopg.Rollback(tx)
                if ledger is not None:
                    await record(conn, ledger, request.key, count, changed[:ROWS_RECORDED])
        if applied is not None:
            return from_ledger(applied, params, request)
        verb = "would change" if request.dry_run else "changed"
        return StepResult(
            data={"rowcount": count, "rows": changed[:ROWS_RECORDED], "dry_run": request.dry_run},
            summary=f"{verb} {count} row(s) (max_rows {params.max_rows})"
            + ("; rolled back" if request.dry_run else ""),
            targets=row_targets(_named(changed[:ROWS_RECORDED], params.sql)),
            dry_run=request.dry_run,
            note="" if ledger or request.dry_run else f"at most once: connection {request.connection} has no ledger",
        )

    async def _terminate(self, request: StepRequest, params: TerminateBackendsParams) -> StepResult:
        targets = params.targets()
        pool = await self.client(request.connection)
        verb = "pg_terminate_backend" if params.mode == "terminate" else "pg_cancel_backend"
        outcomes: list[tuple[str, str]] = []
        with _errors(request.connection):
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
                            "open": params.still.in_transaction_for,
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
        summary = f"{params.mode} {len(targets)} session(s)" + (
            " (dry-run: listed, none ended)" if request.dry_run else ""
        )
        return per_target(outcomes, summary, request.dry_run)


def _named(rows: list[JsonValue], statement: str) -> list[JsonValue]:
    """An INSERT's rows are named by the columns it sets itself: a default such as clock_timestamp() differs on every
    dry-run, and would make the approved rows look like others."""
    columns = facts(statement).insert_columns
    if not columns:
        return rows
    return [{k: v for k, v in row.items() if k in columns} if isinstance(row, dict) else row for row in rows]


def _not_run(params: PostgresExecuteParams, sequenced: tuple[str, ...]) -> StepResult:
    """A dry-run INSERT that a rollback could not undo: planned, not run; the plan says why."""
    why = f"its sequence for {', '.join(sequenced)} would advance even though a dry-run rolls back"
    return StepResult(
        data={"rowcount": None, "rows": [], "dry_run": True, "not_run": why},
        summary=f"dry-run: planned, not run: {why} (max_rows {params.max_rows})",
        dry_run=True,
    )


STILL_A_TARGET = """
select pid from pg_stat_activity
where pid = %(pid)s and backend_start = %(start)s::timestamptz and pid <> pg_backend_pid()
  and (%(states)s::text[] is null or state = any(%(states)s::text[]))
  and (%(idle)s::interval is null or now() - state_change >= %(idle)s::interval)
  and (%(open)s::interval is null or now() - xact_start >= %(open)s::interval)
"""
