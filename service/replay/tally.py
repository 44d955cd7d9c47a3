"""What replay counts as history streams past, and its report: per playbook, per hour, and what fell through."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from service.alerts.webhook import Alert
from service.replay.planning import Plan

Outcome = Literal["acted", "refused", "resolved_while_waiting", "still_waiting", "read_only", "failed", "off"]
_HOUR = 3600


@dataclass
class RunResult:
    """How one replayed run ended."""

    playbook: str
    at: datetime
    outcome: Outcome
    limit: str = ""
    approval: str = ""
    plan: Plan | None = None
    reason: str = ""
    waited: float = 0.0


class Hour(BaseModel):
    """One hour of one playbook's timeline (only hours where something happened are kept)."""

    start: datetime
    occurrences: int = 0
    acted: int = 0
    refused: int = 0


class PlaybookReport(BaseModel):
    """What one playbook would have done over the history."""

    name: str
    occurrences: int = Field(default=0, description="New occurrences: runs started (one per occurrence).")
    duplicates: int = Field(default=0, description="Deliveries of an occurrence that already had its run.")
    outcomes: dict[str, int] = Field(default_factory=dict, description="Runs by how they ended.")
    writes_planned: int = 0
    targets_bound: int = Field(default=0, description="Targets the writes could touch: caps, or the targets read.")
    approvals: dict[str, int] = Field(default_factory=dict, description="Runs a person would have been asked for.")
    refusals: dict[str, int] = Field(default_factory=dict, description="Runs refused, by the rail that refused.")
    storms: int = 0
    breaker_trips: int = 0
    waited_seconds: float = Field(default=0.0, description="Time runs spent waiting for a turn, in all.")
    busiest_hour: Hour | None = None
    timeline: list[Hour] = Field(default_factory=list)


class Unhandled(BaseModel):
    """Alerts that reached remediate and that no playbook matched (with the rule's runbook, when it names one)."""

    alertname: str
    alerts: int
    runbook_url: str = ""
    automated_by: list[str] = Field(
        default_factory=list, description="Playbooks whose `runbook` is that runbook_url: their match missed it."
    )


class Overlap(BaseModel):
    """Alerts two or more playbooks matched: each would start its own run."""

    alertname: str
    playbooks: list[str]
    alerts: int


class ReplayReport(BaseModel):
    """The whole replay: its inputs and assumptions, then each playbook."""

    source: str
    mode: str
    reads: str
    acting_for_seconds: float
    first: datetime | None = None
    last: datetime | None = None
    messages: int = 0
    alerts: int = 0
    playbooks: list[PlaybookReport] = Field(default_factory=list)
    unmatched: list[Unhandled] = Field(default_factory=list)
    overlaps: list[Overlap] = Field(default_factory=list)
    not_routed: dict[str, int] = Field(
        default_factory=dict, description="Per playbook: alerts it matches that the route never sends to remediate."
    )


@dataclass
class _Playbook:
    report: PlaybookReport
    outcomes: Counter[str] = field(default_factory=Counter)
    approvals: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    hours: dict[int, Hour] = field(default_factory=dict)

    def hour(self, at: datetime) -> Hour:
        index = int(at.timestamp()) // _HOUR
        found = self.hours.get(index)
        if found is None:
            found = self.hours[index] = Hour(start=datetime.fromtimestamp(index * _HOUR, UTC))
        return found


class Tally:
    """Counts as the simulation reports; memory grows with playbooks and hours, never with alerts."""

    def __init__(
        self, playbooks: list[str], report: ReplayReport, runbooks: dict[str, list[str]] | None = None
    ) -> None:
        self._report, self._runbooks = report, runbooks or {}
        self._playbooks = {name: _Playbook(PlaybookReport(name=name)) for name in playbooks}
        self._unmatched: dict[str, list[int | str]] = {}
        self._overlaps: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self._not_routed: Counter[str] = Counter()
        self._fingerprints: dict[tuple[str, int], None] = {}

    def _of(self, name: str) -> _Playbook:
        return self._playbooks.setdefault(name, _Playbook(PlaybookReport(name=name)))

    def message(self, at: datetime) -> None:
        self._report.messages += 1
        self._report.first = self._report.first or at
        self._report.last = at

    def matched(self, alert: Alert, playbooks: list[str]) -> None:
        """One alert of a message: counted once per occurrence (Alertmanager sends an alert again and again)."""
        if alert.status != "firing":
            return
        occurrence = alert.occurrence_key()
        if occurrence in self._fingerprints:
            return
        self._fingerprints[occurrence] = None
        if len(self._fingerprints) > 200_000:  # bounded: the oldest occurrences are long past
            for old in list(self._fingerprints)[:100_000]:
                del self._fingerprints[old]
        self._report.alerts += 1
        if not playbooks:
            entry = self._unmatched.setdefault(alert.alertname, [0, alert.annotations.get("runbook_url", "")])
            entry[0] = int(entry[0]) + 1
        elif len(playbooks) > 1:
            self._overlaps[(alert.alertname, tuple(sorted(playbooks)))] += 1

    def not_routed(self, playbooks: list[str]) -> None:
        for name in playbooks:
            self._not_routed[name] += 1

    def duplicate(self, name: str) -> None:
        self._of(name).report.duplicates += 1

    def occurrence(self, at: datetime, name: str) -> None:
        playbook = self._of(name)
        playbook.report.occurrences += 1
        playbook.hour(at).occurrences += 1

    def storm(self, at: datetime, name: str) -> None:
        self._of(name).report.storms += 1

    def breaker(self, at: datetime, name: str) -> None:
        self._of(name).report.breaker_trips += 1

    def ran(self, result: RunResult) -> None:
        playbook = self._of(result.playbook)
        playbook.outcomes[result.outcome] += 1
        playbook.report.waited_seconds += result.waited
        if result.outcome == "acted" and result.plan is not None:
            playbook.report.writes_planned += result.plan.writes
            playbook.report.targets_bound += result.plan.targets
            playbook.hour(result.at).acted += 1
            if result.approval:
                playbook.approvals[result.approval] += 1
        if result.outcome == "refused":
            playbook.refusals[result.limit or "unknown"] += 1
            playbook.hour(result.at).refused += 1

    def close(self, at: datetime) -> None:
        self._report.last = max(self._report.last or at, at)

    def report(self) -> ReplayReport:
        """The report as it stands; the timeline hours in order, the busiest one named."""
        playbooks = []
        for name in sorted(self._playbooks):
            p = self._playbooks[name]
            timeline = [p.hours[i] for i in sorted(p.hours)]
            busiest = max(timeline, key=lambda h: (h.occurrences, -h.start.timestamp()), default=None)
            playbooks.append(
                p.report.model_copy(
                    update={
                        "outcomes": dict(p.outcomes),
                        "approvals": dict(p.approvals),
                        "refusals": dict(p.refusals),
                        "timeline": timeline,
                        "busiest_hour": busiest,
                    }
                )
            )
        return self._report.model_copy(
            update={
                "playbooks": playbooks,
                "unmatched": [
                    Unhandled(
                        alertname=name,
                        alerts=int(count),
                        runbook_url=str(url),
                        automated_by=self._runbooks.get(str(url), []) if url else [],
                    )
                    for name, (count, url) in sorted(self._unmatched.items())
                ],
                "overlaps": [
                    Overlap(alertname=name, playbooks=list(names), alerts=count)
                    for (name, names), count in sorted(self._overlaps.items())
                ],
                "not_routed": dict(self._not_routed),
            }
        )
