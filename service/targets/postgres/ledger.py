"""The Postgres adapter's plain-data rows and its idempotency ledger: claim, record and replay a write's result."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import JsonValue

from service.playbooks.systems.postgres import PostgresExecuteParams
from service.runs.state import StepRequest, StepResult
from service.vocabulary.errors import RetryableStepError
from service.vocabulary.targets import name_of


def plain(value: Any) -> JsonValue:
    """Rows go into Temporal history as JSON: every Postgres type as plain data."""
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
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def rows_json(rows: list[dict[str, Any]]) -> list[JsonValue]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def row_targets(rows: list[JsonValue]) -> list[str]:
    """How changed rows are named as targets: `row 7` by its id, else `row pid=812` by what identifies it; rows
    that carry nothing identifying (a bare `true` from a function) are not listed one by one."""
    named = []
    for row in rows:
        if isinstance(row, dict) and row.get("id") is not None and not isinstance(row["id"], bool):
            named.append(f"row {row['id']}")
        elif (name := name_of(row)) is not None:
            named.append(f"row {name}")
    return named


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


def _table(name: str) -> sql.Composed:
    schema, table = name.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


async def claim(
    conn: psycopg.AsyncConnection[Any], ledger: str, key: str, digest: str, dry_run: bool
) -> dict[str, Any] | None:
    """Claim the key in this transaction, or return the row of the attempt that already committed it.

    The insert takes the key's index lock: a concurrent attempt waits here until this one commits or rolls back.
    """
    table = _table(ledger)
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


async def record(conn: psycopg.AsyncConnection[Any], ledger: str, key: str, count: int, rows: list[JsonValue]) -> None:
    """Keep what the write changed beside its claim, in the same transaction, for a retry to return."""
    await conn.execute(
        sql.SQL("update {} set rowcount = %s, rows = %s where key = %s").format(_table(ledger)),
        [count, Jsonb(rows), key],
    )


def from_ledger(row: dict[str, Any], params: PostgresExecuteParams, request: StepRequest) -> StepResult:
    rows = rows_json(list(row.get("rows") or []))
    count = int(row.get("rowcount") or 0)
    return StepResult(
        data={"rowcount": count, "rows": rows, "dry_run": request.dry_run, "already_applied": True},
        summary=f"already applied at {plain(row.get('applied_at'))}: {count} row(s) (max_rows {params.max_rows})",
        targets=row_targets(rows),
        dry_run=request.dry_run,
        note="already applied; result from the ledger",
    )
