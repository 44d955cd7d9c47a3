"""A run's approval gate as pure functions: the request an approver sees, and what an approval covers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from service.playbooks.steps import StepBase, WriteStep
from service.runs.state import RunInput, StepRecord
from service.vocabulary.approvals import GateRequest, PlannedWrite

Approved = Mapping[str, Sequence[str]]  # step id -> the targets the approver saw


def min_approvals(run: RunInput, gated: Sequence[StepBase]) -> int:
    """The playbook's minimum, raised by any gated write that asks for more."""
    asked = [s.min_approvals or 1 for s in gated if isinstance(s, WriteStep)]
    return max([run.playbook.min_approvals, *asked])


def gate_request(
    run: RunInput,
    records: Sequence[StepRecord],
    previewed: Sequence[tuple[StepRecord, bool]],
    gated: Sequence[StepBase],
    now: datetime,
) -> GateRequest:
    """What the approver sees: the alert, the diagnosis, and each previewed write (`True` where it is gated)."""
    playbook = run.playbook
    return GateRequest(
        run_id=run.run_id,
        playbook=playbook.name,
        alertname=run.alert.alertname,
        labels=dict(run.alert.labels),
        diagnosis=[f"{r.id}: {r.summary}" for r in records if r.phase == "diagnose" and r.summary],
        writes=[
            PlannedWrite(
                step=r.id,
                action=r.action,
                summary=r.summary,
                targets=list(r.targets),
                blast_radius=r.blast_radius,
                gated=needs,
            )
            for r, needs in previewed
        ],
        approvers=list(run.approvers),
        min_approvals=min_approvals(run, gated),
        expires_at=now + playbook.approval_timeout,
        opened_at=now,
    )


def approved_targets(previewed: Sequence[StepRecord]) -> dict[str, list[str]]:
    return {r.id: list(r.targets) for r in previewed}


def unapproved_targets(approved: Approved, record: StepRecord) -> list[str]:
    """Targets a re-diagnosed write would touch that nobody approved: any at all means no write."""
    return sorted(set(record.targets) - set(approved.get(record.id, [])))


def nothing_left(approved: Approved, record: StepRecord) -> bool:
    """An approved write whose targets are all fixed by now (it had some, and now has none)."""
    return bool(approved.get(record.id)) and not record.targets
