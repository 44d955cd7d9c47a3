"""The approval gate: who counts, how often, and what a late or replayed decision can change."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from service.vocabulary.approvals import Decision, Verdict
from tests.support.gates import APPROVERS, gate


def decide(user: str, verdict: Verdict = "approve", decision_id: str | None = None, gate_id: str = "act") -> Decision:
    return Decision(gate=gate_id, verdict=verdict, user=user, decision_id=decision_id or f"{user}:{verdict}")


def test_an_allowed_approver_opens_the_gate() -> None:
    """One approval from the list approves a gate that needs one."""
    g = gate()
    assert g.apply(decide("U_ALICE")).outcome == "counted" and g.status == "approved"


def test_others_are_refused_with_a_reason_and_recorded() -> None:
    """Someone not on the list is refused, the refusal is kept, and the gate stays open."""
    g = gate()
    record = g.apply(decide("U_MALLORY"))
    assert record.outcome == "refused" and "not an approver" in record.reason
    assert g.status == "open" and g.decisions == [record]


def test_two_approvals_need_two_people() -> None:
    """With min_approvals 2, the same person clicking twice is one approval."""
    g = gate(2)
    g.apply(decide("U_ALICE", decision_id="c1"))
    assert g.apply(decide("U_ALICE", decision_id="c2")).outcome == "duplicate"
    assert g.status == "open"
    g.apply(decide("U_BOB"))
    assert g.approved_by == ["U_ALICE", "U_BOB"]
    assert g.status == "approved"  # type: ignore[comparison-overlap]  # mypy keeps the narrowing across apply()


def test_replays_count_once_and_late_decisions_change_nothing() -> None:
    """A replayed decision id is a duplicate; after a rejection or expiry nothing reopens the gate."""
    g = gate()
    g.apply(decide("U_BOB", "reject"))
    assert g.apply(decide("U_BOB", "reject")).outcome == "duplicate"
    assert g.apply(decide("U_ALICE")).outcome == "ignored" and g.status == "rejected"
    expired = gate()
    expired.close("expired")
    assert expired.apply(decide("U_ALICE")).outcome == "ignored" and expired.status == "expired"


def test_a_decision_for_another_gate_is_ignored() -> None:
    """Buttons carry the gate id; a decision for a gate that is not this one is ignored."""
    g = gate()
    assert g.apply(decide("U_ALICE", gate_id="other")).outcome == "ignored" and g.status == "open"


USERS = st.sampled_from(["U_ALICE", "U_BOB", "U_MALLORY"])


class GateMachine(RuleBasedStateMachine):
    """Random sequences of clicks, replays, expiry, resolution and worker restarts against one gate.

    The "run" acts when, and only when, the gate is approved, as RemediationWorkflow does. A restart replays every
    signal the workflow received, in order, into a fresh gate (what Temporal does after a worker restart), and
    must reach the same state.
    """

    def __init__(self) -> None:
        super().__init__()
        self.min = 1
        self.gate = gate(self.min)
        self.received: list[Decision | str] = []
        self.writes = 0
        self.clicks = 0
        self.closed_as: str | None = None

    def _deliver(self, item: Decision | str) -> None:
        self.received.append(item)
        if isinstance(item, Decision):
            self.gate.apply(item)
        else:
            self.gate.close(item)  # type: ignore[arg-type]
        self._engine()

    def _engine(self) -> None:
        if self.gate.status == "approved" and self.writes == 0:
            self.writes += 1

    @rule(user=USERS)
    def click_approve(self, user: str) -> None:
        self.clicks += 1
        self._deliver(decide(user, "approve", f"{user}:{self.clicks}"))

    @rule(user=USERS)
    def click_reject(self, user: str) -> None:
        self.clicks += 1
        self._deliver(decide(user, "reject", f"{user}:{self.clicks}"))

    @precondition(lambda self: any(isinstance(r, Decision) for r in self.received))
    @rule(index=st.integers(min_value=0))
    def replay(self, index: int) -> None:
        sent = [r for r in self.received if isinstance(r, Decision)]
        self._deliver(sent[index % len(sent)])

    @rule()
    def expire(self) -> None:
        self._deliver("expired")

    @rule()
    def resolve(self) -> None:
        self._deliver("resolved")

    @rule()
    def restart_worker(self) -> None:
        replayed = gate(self.min)
        for item in self.received:
            if isinstance(item, Decision):
                replayed.apply(item)
            else:
                replayed.close(item)  # type: ignore[arg-type]
        assert replayed.status == self.gate.status and replayed.approved_by == self.gate.approved_by
        self.gate = replayed

    @invariant()
    def at_most_one_write_and_only_after_a_valid_approval(self) -> None:
        assert self.writes <= 1
        if self.writes:
            counted = [d for d in self.gate.decisions if d.outcome == "counted" and d.verdict == "approve"]
            assert len({d.user for d in counted}) >= self.min
            assert all(d.user in APPROVERS for d in counted)
            assert self.gate.status == "approved" and self.gate.rejected_by is None

    @invariant()
    def a_closed_gate_stays_closed(self) -> None:
        if self.closed_as is None and self.gate.status != "open":
            self.closed_as = self.gate.status
        assert self.closed_as is None or self.gate.status == self.closed_as

    @invariant()
    def outsiders_never_count(self) -> None:
        assert "U_MALLORY" not in self.gate.approved_by


class TwoApproverGateMachine(GateMachine):
    """The same sequences when the playbook asks for two approvers."""

    def __init__(self) -> None:
        super().__init__()
        self.min = 2
        self.gate = gate(2)


SETTINGS = settings(max_examples=300, stateful_step_count=30, deadline=None)
TestGate = GateMachine.TestCase
TestGate.settings = SETTINGS
TestTwoApproverGate = TwoApproverGateMachine.TestCase
TestTwoApproverGate.settings = SETTINGS
