"""Approval gates to test with."""

from __future__ import annotations

from datetime import UTC, datetime

from service.vocabulary.approvals import Gate, GateRequest

APPROVERS = ["U_ALICE", "U_BOB"]


NOW = datetime(2026, 11, 23, tzinfo=UTC)


def gate(min_approvals: int = 1) -> Gate:
    return Gate(
        request=GateRequest(
            run_id="r",
            playbook="p",
            alertname="A",
            labels={},
            diagnosis=[],
            writes=[],
            approvers=APPROVERS,
            min_approvals=min_approvals,
            expires_at=NOW,
        )
    )
