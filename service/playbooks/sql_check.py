"""SQL in playbooks means what it says: PostgreSQL's own parser (pglast) checks each statement at load time."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pglast import ast, parse_sql
from pglast.parser import ParseError

_PLACEHOLDER = re.compile(r"%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s|%%|%(?P<other>.)?", re.DOTALL)

# Functions whose effects escape the statement's transaction, so neither a rollback (dry-run) nor a read-only
# transaction contains them; or that act on the server itself. Names match after schema and quotes are removed.
REFUSED_FUNCTIONS = {
    "pg_terminate_backend": "use the typed action postgres.terminate_backends (dry-run lists, re-checks, caps)",
    "pg_cancel_backend": "use the typed action postgres.terminate_backends with mode: cancel",
    "pg_reload_conf": "server configuration is not remediation",
    "pg_rotate_logfile": "server administration is not remediation",
    "pg_switch_wal": "server administration is not remediation",
    "pg_promote": "server administration is not remediation",
    "pg_create_restore_point": "server administration is not remediation",
    "pg_logical_emit_message": "it writes to the WAL outside the transaction",
    "nextval": "a sequence advances even when the transaction rolls back",
    "setval": "a sequence changes even when the transaction rolls back",
    "pg_read_file": "file access on the database server",
    "pg_read_binary_file": "file access on the database server",
    "pg_stat_file": "file access on the database server",
    "pg_import_system_collations": "server administration is not remediation",
    "lo_import": "file access on the database server",
    "lo_export": "file access on the database server",
    "pg_log_backend_memory_contexts": "server administration is not remediation",
    "query_to_xml": "it runs the SQL in its argument, which no check sees",
    "query_to_xml_and_xmlschema": "it runs the SQL in its argument, which no check sees",
    "query_to_xmlschema": "it runs the SQL in its argument, which no check sees",
    "cursor_to_xml": "it reads a cursor opened elsewhere",
    "pg_notify": "a notification is a message to other sessions, not a read",
    "currval": "it reads this session's sequence state, which a pooled connection does not keep",
    "lastval": "it reads this session's sequence state, which a pooled connection does not keep",
}
# Volatile functions that a read or a dry-run may still call: they change nothing outside the statement (a sleep ends
# at the statement timeout). Every other volatile function is refused at first use, from what the target's own
# pg_proc says (user functions included).
HARMLESS_VOLATILE = frozenset(
    {"random", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v4", "pg_sleep", "pg_sleep_for"}
)
REFUSED_PREFIXES = {
    "dblink": "it runs SQL on another connection, outside this transaction",
    "pg_advisory": "advisory locks outlive the statement; hold locks in the target's own code",
    "pg_try_advisory": "advisory locks outlive the statement; hold locks in the target's own code",
    "lo_": "large objects are not remediation",
    "pg_ls_": "file access on the database server",
    "pg_file_": "file access on the database server",
    "pg_stat_reset": "server statistics are not remediation",
    "pg_replication_": "replication is not remediation",
    "pg_create_": "replication and server objects are not remediation",
    "pg_drop_replication": "replication is not remediation",
    "pg_wal_replay_": "server administration is not remediation",
    "pg_backup_": "server administration is not remediation",
}
_DML = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


@dataclass(frozen=True)
class SqlProblem:
    """One reason a statement is refused, with its character offset in the SQL text when the parser knows it."""

    message: str
    offset: int | None = None

    def __str__(self) -> str:
        return self.message if self.offset is None else f"{self.message} (at character {self.offset + 1})"


def placeholders(sql: str) -> tuple[str, list[str], list[SqlProblem]]:
    """Swap `%(name)s` for `$n` of the same length (so offsets stay true); list the names in order of first use."""
    names: list[str] = []
    problems: list[SqlProblem] = []

    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "%%":
            return "% "  # a literal percent sign, as psycopg writes it
        name = match.group("name")
        if name is None:
            problems.append(SqlProblem("use named placeholders %(name)s (and %% for a literal %)", match.start()))
            return " " * len(text)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}".ljust(len(text))

    return _PLACEHOLDER.sub(swap, sql), names, problems


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, ast.Node):
        yield node
        for value in node:
            yield from _walk(getattr(node, value))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)


@dataclass(frozen=True)
class SqlFacts:
    """What the adapter needs to know of a statement at first use: the functions it calls (schema or None, name),
    and for an INSERT its table and the columns it names."""

    functions: tuple[tuple[str | None, str], ...] = ()
    insert_table: tuple[str | None, str] | None = None
    insert_columns: tuple[str, ...] = ()


@lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[Any, ...] | ParseError:
    """PostgreSQL's parse of one text, once per process: the load-time check and the adapter's facts share it."""
    try:
        return tuple(parse_sql(text))
    except ParseError as exc:
        return exc


@lru_cache(maxsize=1024)
def facts(sql: str) -> SqlFacts:
    """Parsed once per statement and process; a statement that does not parse has no facts (it never loaded)."""
    parsed = _parsed(placeholders(sql)[0])
    if isinstance(parsed, ParseError) or len(parsed) != 1:
        return SqlFacts()
    stmt, called = parsed[0].stmt, []
    for node in _walk(stmt):
        if isinstance(node, ast.FuncCall) and node.funcname:
            names = [part.sval for part in node.funcname]
            called.append((names[-2] if len(names) > 1 else None, names[-1]))
    functions = tuple(dict.fromkeys(called))
    relation = stmt.relation if isinstance(stmt, ast.InsertStmt) else None
    if relation is None:
        return SqlFacts(functions=functions)
    return SqlFacts(
        functions=functions,
        insert_table=(relation.schemaname, relation.relname or ""),
        insert_columns=tuple(col.name for col in getattr(stmt, "cols", None) or ()),
    )


def _function_problems(tree: Any) -> Iterable[SqlProblem]:
    for node in _walk(tree):
        if not isinstance(node, ast.FuncCall):
            continue
        name = (node.funcname or ())[-1].sval.lower() if node.funcname else ""
        why = REFUSED_FUNCTIONS.get(name) or next((w for p, w in REFUSED_PREFIXES.items() if name.startswith(p)), None)
        if name == "set_config" and not _literal_true(node.args, 2):
            why = "set_config(…, false) outlives the transaction; use true (SET LOCAL), or nothing"
        if why:
            yield SqlProblem(f"calls {name}(), whose effects escape the transaction: {why}", node.location)


def _literal_true(args: Any, index: int) -> bool:
    if not args or len(args) <= index:
        return False
    arg = args[index]
    if isinstance(arg, ast.TypeCast):
        arg = arg.arg
    value = getattr(arg, "val", None)
    return isinstance(value, ast.Boolean) and bool(value.boolval)


def check(sql: str, kind: Literal["query", "execute"]) -> tuple[list[str], list[SqlProblem]]:
    """The placeholder names the statement uses, and every reason it is refused (empty when it is fine)."""
    names, problems = _checked(sql, kind)
    return list(names), list(problems)


# A statement's verdict never changes: a playbook loaded again (a reload, a lint of many files) costs a lookup.
@lru_cache(maxsize=4096)
def _checked(sql: str, kind: Literal["query", "execute"]) -> tuple[tuple[str, ...], tuple[SqlProblem, ...]]:
    text, found, problems = placeholders(sql)
    names = tuple(found)
    statements = _parsed(text)
    if isinstance(statements, ParseError):
        exc = statements
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        return names, (*problems, SqlProblem(f"not valid SQL: {exc.args[0]}", offset))
    if len(statements) != 1:
        return names, (*problems, SqlProblem(f"{len(statements)} statements; a step runs exactly one"))
    stmt = statements[0].stmt
    problems.extend(_function_problems(stmt))
    nested = [n for n in _walk(stmt) if isinstance(n, _DML) and n is not stmt]
    if kind == "query":
        if not isinstance(stmt, ast.SelectStmt):
            problems.append(SqlProblem(f"postgres.query runs a plain SELECT, not {_kind(stmt)}"))
        else:
            if nested:
                problems.append(SqlProblem("a data-modifying WITH clause is a write; use postgres.execute"))
            if _any(stmt, "intoClause"):
                problems.append(SqlProblem("SELECT … INTO creates a table; postgres.query only reads"))
            if _any(stmt, "lockingClause"):
                problems.append(SqlProblem("FOR UPDATE/SHARE takes row locks; postgres.query only reads"))
    else:
        if not isinstance(stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt):
            problems.append(SqlProblem(f"postgres.execute runs one INSERT, UPDATE or DELETE, not {_kind(stmt)}"))
        elif isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt) and stmt.whereClause is None:
            problems.append(SqlProblem(f"{_kind(stmt)} without WHERE would touch every row; name the rows"))
        if nested:
            problems.append(SqlProblem("one statement writes once: no data-modifying WITH clause"))
    return names, tuple(problems)


def _any(stmt: Any, attribute: str) -> bool:
    return any(isinstance(n, ast.SelectStmt) and getattr(n, attribute, None) for n in _walk(stmt))


def _kind(stmt: Any) -> str:
    return type(stmt).__name__.removesuffix("Stmt").upper() or "this statement"
