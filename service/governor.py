"""The governor's decisions as a pure state machine: kill switch, cooldowns, budgets, concurrency, storm and breaker.

One instance lives in one long-lived workflow per namespace and task queue (issue 11); this module holds only the
rules and the state they keep, so the workflow stays thin and every rule is tested without Temporal. Times are
passed in (the workflow's clock), never read here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.durations import Duration, written

HOUR = timedelta(hours=1)
Verdict = Literal["grant", "approval", "refuse"]


class Storm(BaseModel):
    """More new occurrences than `occurrences` within `within`: writes need approval until it is calm again."""

    model_config = ConfigDict(extra="forbid")

    occurrences: int = Field(ge=1, le=100_000)
    within: Duration = Field(le=timedelta(hours=24))


class Breaker(BaseModel):
    """This many ineffective runs in a row: writes need approval until someone resets the breaker."""

    model_config = ConfigDict(extra="forbid")

    ineffective: int = Field(ge=1, le=100)


class Limits(BaseModel):
    """What one playbook may do; unset fields mean no such limit (the service defaults fill them in)."""

    model_config = ConfigDict(extra="forbid")

    cooldown: Duration | None = Field(default=None, le=timedelta(hours=24))
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


class Grant(BaseModel):
    """A write-run counted against the hourly budgets; refunded if the run ends without writing."""

    playbook: str
    key: str
    at: datetime


class Cooldown(BaseModel):
    """The last write-run for one cooldown key, and which run it was (that run may ask again)."""

    at: datetime
    run_id: str


class Answer(BaseModel):
    """A grant, a grant that needs a human first (storm, breaker), or a refusal naming the limit and when it frees."""

    verdict: Verdict
    reason: str = ""
    limit: str = ""
    frees_at: datetime | None = None


class PlaybookState(BaseModel):
    """What the governor remembers of one playbook."""

    occurrences: list[datetime] = Field(default_factory=list, description="New occurrences in the storm window.")
    storming: bool = False
    cooldowns: dict[str, Cooldown] = Field(default_factory=dict, description="Cooldown key -> its last write-run.")
    ineffective_in_a_row: int = 0
    breaker_open: bool = False
    switch: Switch = Field(default_factory=Switch)


class GovernorState(BaseModel):
    """Everything the governor carries across continue-as-new: plain data, so the state after equals before."""

    switch: Switch = Field(default_factory=Switch)
    leases: dict[str, Lease] = Field(default_factory=dict, description="Run id -> its lease.")
    grants: dict[str, Grant] = Field(default_factory=dict, description="Run id -> its write-run, last hour.")
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
        self.state.grants = {run: g for run, g in self.state.grants.items() if now - HOUR < g.at <= now}
        for state in self.state.playbooks.values():  # cooldowns are at most a day long
            state.cooldowns = {k: c for k, c in state.cooldowns.items() if now - c.at < timedelta(hours=24)}

    def set_switch(self, on: bool, by: str, reason: str, now: datetime, playbook: str | None = None) -> Switch:
        switch = Switch(on=on, by=by, at=now, reason=reason)
        if playbook is None:
            self.state.switch = switch
        else:
            self._playbook(playbook).switch = switch
        return switch

    def occurred(self, playbook: str, now: datetime, limits: Limits) -> bool:
        """A new occurrence of an alert this playbook handles; True when this one starts a storm."""
        state = self._playbook(playbook)
        window = limits.storm.within if limits.storm else HOUR
        state.occurrences = [*_recent(state.occurrences, now, window), now][-100_000:]
        storming = limits.storm is not None and len(state.occurrences) > limits.storm.occurrences
        started = storming and not state.storming
        state.storming = storming
        return started

    def ask(
        self,
        run_id: str,
        playbook: str,
        key: str,
        now: datetime,
        limits: Limits,
        max_writes_per_hour: int | None = None,
    ) -> Answer:
        """May this run write now? The same run asking again renews its lease and is counted once."""
        self._expire(now)
        if max_writes_per_hour is not None:
            self.state.max_writes_per_hour = max_writes_per_hour
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
        returning = run_id in self.state.grants  # counted already; its lease ran out (a long approval wait)
        refusal = (
            self._concurrency(playbook, limits) if returning else self._refusal(run_id, playbook, key, now, limits)
        )
        if refusal is not None:
            return refusal
        answer = self._caution(playbook, now, limits, state)
        self.state.leases[run_id] = Lease(playbook=playbook, key=key, granted_at=now, until=now + self.lease)
        if not returning:
            self.state.grants[run_id] = Grant(playbook=playbook, key=key, at=now)
            state.cooldowns[key] = Cooldown(at=now, run_id=run_id)
        return answer

    def _refusal(self, run_id: str, playbook: str, key: str, now: datetime, limits: Limits) -> Answer | None:
        last = self._playbook(playbook).cooldowns.get(key)
        if (
            limits.cooldown is not None
            and last is not None
            and last.run_id != run_id
            and now - last.at < limits.cooldown
        ):
            return Answer(
                verdict="refuse",
                limit="cooldown",
                reason=f"cooldown {written(limits.cooldown)} for {key!r}: run {last.run_id} wrote at "
                f"{last.at.isoformat()}",
                frees_at=last.at + limits.cooldown,
            )
        recent = [g.at for g in self.state.grants.values() if g.playbook == playbook]
        if limits.max_runs_per_hour is not None and len(recent) >= limits.max_runs_per_hour:
            return Answer(
                verdict="refuse",
                limit="max_runs_per_hour",
                reason=f"{len(recent)} write-runs of {playbook} in the last hour (max_runs_per_hour "
                f"{limits.max_runs_per_hour})",
                frees_at=min(recent) + HOUR,
            )
        refusal = self._concurrency(playbook, limits)
        if refusal is not None:
            return refusal
        cap, writes = self.state.max_writes_per_hour, [g.at for g in self.state.grants.values()]
        if cap is not None and len(writes) >= cap:
            return Answer(
                verdict="refuse",
                limit="max_writes_per_hour",
                reason=f"{len(writes)} write-runs in the last hour (REMEDIATE_MAX_WRITES_PER_HOUR {cap})",
                frees_at=min(writes) + HOUR,
            )
        return None

    def _concurrency(self, playbook: str, limits: Limits) -> Answer | None:
        acting = [lease for lease in self.state.leases.values() if lease.playbook == playbook]
        if limits.max_concurrent is not None and len(acting) >= limits.max_concurrent:
            return Answer(
                verdict="refuse",
                limit="max_concurrent",
                reason=f"{len(acting)} run(s) of {playbook} acting now (max_concurrent {limits.max_concurrent})",
                frees_at=min(lease.until for lease in acting),
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
                    reason=f"{len(seen)} new occurrences within {written(limits.storm.within)} (storm above "
                    f"{limits.storm.occurrences}): writes need approval until it is calm",
                )
        return Answer(verdict="grant")

    def release(self, run_id: str, wrote: bool = True) -> None:
        """The run ended: it no longer counts as acting; a run that wrote nothing gets its budget back."""
        self.state.leases.pop(run_id, None)
        if wrote:
            return
        grant = self.state.grants.pop(run_id, None)
        if grant is not None:
            cooldowns = self._playbook(grant.playbook).cooldowns
            if (held := cooldowns.get(grant.key)) is not None and held.run_id == run_id:
                del cooldowns[grant.key]

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
