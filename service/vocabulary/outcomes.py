"""Outcome notifications: which runs are announced (a playbook's `notify.on`), and the message that says so."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from service.vocabulary.approvals import MessageRef, Notifier

NotifyOn = Literal["wrote", "failed", "blocked", "rejected", "expired", "succeeded", "any"]
NOTIFY_OUTCOME = "notify_outcome"  # posts or updates a run's outcome message
_BLOCKED = ("blocked_by_policy",)


def _default_on() -> list[NotifyOn]:
    return ["wrote", "failed"]


class NotifyPolicy(BaseModel):
    """`notify:` in a playbook. By default a run is announced when it wrote (as it starts writing, then updated
    with the outcome) or failed; `on: []` announces nothing."""

    model_config = ConfigDict(extra="forbid")

    on: list[NotifyOn] = Field(
        default_factory=_default_on,
        description="wrote: made a real write; failed, blocked (by policy), rejected, expired, succeeded; any.",
    )
    channel: str | None = Field(default=None, description="Slack channel id; default: the approval channel.")

    def wants(self, status: str, wrote: bool) -> bool:
        """Whether a run that ended (or is acting) like this is announced."""
        on = set(self.on)
        return bool(
            "any" in on
            or ("wrote" in on and wrote)
            or ("failed" in on and status == "failed")
            or ("blocked" in on and status in _BLOCKED)
            or (status in ("rejected", "expired", "succeeded") and status in on)
        )


class OutcomeNotice(BaseModel):
    """A run's outcome message: posted once, then updated (`message` names it) as the run goes on."""

    run_id: str
    playbook: str
    alertname: str
    labels: dict[str, str] = Field(default_factory=dict)
    mode: str
    status: str
    reason: str = ""
    writes: list[str] = Field(default_factory=list, description="One line per write made: step, action, targets.")
    ended: bool = False
    channel: str | None = None
    message: MessageRef | None = None
    sequence: int = Field(default=1, description="1 for the first message of a run, then 2, 3 …: newer wins.")

    def text(self) -> str:
        head = f"remediate {self.playbook} for {self.alertname}: {self.status}"
        if self.mode in ("dry-run", "shadow"):
            head += f" ({self.mode})"
        return head + (f" — {self.reason}" if self.reason else "")


class OutcomeReporter(Protocol):
    async def report(self, notice: OutcomeNotice) -> MessageRef:
        """Post the run's outcome message, or update the one `notice.message` names."""
        ...


class Notifying(Notifier, OutcomeReporter, Protocol):
    """A notifier that shows approval requests, announcements and run outcomes."""
