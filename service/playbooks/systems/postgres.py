"""Postgres as playbooks see it: its connection, queries, guarded writes (SQL checked at load), ending sessions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

from service.playbooks import sql_check
from service.playbooks.step_base import (
    Capped,
    Duration,
    Params,
    StepBase,
    TargetRef,
    Template,
    WriteStep,
    bounded_targets,
    typed,
)
from service.playbooks.system import ConnectionModel, System
from service.vocabulary.checked import checked_before
from service.vocabulary.secrets import SecretRef


def _statement(sql: str, kind: Literal["query", "execute"]) -> str:
    problems = sql_check.check(sql, kind)[1]
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    sql_check.facts(sql)  # what the adapter needs of it, parsed now at load rather than in a run's first step
    return sql


def _matching_params(sql: str, params: dict[str, JsonValue]) -> None:
    names = sql_check.placeholders(sql)[1]
    missing, unused = sorted(set(names) - set(params)), sorted(set(params) - set(names))
    if missing or unused:
        parts = [
            f"no param for %({', '.join(missing)})s" if missing else "",
            f"params not in the SQL: {', '.join(unused)}" if unused else "",
        ]
        raise ValueError("placeholders and params must match: " + "; ".join(p for p in parts if p))


class PostgresQueryParams(Params):
    """A read-only SQL query: one plain SELECT (checked with PostgreSQL's parser); values only as bound `params`."""

    literal_fields = frozenset({"sql", "max_rows"})

    sql: str = Field(min_length=1, description="One SELECT; no templates, use %(name)s placeholders.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="Rows returned at most.")

    @field_validator("sql")
    @classmethod
    def _one_select(cls, sql: str, info: ValidationInfo) -> str:
        return sql if checked_before(info) else _statement(sql, "query")

    @model_validator(mode="after")
    def _params_match(self, info: ValidationInfo) -> PostgresQueryParams:
        if not checked_before(info):
            _matching_params(self.sql, self.params)
        return self


class PostgresExecuteParams(Params):
    """One INSERT, UPDATE or DELETE (UPDATE and DELETE with a WHERE), with a mandatory row cap."""

    literal_fields = frozenset({"sql", "max_rows"})

    sql: str = Field(min_length=1, description="One INSERT/UPDATE/DELETE; no templates, use %(name)s placeholders.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    max_rows: int = Field(ge=1, le=100_000, description="More changed rows than this rolls back and fails.")

    @field_validator("sql")
    @classmethod
    def _one_write(cls, sql: str, info: ValidationInfo) -> str:
        return sql if checked_before(info) else _statement(sql, "execute")

    def caps(self) -> list[str]:
        return [f"max_rows {self.max_rows}"]

    def most(self) -> int:
        return self.max_rows

    def touched(self, data: Mapping[str, JsonValue], targets: Sequence[str]) -> str:
        rowcount = data.get("rowcount")
        return f"{rowcount} row(s)" if rowcount is not None else super().touched(data, targets)

    @model_validator(mode="after")
    def _params_match(self, info: ValidationInfo) -> PostgresExecuteParams:
        if not checked_before(info):
            _matching_params(self.sql, self.params)
        return self


class PostgresQuery(StepBase):
    """A read-only SQL query: one plain SELECT, in a read-only transaction with a statement timeout."""

    returns = "`rows`, `count`, `truncated`"
    dry_run_behaviour = "runs in a read-only transaction"
    connection_type = "postgres"
    action: Literal["postgres.query"]
    with_: PostgresQueryParams = Field(alias="with")


class PostgresExecute(WriteStep):
    """One INSERT, UPDATE or DELETE with a row cap; retried safely only with the connection's ledger."""

    returns = "`rowcount`, `rows` (changed, via `RETURNING`)"
    dry_run_behaviour = "runs in a transaction that is rolled back and reports the rows it would change"
    connection_type = "postgres"
    action: Literal["postgres.execute"]
    with_: PostgresExecuteParams = Field(alias="with")

    def retries_safely(self, ledgers: Sequence[str]) -> bool:
        return self.connection in ledgers  # the ledger row commits with the write, so a retry finds it


class BackendRef(TargetRef):
    """One server session, exactly: its pid and when it started (a reused pid is another session)."""

    pid: int | Template
    backend_start: str | Template = Field(min_length=1, max_length=64)


class StillFilter(Params):
    """What made a session a target; re-checked just before acting, so a session that moved on is left alone."""

    state: list[Literal["active", "idle", "idle in transaction", "idle in transaction (aborted)"]] = Field(
        default_factory=list
    )
    idle_for: Duration | None = Field(default=None, description="At least this long in its state.")
    in_transaction_for: Duration | None = Field(
        default=None,
        description="Its transaction open at least this long (xact_start): the idle-in-transaction runbook's age.",
    )


class TerminateBackendsParams(Capped):
    """Sessions to end, as diagnosed; `mode: cancel` cancels their query instead of closing them."""

    literal_fields = frozenset({"max_targets", "mode", "still"})

    backends: list[BackendRef] | Template
    mode: Literal["terminate", "cancel"] = "terminate"
    still: StillFilter = Field(default_factory=StillFilter)

    def targets(self) -> Sequence[BackendRef]:
        return bounded_targets(typed(self.backends, "backends"), self.max_targets, "sessions")


class TerminateBackends(WriteStep):
    """End server sessions (pg_terminate_backend or pg_cancel_backend) with a real dry-run and a re-check."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "re-checks and lists each session, ends none"

    connection_type = "postgres"
    action: Literal["postgres.terminate_backends"]
    with_: TerminateBackendsParams = Field(alias="with")


class PostgresConnection(ConnectionModel):
    """A Postgres database reached by DSN."""

    type: Literal["postgres"]
    dsn: SecretRef
    statement_timeout: float = Field(default=30.0, gt=0, description="Seconds; applied to every statement.")
    pool_size: int = Field(default=4, ge=1, le=50)
    ledger: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$",
        description="schema.table of the idempotency ledger; unset means writes are sent at most once.",
    )


POSTGRES = System(PostgresConnection, (PostgresQuery, PostgresExecute, TerminateBackends))
