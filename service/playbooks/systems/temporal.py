"""Temporal as a target: describe, list, query and act on explicit workflow executions of another namespace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import Field, JsonValue

from service.playbooks.step_base import (
    Approval,
    Capped,
    Params,
    StepBase,
    TargetRef,
    Template,
    WriteStep,
    bounded_targets,
    typed,
)
from service.playbooks.system import ConnectionModel, System
from service.vocabulary.secrets import SecretRef

WorkflowId = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f]+$")]
RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")]


class WorkflowRef(TargetRef):
    """One workflow execution, exactly: the id and the run id seen at diagnosis."""

    workflow_id: WorkflowId | Template
    run_id: RunId | Template


class ExecutionParams(Params):
    workflow_id: WorkflowId | Template
    run_id: RunId | Template | None = None


class ListParams(Params):
    literal_fields = frozenset({"limit"})
    escapes = {"query": "visibility"}

    query: str = Field(min_length=1, description="Visibility query; templated values may not contain quotes.")
    limit: int = Field(ge=1, le=1000, description="Required: the most executions returned.")


class CountParams(Params):
    escapes = {"query": "visibility"}

    query: str = Field(min_length=1)


class QueryParams(ExecutionParams):
    literal_fields = frozenset({"query"})

    query: Identifier
    args: list[JsonValue] = Field(default_factory=list)


class TargetsParams(Capped):
    """Workflow executions to act on, each named by id and run id."""

    literal_fields = frozenset({"max_targets"})

    workflows: list[WorkflowRef] | Template
    reason: str = Field(default="", max_length=500)

    def targets(self) -> Sequence[WorkflowRef]:
        return bounded_targets(typed(self.workflows, "workflows"), self.max_targets, "workflows")


class SignalParams(TargetsParams):
    literal_fields = frozenset({"max_targets", "signal"})

    signal: Identifier
    args: list[JsonValue] = Field(default_factory=list)


class ResetParams(TargetsParams):
    literal_fields = frozenset({"max_targets", "to"})

    to: Literal["last_workflow_task"] | int = Field(
        default="last_workflow_task", description="last_workflow_task, or the event id of a WorkflowTaskCompleted"
    )


class StartParams(Params):
    literal_fields = frozenset({"id_suffix"})

    workflow_type: Identifier | Template
    task_queue: Identifier | Template
    workflow_id: WorkflowId | Template = Field(description="The new id; starting twice under it starts once.")
    args: list[JsonValue] | Template = Field(default_factory=list)


class _Temporal(StepBase):
    connection_type = "temporal"


class _TemporalWrite(WriteStep):
    connection_type = "temporal"
    default_approval: ClassVar[Approval] = "none"


class Describe(_Temporal):
    """One workflow execution: status, history length, pending activities."""

    returns = (
        "`status`, `type`, `task_queue`, `start_time`, `close_time`, `history_length`, "
        "`pending_activities[{activity_id, type, attempt, state, last_failure, last_heartbeat}]`"
    )
    dry_run_behaviour = "runs"
    action: Literal["temporal.describe"]
    with_: ExecutionParams = Field(alias="with")


class ListWorkflows(_Temporal):
    """Workflow executions matching a visibility query, at most `limit`."""

    returns = "`workflows[{workflow_id, run_id, type, status, task_queue, start_time}]`, `count`"
    dry_run_behaviour = "runs"
    action: Literal["temporal.list"]
    with_: ListParams = Field(alias="with")


class CountWorkflows(_Temporal):
    """How many executions match a visibility query."""

    returns = "`count`"
    dry_run_behaviour = "runs"
    action: Literal["temporal.count"]
    with_: CountParams = Field(alias="with")


class QueryWorkflow(_Temporal):
    """Call a query handler of one execution."""

    returns = "`result`"
    dry_run_behaviour = "runs"
    action: Literal["temporal.query"]
    with_: QueryParams = Field(alias="with")


class HistoryInput(_Temporal):
    """The original input of one execution, from its first history event (to start it again)."""

    returns = "`workflow_type`, `task_queue`, `args`, `run_id`"
    dry_run_behaviour = "runs"
    action: Literal["temporal.history_input"]
    with_: ExecutionParams = Field(alias="with")


class Signal(_TemporalWrite):
    """Send a signal to explicit executions; the run's key is the request id Temporal de-duplicates on."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned, not sent"
    action: Literal["temporal.signal"]
    with_: SignalParams = Field(alias="with")


class Cancel(_TemporalWrite):
    """Request cancellation of explicit executions (the workflow may clean up); prefer it to terminate."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned, not sent"
    action: Literal["temporal.cancel"]
    with_: TargetsParams = Field(alias="with")


class Terminate(_TemporalWrite):
    """Terminate explicit executions, with a reason that names the run."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned, not sent"
    default_approval = "required"
    action: Literal["temporal.terminate"]
    with_: TargetsParams = Field(alias="with")


class Reset(_TemporalWrite):
    """Reset explicit executions to their last completed workflow task or an event id."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned, not sent"
    default_approval = "required"
    action: Literal["temporal.reset"]
    with_: ResetParams = Field(alias="with")


class Start(_TemporalWrite):
    """Start a workflow under a new id; starting twice under the same id starts it once."""

    returns = "`workflow_id`, `run_id`, `outcome`"
    dry_run_behaviour = "planned, not sent"
    action: Literal["temporal.start"]
    with_: StartParams = Field(alias="with")


TEMPORAL_STEPS: tuple[type[StepBase], ...] = (
    Describe,
    ListWorkflows,
    CountWorkflows,
    QueryWorkflow,
    HistoryInput,
    Signal,
    Cancel,
    Terminate,
    Reset,
    Start,
)


class TemporalConnection(ConnectionModel):
    """A Temporal cluster and namespace that playbooks act on (not the service's own)."""

    type: Literal["temporal"]
    address: str = Field(pattern=r"^[^\s/]+:\d+$")
    namespace: str = "default"
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    api_key: SecretRef | None = Field(default=None, description="Temporal Cloud API key (implies TLS).")


TEMPORAL = System(TemporalConnection, TEMPORAL_STEPS)
