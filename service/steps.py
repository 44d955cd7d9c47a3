"""One typed model per action; the `with` block of each is checked at load time and again once rendered."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, WithJsonSchema, model_validator

from service.templating import Escape

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match["n"]) * _UNIT_SECONDS[match["unit"]])
    return value  # ISO-8601 (how the model serialises) and numbers go to pydantic's own parsing


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$", "examples": ["30s", "5m"]}),
]

StepId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Approval = Literal["none", "required"]
Effect = Literal["read", "write"]


class Retry(BaseModel):
    """Bounded retries: `attempts` in total, `interval` before the second, growing by `backoff`."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=1, le=20)
    interval: Duration = timedelta(seconds=1)
    backoff: float = Field(default=1.0, ge=1.0, le=10.0)


class Params(BaseModel):
    """Base of every `with` block: which fields take no templates, and how templated values are escaped."""

    model_config = ConfigDict(extra="forbid")

    literal_fields: ClassVar[frozenset[str]] = frozenset()
    escapes: ClassVar[dict[str, Escape]] = {}


class PostgresQueryParams(Params):
    """A read-only SQL query; values come in only through bound `params`."""

    literal_fields = frozenset({"sql", "max_rows"})

    sql: str = Field(min_length=1, description="SQL text; no templates, use %(name)s placeholders.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="Rows returned at most.")


class PostgresExecuteParams(Params):
    """A data-changing SQL statement with a mandatory row cap."""

    literal_fields = frozenset({"sql", "max_rows"})

    sql: str = Field(min_length=1, description="SQL text; no templates, use %(name)s placeholders.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    max_rows: int = Field(ge=1, le=100_000, description="More changed rows than this rolls back and fails.")


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class HttpRequestParams(Params):
    """A request to a configured base URL; templated path values become encoded segments."""

    literal_fields = frozenset({"method", "expect_status"})
    escapes = {"path": "url"}

    method: HttpMethod = "GET"
    path: str = Field(min_length=1, pattern=r"^/")
    query: dict[str, JsonValue] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, description="Accepted status codes; empty means any 2xx."
    )


class PrometheusQueryParams(Params):
    """An instant PromQL query; templated values are escaped for PromQL string literals."""

    escapes = {"query": "promql"}

    query: str = Field(min_length=1)


class StepBase(BaseModel):
    """Fields every step has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    connection_type: ClassVar[str]
    default_approval: ClassVar[Approval] = "required"

    id: StepId
    action: str
    description: str = ""
    connection: str = Field(min_length=1)
    when: str | None = Field(default=None, description="Expression; the step runs only when it is true.")
    timeout: Duration = timedelta(seconds=30)
    retry: Retry | None = None
    expect: str | None = Field(default=None, description="Expression the result must satisfy (retried).")

    @property
    def effect(self) -> Effect:
        return "read"

    @property
    def params(self) -> Params:
        raise NotImplementedError


class PostgresQuery(StepBase):
    connection_type = "postgres"
    action: Literal["postgres.query"]
    with_: PostgresQueryParams = Field(alias="with")

    @property
    def params(self) -> Params:
        return self.with_


class PostgresExecute(StepBase):
    connection_type = "postgres"
    action: Literal["postgres.execute"]
    with_: PostgresExecuteParams = Field(alias="with")
    approval: Approval | None = None

    @property
    def effect(self) -> Effect:
        return "write"

    @property
    def params(self) -> Params:
        return self.with_


class HttpRequest(StepBase):
    connection_type = "http"
    default_approval = "none"
    action: Literal["http.request"]
    with_: HttpRequestParams = Field(alias="with")
    approval: Approval | None = None

    @model_validator(mode="after")
    def _approval_only_for_writes(self) -> HttpRequest:
        if self.approval is not None and self.with_.method == "GET":
            raise ValueError("approval applies only to writes; a GET request is a read")
        return self

    @property
    def effect(self) -> Effect:
        return "read" if self.with_.method == "GET" else "write"

    @property
    def params(self) -> Params:
        return self.with_


class PrometheusQuery(StepBase):
    connection_type = "prometheus"
    action: Literal["prometheus.query"]
    with_: PrometheusQueryParams = Field(alias="with")

    @property
    def params(self) -> Params:
        return self.with_


Step = Annotated[PostgresQuery | PostgresExecute | HttpRequest | PrometheusQuery, Field(discriminator="action")]
STEP_TYPES: tuple[type[StepBase], ...] = (PostgresQuery, PostgresExecute, HttpRequest, PrometheusQuery)
ACTIONS: dict[str, type[StepBase]] = {
    t.model_fields["action"].annotation.__args__[0]: t  # type: ignore[union-attr]
    for t in STEP_TYPES
}


def approval_of(step: StepBase) -> Approval:
    """The approval a write needs: what the playbook says, else the action's safe default."""
    explicit: Approval | None = getattr(step, "approval", None)
    return explicit if explicit is not None else step.default_approval
