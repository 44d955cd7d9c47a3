"""What a Postgres statement may do before it runs for real: only functions its target marks immutable or stable
(and a few harmless volatile ones), asked of the target's pg_proc at first use; an INSERT whose dry-run would
advance a sequence is planned without running; a pooled connection goes back with no session state."""

from __future__ import annotations

from typing import Any

import psycopg

from service.playbooks.sql_check import HARMLESS_VOLATILE, facts
from service.vocabulary.errors import GuardViolation

VOLATILITY = """
select n.nspname, p.proname, p.provolatile
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where p.proname = any(%(names)s::text[])
  and (n.nspname = any(current_schemas(true)) or n.nspname = any(%(schemas)s::text[]))
"""
SEQUENCED = """
select a.attname
from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attrelid = to_regclass(
        case when %(schema)s::text is null then quote_ident(%(table)s) else quote_ident(%(schema)s) || '.' ||
        quote_ident(%(table)s) end)
  and a.attnum > 0 and not a.attisdropped
  and (a.attidentity <> '' or pg_get_expr(d.adbin, d.adrelid) like 'nextval(%%')
"""
# Whatever a statement left on its pooled connection: cursors, listens, advisory locks, sequence state, temporary
# tables, settings. Prepared statements stay (they are psycopg's own, and only ever ours).
RESET = b"CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD SEQUENCES; DISCARD TEMP; RESET ALL"


async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's reset: every connection goes back as it came (the simple protocol runs the list as one)."""
    await conn.execute(RESET)


class StatementRules:
    """Per adapter: each (connection, statement) is checked against its target once, and the answer kept."""

    def __init__(self) -> None:
        self._refusals: dict[tuple[str, str], str | None] = {}
        self._sequenced: dict[tuple[str, str], tuple[str, ...]] = {}

    def known(self, connection: str, statement: str, dry_run: bool) -> tuple[str, ...] | None:
        """What a write's checks found before, without a connection: raises the kept refusal; None when the
        target must be asked first."""
        key = (connection, statement)
        if key not in self._refusals or (dry_run and key not in self._sequenced and facts(statement).insert_table):
            return None
        if refusal := self._refusals[key]:
            raise GuardViolation(refusal)
        return self._sequenced.get(key, ()) if dry_run else ()

    async def functions(self, conn: psycopg.AsyncConnection[Any], connection: str, statement: str) -> None:
        """Raise GuardViolation when the statement calls a function the target marks volatile (user functions
        included), unless it is one of the harmless few; nothing has run yet when it does."""
        key = (connection, statement)
        if key not in self._refusals:
            self._refusals[key] = await self._volatile(conn, statement)
        refusal = self._refusals[key]
        if refusal:
            raise GuardViolation(refusal)

    async def _volatile(self, conn: psycopg.AsyncConnection[Any], statement: str) -> str | None:
        called = facts(statement).functions
        if not called:
            return None
        cursor = await conn.execute(
            VOLATILITY,
            {"names": sorted({n for _, n in called}), "schemas": sorted({s for s, _ in called if s})},
            prepare=True,
        )
        rows = await cursor.fetchall()
        for schema, name in called:
            volatile = any(
                proname == name and volatility == "v" and (schema is None or nspname == schema)
                for nspname, proname, volatility in rows
            )
            if volatile and name not in HARMLESS_VOLATILE:
                where = f"{schema}.{name}" if schema else name
                return (
                    f"calls {where}(), which PostgreSQL marks volatile: a read or a dry-run may call only immutable or "
                    f"stable functions (and {', '.join(sorted(HARMLESS_VOLATILE))}); refused before it ran"
                )
        return None

    async def sequenced(self, conn: psycopg.AsyncConnection[Any], connection: str, statement: str) -> tuple[str, ...]:
        """For an INSERT: the columns it leaves to a sequence, which advances even when the dry-run rolls back."""
        found = facts(statement)
        if found.insert_table is None:
            return ()
        key = (connection, statement)
        if key not in self._sequenced:
            schema, table = found.insert_table
            cursor = await conn.execute(SEQUENCED, {"schema": schema, "table": table}, prepare=True)
            named = set(found.insert_columns)
            self._sequenced[key] = tuple(row[0] for row in await cursor.fetchall() if row[0] not in named)
        return self._sequenced[key]
