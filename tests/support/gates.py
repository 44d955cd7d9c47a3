"""Approval gates to test with."""

from __future__ import annotations

from datetime import UTC, datetime

from service.vocabulary.approvals import Gate, GateRequest

APPROVERS = ["U_ALICE", "U_BOB"]


NOW = datetime(2026, 11, 23, tzinfo=UTC)


def gate(
    min_approvals: int = 1, *, run_id: str = "r", approvers: list[str] | None = None, expires_at: datetime = NOW
) -> Gate:
    """An open gate of run `run_id` of playbook `p`, asking `approvers` (default U_ALICE and U_BOB)."""
    return Gate(
        request=GateRequest(
            run_id=run_id,
            playbook="p",
            alertname="A",
            labels={},
            diagnosis=[],
            writes=[],
            approvers=APPROVERS if approvers is None else approvers,
            min_approvals=min_approvals,
            expires_at=expires_at,
        )
    )
