"""One typed model per action; the `with` block of each is checked at load time and again once rendered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field, JsonValue, field_validator, model_validator

from service.playbooks import sql_check
from service.playbooks.step_base import (
    Approval,
    Capped,
    Duration,
    Effect,
    Params,
    Retry,
    StepBase,
    StepId,
    TargetRef,
    Template,
    WriteStep,
    approval_label,
    approval_of,
    approval_rule_of,
    bounded_targets,
    typed,
)
from service.playbooks.steps_kubernetes import KUBERNETES_STEPS
from service.playbooks.steps_redis import REDIS_STEPS
from service.playbooks.steps_temporal import TEMPORAL_STEPS

__all__ = [
    "ACTIONS",
    "Approval",
    "Duration",
    "Effect",
    "Params",
    "Retry",
    "Step",
    "StepBase",
    "StepId",
    "Template",
    "WriteStep",
    "approval_label",
    "approval_of",
    "approval_rule_of",
]


def _statement(sql: str, kind: Literal["query", "execute"]) -> str:
    problems = sql_check.check(sql, kind)[1]
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
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
    def _one_select(cls, sql: str) -> str:
        return _statement(sql, "query")

    @model_validator(mode="after")
    def _params_match(self) -> PostgresQueryParams:
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
    def _one_write(cls, sql: str) -> str:
        return _statement(sql, "execute")

    def caps(self) -> list[str]:
        return [f"max_rows {self.max_rows}"]

    def touched(self, data: Mapping[str, JsonValue], targets: Sequence[str]) -> str:
        rowcount = data.get("rowcount")
        return f"{rowcount} row(s)" if rowcount is not None else super().touched(data, targets)

    @model_validator(mode="after")
    def _params_match(self) -> PostgresExecuteParams:
        _matching_params(self.sql, self.params)
        return self


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class HttpRequestParams(Params):
    """A request to a configured base URL; templated path values become encoded segments."""

    literal_fields = frozenset({"method", "expect_status", "idempotent"})
    escapes = {"path": "url"}

    method: HttpMethod = "GET"
    path: str = Field(min_length=1, pattern=r"^/")
    query: dict[str, JsonValue] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, description="Accepted status codes; empty means any 2xx."
    )
    idempotent: bool = Field(
        default=False,
        description="The target honours the Idempotency-Key header, so a write may be retried after a lost worker.",
    )


class PrometheusQueryParams(Params):
    """An instant PromQL query; templated values are escaped for PromQL string literals."""

    escapes = {"query": "promql"}

    query: str = Field(min_length=1)


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


class HttpRequest(WriteStep):
    """A request under the connection's base URL: GET reads; other methods write and carry `Idempotency-Key`."""

    returns = "`status`, `json` or `text`, `url`"
    dry_run_behaviour = "GET runs; other methods are planned, not sent"
    approval_rule = "required for writes; GET is a read"
    effect_rule = "read (GET) or write"
    connection_type = "http"
    default_approval = "required"  # a write to an API is destructive like any other: say `approval: none` to act
    action: Literal["http.request"]
    with_: HttpRequestParams = Field(alias="with")

    def retries_safely(self, ledgers: Sequence[str]) -> bool:
        return self.with_.idempotent

    @model_validator(mode="after")
    def _write_fields_only_for_writes(self) -> HttpRequest:
        if self.with_.method == "GET" and (self.approval, self.for_each, self.min_approvals) != (None, None, None):
            raise ValueError("approval, min_approvals and for_each apply only to writes; a GET request is a read")
        return self

    @classmethod
    def effect_of(cls, params: Params) -> Effect:
        return "read" if isinstance(params, HttpRequestParams) and params.method == "GET" else "write"


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


class PrometheusQuery(StepBase):
    """An instant PromQL query."""

    returns = "`samples[{metric, value}]`, `empty`, `result_type`"
    dry_run_behaviour = "runs"
    connection_type = "prometheus"
    action: Literal["prometheus.query"]
    with_: PrometheusQueryParams = Field(alias="with")


_SQL_HTTP_PROM = (PostgresQuery, PostgresExecute, TerminateBackends, HttpRequest, PrometheusQuery)
# Every action of the catalog, once: a new system adds its tuple of step models here.
STEP_TYPES: tuple[type[StepBase], ...] = (*_SQL_HTTP_PROM, *KUBERNETES_STEPS, *TEMPORAL_STEPS, *REDIS_STEPS)
if TYPE_CHECKING:
    Step = StepBase
else:  # the playbook format: one of the step models, told apart by `action`
    Step = Annotated[Union[STEP_TYPES], Field(discriminator="action")]  # noqa: UP007 - built from the tuple
ACTIONS: dict[str, type[StepBase]] = {t.action_name(): t for t in STEP_TYPES}
