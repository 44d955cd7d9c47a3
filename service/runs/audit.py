"""The audit trail: what a run did, as records keyed so that writing the same snapshot twice adds nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from service.runs.listing import ListedRun, RunQuery
from service.runs.state import RunState
from service.vocabulary.redact import mask, worth_masking

AuditKind = Literal["run", "step", "decision", "refusal", "effectiveness", "shadow"]
RECORD_AUDIT = "record_audit"  # the activity that appends a run's snapshot to the audit store
FINAL = frozenset(
    {"succeeded", "failed", "rejected", "expired", "resolved_before_action", "blocked_by_policy", "cancelled"}
)
_STEP_DONE = frozenset({"ok", "failed", "skipped", "dry_run", "not_run"})


class AuditEvent(BaseModel):
    """One line of the trail: `key` is unique within one attempt of one run, so a repeated write is a no-op."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    attempt: int
    key: str
    kind: AuditKind
    at: datetime | None
    playbook: str
    record: dict[str, JsonValue] = Field(default_factory=dict)


class AuditSnapshot(BaseModel):
    """What the workflow sends: its state as of now; `seq` orders snapshots of one attempt (newer wins)."""

    seq: int
    state: RunState
    final: bool = Field(default=False, description="The run's last snapshot: it has ended (counted in metrics).")


@dataclass(frozen=True)
class AuditQuery:
    """Which records to export, oldest first: optionally one playbook, optionally since a time."""

    playbook: str | None = None
    since: datetime | None = None

    def where(
        self, time_column: str, mark: str, time: Callable[[datetime], object] = lambda t: t
    ) -> tuple[str, list[object]]:
        """The filters as ` AND …` SQL with the driver's placeholder `mark`, and their parameters in order;
        `time_column` is the store's own constant, never input."""
        sql, params = "", list[object]()
        if self.playbook:
            sql, params = f"{sql} AND playbook = {mark}", [*params, self.playbook]
        if self.since:
            sql, params = f"{sql} AND {time_column} >= {mark}", [*params, time(self.since)]
        return sql, params


class AuditStore(Protocol):
    """Where the trail lives beyond Temporal's retention (Postgres in production, SQLite under `remediate dev`)."""

    async def append(self, snapshot: AuditSnapshot, events: list[AuditEvent]) -> int:
        """Upsert the run (only a newer seq replaces it) and add the events not yet there; returns how many."""
        ...

    async def runs(self, query: RunQuery) -> list[ListedRun]:
        """Newest first, the filters and the cursor applied in the store (an index serves each filter)."""
        ...

    async def run(self, run_id: str) -> RunState | None:
        """The latest attempt of this run as last recorded."""
        ...

    async def waiting(self, limit: int = 1000) -> list[RunState]:
        """Runs last recorded at an open approval gate."""
        ...

    async def find(self, given: str, within: int = 1000) -> list[str]:
        """Run ids whose 8-digit short id is `given`, or that start with it."""
        ...

    def events(self, query: AuditQuery) -> AsyncIterator[AuditEvent]:
        """Oldest first, for export."""
        ...

    async def close(self) -> None: ...


def open_gates(waiting: list[RunState], now: datetime) -> list[datetime]:
    """When each still-open gate opened; a gate past its expiry (its run was cut short) no longer counts."""
    return [
        s.gate.request.opened_at or s.gate.request.expires_at
        for s in waiting
        if s.gate is not None and s.gate.status == "open" and s.gate.request.expires_at > now
    ]


def events_of(state: RunState) -> list[AuditEvent]:
    """Every record this state implies; keys depend only on what happened, so every snapshot yields the same ones."""
    found: list[AuditEvent] = []

    def add(key: str, kind: AuditKind, at: datetime | None, record: dict[str, JsonValue]) -> None:
        found.append(
            AuditEvent(
                run_id=state.run_id,
                attempt=state.attempt,
                key=key,
                kind=kind,
                at=at,
                playbook=state.playbook,
                record=record,
            )
        )

    add("run/received", "run", state.started_at, _run_record(state))
    for step in state.steps:
        if step.status in _STEP_DONE:
            at = step.started_at.isoformat() if step.started_at else "-"
            add(
                f"step/{step.phase}/{step.id}/{at}/{step.status}",
                "step",
                # a step never run has no time of its own: the run's (an export, oldest first, places it within)
                step.finished_at or step.started_at or state.finished_at or state.started_at,
                _jsonable(step.model_dump(mode="json", exclude={"result"} if step.effect == "write" else set())),
            )
    if state.gate is not None:
        for decision in state.gate.decisions:
            add(
                f"decision/{decision.decision_id}", "decision", decision.at, _jsonable(decision.model_dump(mode="json"))
            )
    if state.status == "blocked_by_policy":
        add("refusal", "refusal", state.finished_at, {"limit": state.limit, "reason": state.reason})
    if state.effectiveness not in (None, "checking"):
        add(f"effectiveness/{state.effectiveness}", "effectiveness", state.finished_at, {"result": state.effectiveness})
    if state.shadow is not None and state.shadow.verdict != "watching":
        watch = _jsonable(state.shadow.model_dump(mode="json"))
        add(f"shadow/{state.shadow.verdict}", "shadow", state.finished_at, watch)
    if state.status in FINAL:
        add(f"run/{state.status}", "run", state.finished_at, _run_record(state))
    return found


def _run_record(state: RunState) -> dict[str, JsonValue]:
    return _jsonable(
        {
            "status": state.status,
            "reason": state.reason,
            "alertname": state.alertname,
            "fingerprint": state.fingerprint,
            "labels": dict(state.labels),
            "mode": state.mode.value,
            "limit": state.limit,
            "caution": state.caution,
            "version": state.version.model_dump(mode="json") if state.version else None,
        }
    )


def _jsonable(value: object) -> dict[str, JsonValue]:
    loaded: dict[str, JsonValue] = json.loads(json.dumps(value, default=str))
    return loaded


class Scrubber:
    """Masks secrets before anything is stored: every known secret value, then whatever looks like a credential;
    a NUL becomes the text `\\u0000` (a label may hold one; the stores cannot)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = worth_masking(known)

    def text(self, value: str) -> str:
        # Postgres text and jsonb cannot hold NUL: it is stored as the visible escape `\u0000`, never dropped.
        return mask(value, self.known).replace("\x00", "\\u0000")

    def walk(self, value: Any) -> Any:
        """Every string inside a JSON-like value (dicts, lists, tuples), masked; one string at a time, so masking can
        never break the structure around a value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.walk(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.walk(v) for k, v in value.items()}
        return value

    def state(self, state: RunState) -> RunState:
        return RunState.model_validate(self.walk(state.model_dump(mode="json")))
