"""Playbook model and a loader that reports `file:line:col` problems; nothing half-loads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from service.alerts.matching import LabelMatcher, Match, anchored
from service.alerts.webhook import Alert
from service.playbooks.steps import Duration, Step, StepBase
from service.rails.governor_state import Limits
from service.vocabulary.durations import PlaybookJsonSchema
from service.vocabulary.modes import Mode
from service.vocabulary.outcomes import NotifyPolicy

__all__ = ["LabelMatcher", "Match", "Playbook", "anchored", "matching"]


class PlaybookLimits(Limits):
    """The governor's limits for one playbook (unset fields take the service defaults), plus what it keys on."""

    cooldown_key: str | None = Field(
        default=None, max_length=500, description="A template naming what a cooldown is for; default: fingerprint."
    )
    effective_within: Duration | None = Field(
        default=None, le=timedelta(hours=24), description="How long a fix has to stop the alert (default 10m)."
    )

    def over(self, defaults: Limits) -> Limits:
        """These limits, each unset one taken from `defaults`."""
        return Limits(
            **{f: getattr(defaults, f) if getattr(self, f) is None else getattr(self, f) for f in Limits.model_fields}
        )


class Playbook(BaseModel):
    """One remediation: match, inputs, diagnose (reads), act (writes), verify (reads), policy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Unique; part of every run id.")
    description: str = ""
    runbook: str | None = Field(
        default=None,
        max_length=2000,
        description="The runbook this playbook automates (the URL alert rules give as runbook_url): replay lists the "
        "alerts that name it and that no playbook matched.",
    )
    mode: Mode | None = Field(default=None, description="Lowers the service mode for this playbook.")
    match: Match
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    diagnose: list[Step] = Field(default_factory=list)
    act: list[Step] = Field(default_factory=list)
    verify: list[Step] = Field(default_factory=list)
    approvers: list[str] = Field(
        default_factory=list, description="Slack user ids or group names; empty means the configured default."
    )
    min_approvals: int = Field(default=1, ge=1, le=5)
    approval_timeout: Duration = Field(default=timedelta(minutes=15), description="Unanswered gates expire.")
    approval_channel: str | None = Field(default=None, description="Slack channel id; default from configuration.")
    limits: PlaybookLimits = Field(default_factory=PlaybookLimits, description="The governor's rails for this one.")
    silence: bool = Field(
        default=False, description="Silence exactly the alert's labels in Alertmanager while a run acts and verifies."
    )
    stop_when_resolved: bool = Field(
        default=True,
        description="A `resolved` stops writes not yet made and cancels a pending approval. Set false when the "
        "playbook's own first write makes its alert resolve, so the rest of the fix still runs.",
    )
    notify: NotifyPolicy = Field(
        default_factory=NotifyPolicy, description="Which runs are announced (default: those that wrote or failed)."
    )

    def steps(self) -> list[tuple[str, StepBase]]:
        return [
            (phase, s)
            for phase, steps in (("diagnose", self.diagnose), ("act", self.act), ("verify", self.verify))
            for s in steps
        ]

    def matches(self, alert: Alert) -> bool:
        return self.match.matches(alert)


def playbook_schema() -> dict[str, Any]:
    """The JSON Schema of the format, as `remediate schema` prints it (and playbooks/schema.json holds)."""
    return Playbook.model_json_schema(by_alias=True, schema_generator=PlaybookJsonSchema)


# ---- loading with positions ---------------------------------------------------------------------------------

Position = tuple[int, int]
Path_ = tuple[str | int, ...]


class PlaybookVersion(BaseModel):
    """Which file a playbook came from and the SHA-256 of its content: recorded on every run."""

    name: str
    file: str
    sha256: str


def matching(playbooks: Iterable[Playbook], alert: Alert) -> list[Playbook]:
    return [p for p in playbooks if p.matches(alert)]
