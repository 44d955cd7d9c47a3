"""What runs and the governor say to each other: the limits a run carries, asks, answers, reports, activity names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.rails.governor_state import Answer, GovernorState, Limits, Switch

__all__ = ["Answer", "GovernorState", "Limits", "Switch"]

Effectiveness = Literal["effective", "ineffective", "unknown"]
GOVERNOR_ASK = "governor_ask"  # may this run write now (an Update to the governor workflow)
GOVERNOR_RELEASE = "governor_release"  # the run ended: release its lease, refund a run that wrote nothing
GOVERNOR_OCCURRED = "governor_occurred"  # a new occurrence, for the storm count (a signal)
GOVERNOR_EFFECTIVENESS = "governor_effectiveness"  # did the fix work; feeds the breaker
ALERT_FIRING = "alert_firing"  # is this occurrence still firing in Alertmanager
SILENCE_CREATE = "silence_create"  # silence exactly this alert's labels while the run acts
SILENCE_EXPIRE = "silence_expire"
ANNOUNCE = "announce"  # one message to the notifier: a storm began, a breaker opened
TURN = "turn"  # a run's signal: a slot freed and it is next in line, so it asks now


def governor_id(task_queue: str, playbook: str | None = None) -> str:
    """One governor shard per playbook, namespace and task queue: every replica of one deployment shares it, and
    independent playbooks never wait on each other. Without a playbook: the one governor of releases before
    shards (read once, for the kill switch it may still hold)."""
    return f"remediate-governor:{task_queue}" + (f":{playbook}" if playbook else "")


def budget_id(task_queue: str) -> str:
    """The keeper of the global hourly budget, which it lends to workers in blocks."""
    return f"remediate-budget:{task_queue}"


def governor_queue(task_queue: str) -> str:
    """The governor's own task queue: its answers never wait behind the run tasks of a storm."""
    return f"{task_queue}-governor"


class Governance(BaseModel):
    """What one run carries about the rails, fixed at intake: its playbook's limits over the service defaults."""

    model_config = ConfigDict(extra="forbid")

    governor: str = Field(default="", description="Workflow id of the governor; empty means no governor (tests).")
    limits: Limits = Field(default_factory=Limits)
    cooldown_key: str | None = Field(default=None, description="A template; default: the alert's fingerprint.")
    max_writes_per_hour: int | None = None
    alertmanager: str | None = Field(default=None, description="Connection that answers effectiveness and silences.")
    effective_within: timedelta = timedelta(minutes=10)
    silence: bool = False


class Ask(BaseModel):
    """May this run write now. `since`: when it first asked (its place in line); `unit` and `budget_frees_at` are
    filled in by the worker from its purse (the global budget), never by the run."""

    kind: Literal["ask"] = "ask"
    run_id: str
    playbook: str
    key: str
    limits: Limits
    max_writes_per_hour: int | None = None
    since: datetime | None = None
    unit: datetime | bool | None = None
    budget_frees_at: datetime | None = None


class Release(BaseModel):
    """The run ended (wrote or not), or it waits for a person now (`wrote` true: it keeps its count, not its slot)."""

    kind: Literal["release"] = "release"
    run_id: str
    wrote: bool
    playbook: str = ""


class Occurrence(BaseModel):
    run_id: str
    playbook: str
    limits: Limits


class SwitchChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: bool
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)
    playbook: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class Report(BaseModel):
    """One run's effectiveness, once: the governor counts it toward the breaker."""

    kind: Literal["report"] = "report"
    run_id: str
    playbook: str
    result: Effectiveness
    limits: Limits


class Tripped(BaseModel):
    """What the effectiveness report changed: True when it opened the breaker."""

    opened: bool = False
    ineffective_in_a_row: int = 0


Message = Annotated[Ask | Release | Report, Field(discriminator="kind")]


class Reply(BaseModel):
    """The shard's answer to one message of a batch, in the batch's order."""

    answer: Answer | None = None
    tripped: Tripped | None = None
    refunded: bool = Field(default=False, description="A release gave a counted write-run back.")
    turns: list[str] = Field(default_factory=list, description="Runs next in line for the slot a release freed.")


class AlertQuery(BaseModel):
    """Which occurrence to look for in Alertmanager, and through which connection."""

    connection: str
    labels: dict[str, str]
    fingerprint: str = ""


class SilenceRequest(BaseModel):
    connection: str
    labels: dict[str, str]
    run_id: str
    until: datetime


class SilenceRef(BaseModel):
    connection: str
    id: str


class GovernorView(BaseModel):
    """The governor's state as the CLI and the API show it."""

    state: GovernorState = Field(default_factory=GovernorState)
    started: bool = Field(default=False, description="False: no governor yet (nothing asked it so far).")
