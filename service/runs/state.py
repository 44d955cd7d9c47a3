"""What a run is made of: step requests and results, the audit records, the run's input and state."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from service.alerts.webhook import Alert
from service.playbooks.playbook import Playbook, PlaybookVersion
from service.playbooks.shelf import CarriesPlaybook, Shelf
from service.playbooks.steps import Effect, StepBase
from service.rails.governance import Effectiveness, Governance
from service.vocabulary.approvals import Gate
from service.vocabulary.errors import PermanentStepError
from service.vocabulary.modes import Mode
from service.vocabulary.shadow import ShadowWatch

RunStatus = Literal[
    "received",
    "diagnosing",
    "planned",
    "awaiting_approval",
    "waiting_for_slot",
    "acting",
    "verifying",
    "succeeded",
    "failed",
    "rejected",
    "expired",
    "resolved_before_action",
    "blocked_by_policy",
    "cancelled",
]
StepStatus = Literal["pending", "running", "ok", "failed", "skipped", "planned", "dry_run", "not_run"]
Phase = Literal["diagnose", "act", "verify"]
RUN_STEP = "run_step"  # the one activity every step runs through
NOTIFY_GATE = "notify_gate"  # posts or updates an approval request
PRIOR_ATTEMPTS = "prior_attempts"  # how often this occurrence was already attempted
SETTLE = "settle"  # does nothing: a workflow-task boundary, so signals that came during local reads are seen


MAX_RUN_ID = 512  # a playbook name (63), a fingerprint (64) and a time, with room to spare


def run_id_problem(given: str) -> str | None:
    """Why a run id (or a short id, or a prefix) from outside cannot name a run; None when it may."""
    if not given or len(given) > MAX_RUN_ID:
        return f"a run id has 1 to {MAX_RUN_ID} characters"
    if not given.isprintable():
        return "a run id holds no control characters (NUL, newline, …)"
    return None


def short_id(run_id: str) -> str:
    """Eight hex digits that name one run in `runs list`; `runs show` accepts them."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


class StepRequest(BaseModel):
    """What an activity gets: rendered parameters and names, never secrets."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    step_id: str
    action: str
    connection: str
    params: dict[str, JsonValue]
    dry_run: bool = False
    effect: Effect = "read"
    timeout_seconds: float = 30.0
    attempt: int = Field(default=1, ge=1, description="Set by the activity: Temporal's attempt number.")

    @property
    def key(self) -> str:
        """The idempotency key of this call: `<run id>/<step id>[<item>]`, the same on every retry."""
        return f"{self.run_id}/{self.step_id}"


class StepResult(BaseModel):
    """What a step produced: `data` becomes `steps.<id>` for later templates."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, JsonValue] = Field(default_factory=dict)
    summary: str = ""
    targets: list[str] = Field(default_factory=list)
    dry_run: bool = False
    note: str = Field(default="", description="How a retried call was made safe, for the run record.")
    blast_radius: str = Field(default="", description="What a write touched against its caps (set by the registry).")


def per_target(outcomes: list[tuple[str, str]], summary: str, dry_run: bool) -> StepResult:
    """What every multi-target write returns: one {target, outcome} per target; any `failed: …` fails the step."""
    results: list[JsonValue] = [{"target": target, "outcome": outcome} for target, outcome in outcomes]
    failed = sum(outcome.startswith("failed") for _, outcome in outcomes)
    if failed:
        raise PermanentStepError(f"{summary}: {failed} failed: {results}")
    return StepResult(
        data={"results": results, "count": len(results), "dry_run": dry_run},
        summary=summary,
        targets=[target for target, _ in outcomes],
        dry_run=dry_run,
    )


class StepRecord(BaseModel):
    """The audit line of one step in one run."""

    id: str
    phase: Phase
    action: str
    effect: Effect
    connection: str
    status: StepStatus = "pending"
    approval: str | None = Field(default=None, description="none, required, or `required if <condition>`.")
    approval_decided: str = Field(default="", description="How a conditional approval was decided, and on what.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    summary: str = ""
    result: dict[str, JsonValue] | None = None
    targets: list[str] = Field(default_factory=list)
    blast_radius: str = ""
    error: str | None = None
    note: str = ""
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Durability(BaseModel):
    """How a run survives lost workers and failures (heartbeats, safe retries of writes, attempts per occurrence),
    and whether it leaves an audit trail beyond Temporal's retention."""

    ledgers: list[str] = Field(
        default_factory=list, description="Postgres connections with a ledger: their writes may be retried."
    )
    heartbeat_timeout: float = Field(default=10.0, ge=1, description="Seconds; a silent worker is lost after this.")
    max_attempts: int = Field(default=3, ge=1, description="Executions one occurrence may have after failures.")
    attempt_backoff: float = Field(default=60.0, ge=0, description="Seconds; doubled for every earlier failure.")
    audit: bool = Field(default=False, description="Append the run's records to the audit store as it goes.")
    notify: bool = Field(default=False, description="A notifier is configured: outcome messages have somewhere to go.")


class RunTerms(BaseModel):
    """What a run is pinned to at its start, besides its playbook: the alert, the mode, approvers, rails."""

    run_id: str
    alert: Alert
    mode: Mode
    approvers: list[str] = Field(default_factory=list, description="Resolved user ids allowed to decide.")
    approval_channel: str | None = None
    durability: Durability = Field(default_factory=Durability)
    governance: Governance = Field(default_factory=Governance)
    version: PlaybookVersion | None = Field(default=None, description="The playbook's file and content hash.")
    first_attempt: bool = Field(
        default=False, description="Set by the starter when no execution of this run id existed: nothing to count."
    )


class RunInput(RunTerms):
    """Everything a run needs, pinned at start: the playbook as it was, the alert, the mode."""

    playbook: Playbook


class RunStart(RunTerms, CarriesPlaybook):
    """What a run's workflow is started with: its playbook by document, decoded once per worker (a run started
    before documents existed carries the playbook whole, and replays with it)."""

    def resolved(self, shelf: Shelf) -> RunInput:
        """The run's input with its playbook; its terms were validated when this was, so they are not again."""
        terms = {name: getattr(self, name) for name in RunTerms.model_fields}
        return RunInput.model_construct(playbook=self.carried(shelf), **terms)


class RunState(BaseModel):
    """A run as operators see it; returned by the workflow's query and as its result."""

    run_id: str
    playbook: str
    alertname: str
    fingerprint: str
    labels: dict[str, str]
    mode: Mode
    status: RunStatus = "received"
    reason: str = ""
    attempt: int = 1
    resolved: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    gate: Gate | None = None
    limit: str = Field(default="", description="The rail that blocked the run (kill_switch, cooldown, …), if one did.")
    caution: str = Field(default="", description="Why the governor asked for a human before writing.")
    place: int = Field(default=0, description="While waiting_for_slot: its place in line (1 = next).")
    waited: float = Field(default=0.0, description="Seconds spent waiting for the governor's grants, in all.")
    effectiveness: Effectiveness | Literal["checking"] | None = Field(
        default=None, description="After a run that wrote: did the alert stop firing within effective_within."
    )
    silence: str = Field(default="", description="The Alertmanager silence this run holds (or held) while it acts.")
    version: PlaybookVersion | None = Field(default=None, description="Which version of the playbook this run ran.")
    shadow: ShadowWatch | None = Field(default=None, description="In shadow mode: what happened after the plan.")

    @property
    def dry_run(self) -> bool:
        return self.mode.plans_only


class PriorAttempts(BaseModel):
    """Earlier executions of one occurrence that ended without success."""

    count: int = 0
    last_closed_at: datetime | None = None


class Executor(Protocol):
    """Runs one step somewhere (a Temporal activity, or in-process for `remediate plan`)."""

    async def __call__(self, step: StepBase, request: StepRequest) -> StepResult: ...


class GateKeeper(Protocol):
    """Publishes a gate and returns once it is decided, expired or resolved (a durable wait in the workflow)."""

    async def __call__(self, gate: Gate) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...
