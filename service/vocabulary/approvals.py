"""Approval gates as a pure state machine: who may decide, how many must agree, and what a late click changes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

Verdict = Literal["approve", "reject"]
Outcome = Literal["counted", "refused", "duplicate", "ignored"]
GateStatus = Literal["open", "approved", "rejected", "expired", "resolved"]


MAX_DECISIONS = 100  # per gate: a flood of decisions cannot grow a run without bound


class Decision(BaseModel):
    """One click or API call; `decision_id` makes replays and retries count once."""

    gate: str = Field(default="act", min_length=1, max_length=64)
    verdict: Verdict
    user: str = Field(min_length=1, max_length=200)
    decision_id: str = Field(min_length=1, max_length=300)
    # Where it was made: "api", "cli", or a notifier's name ("slack"); open, so a new notifier needs no edit here.
    source: str = Field(default="api", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    comment: str = Field(default="", max_length=1000)


class DecisionRecord(BaseModel):
    """What happened to one decision, for the audit trail and the Slack message."""

    decision_id: str
    user: str
    verdict: Verdict
    source: str
    outcome: Outcome
    reason: str = ""
    at: datetime | None = None


class PlannedWrite(BaseModel):
    """One write as the approver sees it."""

    step: str
    action: str
    summary: str
    targets: list[str] = Field(default_factory=list)
    blast_radius: str = ""
    gated: bool = True


class GateRequest(BaseModel):
    """Everything an approval request shows; the same data goes to Slack, the API and the CLI."""

    run_id: str
    gate: str = "act"
    playbook: str
    alertname: str
    labels: dict[str, str]
    diagnosis: list[str]
    writes: list[PlannedWrite]
    approvers: list[str]
    min_approvals: int
    expires_at: datetime
    opened_at: datetime | None = Field(default=None, description="When the gate opened (time to decision).")
    caution: str = Field(default="", description="Why the governor asks for a human (a storm, an open breaker).")


class MessageRef(BaseModel):
    """Where a notifier showed a gate (which notifier, its channel, its own message id); opaque to the run."""

    notifier: str = ""
    channel: str = ""
    id: str = ""


class Gate(BaseModel):
    """State of one gate; `apply` is the only way it changes."""

    request: GateRequest
    status: GateStatus = "open"
    approved_by: list[str] = Field(default_factory=list)
    rejected_by: str | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list)
    message: MessageRef | None = Field(default=None, description="Where a notifier showed this gate, to update it.")
    notice: str = ""

    def _seen(self, decision_id: str) -> bool:
        return any(d.decision_id == decision_id for d in self.decisions)

    def apply(self, decision: Decision, at: datetime | None = None) -> DecisionRecord:
        """Count, refuse or ignore one decision; never reopen a closed gate."""

        def answer(outcome: Outcome, reason: str = "") -> DecisionRecord:
            return DecisionRecord(
                decision_id=decision.decision_id,
                user=decision.user,
                verdict=decision.verdict,
                source=decision.source,
                outcome=outcome,
                reason=reason,
                at=at,
            )

        def record(outcome: Outcome, reason: str = "") -> DecisionRecord:
            entry = answer(outcome, reason)
            # Counted decisions are bounded by the approvers; everything else stops being kept at the cap, so a
            # flood of clicks can neither grow the run nor crowd out a real approver.
            if outcome == "counted" or len(self.decisions) < MAX_DECISIONS:
                self.decisions.append(entry)
            return entry

        if self._seen(decision.decision_id):  # a replay changes nothing and is not kept again
            return answer("duplicate", "already received")
        if decision.gate != self.request.gate:
            return record("ignored", f"no gate {decision.gate!r} in this run")
        if self.status != "open":
            return record("ignored", f"the gate is already {self.status}")
        if decision.user not in self.request.approvers:
            return record("refused", f"{decision.user} is not an approver for this run")
        if decision.verdict == "reject":
            self.status, self.rejected_by = "rejected", decision.user
            return record("counted", "rejected")
        if decision.user in self.approved_by:
            return record("duplicate", "this approver has already approved")
        self.approved_by.append(decision.user)
        if len(self.approved_by) >= self.request.min_approvals:
            self.status = "approved"
        return record("counted", f"{len(self.approved_by)} of {self.request.min_approvals} approval(s)")

    def close(self, status: Literal["expired", "resolved"]) -> None:
        if self.status == "open":
            self.status = status


class Notice(BaseModel):
    """Publish or update a gate's message; `outcome` is set once the run has ended."""

    gate: Gate
    channel: str | None = None
    outcome: str = ""


class Notifier(Protocol):
    """Where approval requests are shown and kept current (a chat tool, or nowhere); implemented by an adapter."""

    async def publish(self, notice: Notice) -> MessageRef:
        """Post the gate, or update the message its `message` names; an empty `id` means it is shown nowhere."""
        ...

    async def announce(self, text: str) -> None:
        """Post one message that needs no answer (a storm began, a breaker opened)."""
        ...

    async def close(self) -> None: ...


class NoNotifier:
    """Used when no notifier is configured: decisions come through the API and the CLI only."""

    async def publish(self, notice: Notice) -> MessageRef:
        return MessageRef()

    async def report(self, notice: object) -> MessageRef:
        return MessageRef()

    async def announce(self, text: str) -> None:
        return None

    async def close(self) -> None:
        return None
