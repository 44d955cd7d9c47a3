"""HTTP APIs as playbooks see them: a connection under one base URL, one request step (GET reads, others write)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, JsonValue, model_validator

from service.playbooks.step_base import Effect, Params, WriteStep
from service.playbooks.system import ConnectionModel, HttpAuth, System

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


class HttpConnection(ConnectionModel):
    """An HTTP API under one base URL; paths in playbooks are relative to it."""

    type: Literal["http"]
    base_url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    max_response_bytes: int = Field(default=1_048_576, ge=1024)


HTTP = System(HttpConnection, (HttpRequest,))
