"""The governor's decisions as a pure state machine: kill switch, cooldowns, budgets, concurrency, storm and breaker.

One instance lives in one long-lived workflow per namespace and task queue (issue 11); this module holds only the
rules and the state they keep, so the workflow stays thin and every rule is tested without Temporal. Times are
passed in (the workflow's clock), never read here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HOUR = timedelta(hours=1)
Verdict = Literal["grant", "approval", "refuse"]


class Storm(BaseModel):
    """More new occurrences than `occurrences` within `within`: writes need approval until it is calm again."""

    model_config = ConfigDict(extra="forbid")

    occurrences: int = Field(ge=1, le=100_000)
    within: timedelta


class Breaker(BaseModel):
    """This many ineffective runs in a row: writes need approval until someone resets the breaker."""

    model_config = ConfigDict(extra="forbid")

    ineffective: int = Field(ge=1, le=100)


class Limits(BaseModel):
    """What one playbook may do; unset fields mean no such limit (the service defaults fill them in)."""

    model_config = ConfigDict(extra="forbid")

    cooldown: timedelta | None = None
    max_runs_per_hour: int | None = Field(default=None, ge=1, le=10_000)
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    storm: Storm | None = None
    breaker: Breaker | None = None


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


class Answer(BaseModel):
    """A grant, a grant that needs a human first (storm, breaker), or a refusal naming the limit and when it frees."""

    verdict: Verdict
    reason: str = ""
    limit: str = ""
    frees_at: datetime | None = None


class PlaybookState(BaseModel):
    """What the governor remembers of one playbook."""

    write_runs: list[datetime] = Field(default_factory=list, description="First grants in the last hour.")
    occurrences: list[datetime] = Field(default_factory=list, description="New occurrences in the storm window.")
    cooldowns: dict[str, datetime] = Field(default_factory=dict, description="Cooldown key -> its last write-run.")
    ineffective_in_a_row: int = 0
    breaker_open: bool = False
    switch: Switch = Field(default_factory=Switch)


class GovernorState(BaseModel):
    """Everything the governor carries across continue-as-new: plain data, so the state after equals before."""

    switch: Switch = Field(default_factory=Switch)
    leases: dict[str, Lease] = Field(default_factory=dict, description="Run id -> its lease.")
    writes: list[datetime] = Field(default_factory=list, description="Write grants in the last hour, all playbooks.")
    playbooks: dict[str, PlaybookState] = Field(default_factory=dict)
    max_writes_per_hour: int | None = None


def _recent(times: list[datetime], now: datetime, window: timedelta) -> list[datetime]:
    return [t for t in times if now - window < t <= now]


class Governor:
    """Applies the rules to a state; every method takes `now` and changes only `state`."""

    def __init__(self, state: GovernorState | None = None, lease: timedelta = timedelta(minutes=10)) -> None:
        self.state, self.lease = state or GovernorState(), lease

    def _playbook(self, name: str) -> PlaybookState:
        return self.state.playbooks.setdefault(name, PlaybookState())

    def _expire(self, now: datetime) -> None:
        self.state.leases = {run: lease for run, lease in self.state.leases.items() if lease.until > now}
        self.state.writes = _recent(self.state.writes, now, HOUR)

    def set_switch(self, on: bool, by: str, reason: str, now: datetime, playbook: str | None = None) -> Switch:
        switch = Switch(on=on, by=by, at=now, reason=reason)
        if playbook is None:
            self.state.switch = switch
        else:
            self._playbook(playbook).switch = switch
        return switch

    def occurred(self, playbook: str, now: datetime, limits: Limits) -> None:
        """A new occurrence of an alert this playbook handles (the storm counts these)."""
        state = self._playbook(playbook)
        window = limits.storm.within if limits.storm else HOUR
        state.occurrences = [*_recent(state.occurrences, now, window), now][-100_000:]

    def ask(self, run_id: str, playbook: str, key: str, now: datetime, limits: Limits) -> Answer:
        """May this run write now? The same run asking again renews its lease and is counted once."""
        self._expire(now)
        state = self._playbook(playbook)
        for switch, scope in ((self.state.switch, "everything"), (state.switch, f"playbook {playbook}")):
            if switch.on:
                return Answer(
                    verdict="refuse",
                    limit="kill_switch",
                    reason=f"the kill switch is on for {scope} (set by {switch.by}: {switch.reason or 'no reason'})",
                )
        held = self.state.leases.get(run_id)
        if held is not None:
            held.until = now + self.lease
            return Answer(verdict="grant", reason="lease renewed")
        refusal = self._refusal(playbook, key, now, limits, state)
        if refusal is not None:
            return refusal
        answer = self._caution(playbook, now, limits, state)
        self.state.leases[run_id] = Lease(playbook=playbook, key=key, granted_at=now, until=now + self.lease)
        state.write_runs = [*_recent(state.write_runs, now, HOUR), now]
        state.cooldowns[key] = now
        self.state.writes.append(now)
        return answer

    def _refusal(self, playbook: str, key: str, now: datetime, limits: Limits, state: PlaybookState) -> Answer | None:
        last = state.cooldowns.get(key)
        if limits.cooldown is not None and last is not None and now - last < limits.cooldown:
            return Answer(
                verdict="refuse",
                limit="cooldown",
                reason=f"cooldown {limits.cooldown} for {key!r}: it last wrote at {last.isoformat()}",
                frees_at=last + limits.cooldown,
            )
        recent = _recent(state.write_runs, now, HOUR)
        if limits.max_runs_per_hour is not None and len(recent) >= limits.max_runs_per_hour:
            return Answer(
                verdict="refuse",
                limit="max_runs_per_hour",
                reason=f"{len(recent)} write-runs of {playbook} in the last hour (max_runs_per_hour "
                f"{limits.max_runs_per_hour})",
                frees_at=min(recent) + HOUR,
            )
        acting = [lease for lease in self.state.leases.values() if lease.playbook == playbook]
        if limits.max_concurrent is not None and len(acting) >= limits.max_concurrent:
            return Answer(
                verdict="refuse",
                limit="max_concurrent",
                reason=f"{len(acting)} run(s) of {playbook} acting now (max_concurrent {limits.max_concurrent})",
                frees_at=min(lease.until for lease in acting),
            )
        cap = self.state.max_writes_per_hour
        if cap is not None and len(self.state.writes) >= cap:
            return Answer(
                verdict="refuse",
                limit="max_writes_per_hour",
                reason=f"{len(self.state.writes)} write-runs in the last hour (REMEDIATE_MAX_WRITES_PER_HOUR {cap})",
                frees_at=min(self.state.writes) + HOUR,
            )
        return None

    def _caution(self, playbook: str, now: datetime, limits: Limits, state: PlaybookState) -> Answer:
        if state.breaker_open:
            return Answer(
                verdict="approval",
                limit="breaker",
                reason=f"{state.ineffective_in_a_row} ineffective run(s) in a row: writes need approval until "
                f"`remediate breaker reset {playbook}`",
            )
        if limits.storm is not None:
            seen = _recent(state.occurrences, now, limits.storm.within)
            if len(seen) > limits.storm.occurrences:
                return Answer(
                    verdict="approval",
                    limit="storm",
                    reason=f"{len(seen)} new occurrences within {limits.storm.within} (storm above "
                    f"{limits.storm.occurrences}): writes need approval until it is calm",
                )
        return Answer(verdict="grant")

    def release(self, run_id: str) -> None:
        """The run ended (or stopped writing): it no longer counts as acting."""
        self.state.leases.pop(run_id, None)

    def effectiveness(
        self, playbook: str, result: Literal["effective", "ineffective", "unknown"], limits: Limits
    ) -> bool:
        """Record a run's effectiveness; True when this result opened the breaker."""
        state = self._playbook(playbook)
        if result == "effective":
            state.ineffective_in_a_row = 0
            return False
        if result == "ineffective":
            state.ineffective_in_a_row += 1
            if limits.breaker and state.ineffective_in_a_row >= limits.breaker.ineffective and not state.breaker_open:
                state.breaker_open = True
                return True
        return False

    def reset_breaker(self, playbook: str) -> None:
        state = self._playbook(playbook)
        state.breaker_open, state.ineffective_in_a_row = False, 0
