"""What the governor keeps and answers: limits, switches, leases, cooldowns, the line, a playbook's state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.vocabulary.durations import Duration

Verdict = Literal["grant", "approval", "refuse", "wait"]
OnLimit = Literal["wait", "refuse"]

HOUR = timedelta(hours=1)
WAIT_AT_MOST = timedelta(hours=1)  # how long a run waits for its turn when its playbook sets no limits.wait_at_most
BUSY_AT_MOST = timedelta(minutes=30)  # the longest a run waits on a governor that answers only `busy`
REPORTED = 2_000  # runs remembered as having reported their effectiveness, per playbook
WAIT_STALE = timedelta(seconds=180)  # a place in line not asked about for this long is given up (the run is gone)
TOLD_AGAIN = timedelta(seconds=5)  # a run told its turn came and not asking since is told again, or the next one is
PACED = ("max_concurrent", "max_runs_per_hour", "max_writes_per_hour")  # the limits a run may wait out


class Storm(BaseModel):
    """More new occurrences than `occurrences` within `within`: writes need approval until it is calm again."""

    model_config = ConfigDict(extra="forbid")

    occurrences: int = Field(ge=1, le=100_000)
    within: Duration = Field(le=timedelta(hours=24))


class Breaker(BaseModel):
    """This many ineffective runs in a row: writes need approval until someone resets the breaker."""

    model_config = ConfigDict(extra="forbid")

    ineffective: int = Field(ge=1, le=100)


class Limits(BaseModel):
    """What one playbook may do; unset fields mean no such limit (the service defaults fill them in)."""

    model_config = ConfigDict(extra="forbid")

    cooldown: Duration | None = Field(default=None, le=timedelta(hours=24))
    max_runs_per_hour: int | None = Field(default=None, ge=1, le=10_000)
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    storm: Storm | None = None
    breaker: Breaker | None = None
    on_limit: OnLimit | None = Field(
        default=None, description="Over max_concurrent or an hourly limit: wait for a turn (default) or refuse."
    )
    wait_at_most: Duration | None = Field(
        default=None, le=timedelta(hours=24), description="The longest a run waits for its turn (default 1h)."
    )

    def waits(self) -> bool:
        return self.on_limit != "refuse"


class Switch(BaseModel):
    """The kill switch, for everything or for one playbook: who set it, when and why."""

    on: bool = False
    by: str = ""
    at: datetime | None = None
    reason: str = ""


class Lease(BaseModel):
    """A run allowed to write: until `until`, renewed by each further ask of the same run."""

    playbook: str
    key: str
    granted_at: datetime
    until: datetime


class Grant(BaseModel):
    """A write-run counted against the hourly budgets; refunded if the run ends without writing."""

    playbook: str
    key: str
    at: datetime


class Cooldown(BaseModel):
    """The last write-run for one cooldown key, and which run it was (that run may ask again)."""

    at: datetime
    run_id: str
    until: datetime | None = Field(default=None, description="When it ends (the cooldown then); None: a day after.")


class Answer(BaseModel):
    """A grant, a grant that needs a human first (storm, breaker), a refusal naming the limit and when it frees, or
    `wait`: the run has a place in line (`place`, 1 = next) and asks again."""

    verdict: Verdict
    reason: str = ""
    limit: str = ""
    frees_at: datetime | None = None
    place: int = 0
    counted: bool = Field(default=False, description="A new write-run was counted: the budget unit it held is spent.")


class Waiting(BaseModel):
    """A run waiting for its turn: since when (its place), and when it last asked (a gone run's place lapses)."""

    playbook: str
    since: datetime
    seen: datetime


class PlaybookState(BaseModel):
    """What the governor remembers of one playbook."""

    occurrences: list[datetime] = Field(default_factory=list, description="New occurrences in the storm window.")
    storming: bool = False
    cooldowns: dict[str, Cooldown] = Field(default_factory=dict, description="Cooldown key -> its last write-run.")
    ineffective_in_a_row: int = 0
    breaker_open: bool = False
    reported: list[str] = Field(default_factory=list, description="The runs whose effectiveness counted, latest.")
    switch: Switch = Field(default_factory=Switch)


class GovernorState(BaseModel):
    """Everything the governor carries across continue-as-new: plain data, so the state after equals before."""

    switch: Switch = Field(default_factory=Switch)
    leases: dict[str, Lease] = Field(default_factory=dict, description="Run id -> its lease.")
    grants: dict[str, Grant] = Field(default_factory=dict, description="Run id -> its write-run, last hour.")
    playbooks: dict[str, PlaybookState] = Field(default_factory=dict)
    waiting: dict[str, Waiting] = Field(default_factory=dict, description="Run id -> its place in line.")
