"""The governor's decisions as a pure state machine: cooldowns, hourly limits, concurrency, the line, storm, breaker.

One instance lives in one long-lived workflow per playbook (a shard, issue 21); this module holds only the rules and
the state they keep, so the workflow stays thin and every rule is tested without Temporal. The global hourly budget
is not here: workers hold it in leased blocks (service/rails/budget.py) and say with each ask whether they hold a unit.
Times are passed in (the workflow's clock), never read here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from service.rails.governor_state import (
    HOUR,
    REPORTED,
    TOLD_AGAIN,
    WAIT_STALE,
    Answer,
    Cooldown,
    GovernorState,
    Grant,
    Lease,
    Limits,
    PlaybookState,
    Switch,
    Waiting,
)
from service.vocabulary.durations import written


def _recent(times: list[datetime], now: datetime, window: timedelta) -> list[datetime]:
    return [t for t in times if now - window < t <= now]


class Governor:
    """Applies the rules to a state; every method takes `now` and changes only `state`."""

    def __init__(self, state: GovernorState | None = None, lease: timedelta = timedelta(minutes=10)) -> None:
        self.state, self.lease = state or GovernorState(), lease
        self._expired_at: datetime | None = None
        self._told: dict[str, datetime] = {}  # runs told their turn came (a hint, not state: lost on continue)

    def _playbook(self, name: str) -> PlaybookState:
        return self.state.playbooks.setdefault(name, PlaybookState())

    def _expire(self, now: datetime) -> None:
        if now == self._expired_at:  # a batch is decided at one instant: once is enough
            return
        self._expired_at = now
        self.state.leases = {run: lease for run, lease in self.state.leases.items() if lease.until > now}
        self.state.grants = {run: g for run, g in self.state.grants.items() if now - HOUR < g.at <= now}
        self.state.waiting = {run: w for run, w in self.state.waiting.items() if now - w.seen < WAIT_STALE}
        for state in self.state.playbooks.values():  # cooldowns are at most a day long
            state.cooldowns = {
                k: c
                for k, c in state.cooldowns.items()
                if now - c.at < timedelta(hours=24) and (c.until is None or now < c.until)
            }

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
        unit: datetime | bool | None = None,
        since: datetime | None = None,
        budget_frees_at: datetime | None = None,
    ) -> Answer:
        """May this run write now? The same run asking again renews its lease and is counted once.

        `unit` is the global budget: None when there is none, the end of the block when the asking worker holds a
        unit for this run (spent if the answer is `counted`; a unit past its block's end is none), False when the
        budget is spent until `budget_frees_at`. `since` is when the run first asked, so a run keeps its place in
        line however long it waited."""
        self._expire(now)
        self._told.pop(run_id, None)
        if isinstance(unit, datetime) and now >= unit:
            unit = False  # its block has ended: the keeper may have counted it as spent at its end, not now
        state = self._playbook(playbook)
        for switch, scope in ((self.state.switch, "everything"), (state.switch, f"playbook {playbook}")):
            if switch.on:
                self.state.waiting.pop(run_id, None)
                return Answer(
                    verdict="refuse",
                    limit="kill_switch",
                    reason=f"the kill switch is on for {scope} (set by {switch.by}: {switch.reason or 'no reason'})",
                )
        held = self.state.leases.get(run_id)
        if held is not None:
            held.until = now + self.lease
            return Answer(verdict="grant", reason="lease renewed")
        returning = run_id in self.state.grants  # counted already; it paused for a person, or its lease ran out
        if not returning and (refusal := self._cooldown(run_id, playbook, key, now, limits)) is not None:
            self.state.waiting.pop(run_id, None)
            return refusal
        full = self._full(run_id, playbook, now, limits, returning, since or now)
        if full is None and not returning and unit is False:
            full = Answer(
                verdict="refuse",
                limit="max_writes_per_hour",
                reason="the global budget (REMEDIATE_MAX_WRITES_PER_HOUR) is spent for this hour",
                frees_at=budget_frees_at,
            )
        if full is not None:
            return self._line_up(run_id, playbook, now, limits, full, since or now)
        self.state.waiting.pop(run_id, None)
        answer = self._caution(playbook, now, limits, state)
        self.state.leases[run_id] = Lease(playbook=playbook, key=key, granted_at=now, until=now + self.lease)
        if not returning:
            self.state.grants[run_id] = Grant(playbook=playbook, key=key, at=now)
            if limits.cooldown is not None:  # kept only as long as it counts: the carried state stays small
                state.cooldowns[key] = Cooldown(at=now, run_id=run_id, until=now + limits.cooldown)
            answer.counted = True
        return answer

    def _line_up(
        self, run_id: str, playbook: str, now: datetime, limits: Limits, full: Answer, since: datetime
    ) -> Answer:
        """Over a limit a run may wait out: it keeps (or takes) its place in line, or is refused if it may not wait."""
        if not limits.waits():
            self.state.waiting.pop(run_id, None)
            return full
        mine = self.state.waiting.get(run_id)
        if mine is None:
            mine = self.state.waiting[run_id] = Waiting(playbook=playbook, since=since, seen=now)
        mine.seen = now
        place = 1 + len(self._ahead(run_id, playbook, mine.since))
        return full.model_copy(
            update={"verdict": "wait", "place": place, "reason": f"{full.reason}; place {place} in line"}
        )

    def _ahead(self, run_id: str, playbook: str, since: datetime) -> list[str]:
        """Runs of this playbook waiting since before this one: their turn comes first."""
        return [
            other
            for other, w in self.state.waiting.items()
            if other != run_id and w.playbook == playbook and (w.since, other) < (since, run_id)
        ]

    def _cooldown(self, run_id: str, playbook: str, key: str, now: datetime, limits: Limits) -> Answer | None:
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
        return None

    def _full(
        self, run_id: str, playbook: str, now: datetime, limits: Limits, returning: bool, since: datetime
    ) -> Answer | None:
        """The first limit with no slot left for this run, counting the runs waiting ahead of it as taking theirs."""
        ahead = len(self._ahead(run_id, playbook, since)) if limits.waits() else 0
        acting = [lease for lease in self.state.leases.values() if lease.playbook == playbook]
        if limits.max_concurrent is not None and len(acting) + ahead >= limits.max_concurrent:
            return Answer(
                verdict="refuse",
                limit="max_concurrent",
                reason=f"{len(acting)} run(s) of {playbook} acting now (max_concurrent {limits.max_concurrent})",
                frees_at=min((lease.until for lease in acting), default=None),
            )
        recent = [g.at for g in self.state.grants.values() if g.playbook == playbook]
        if not returning and limits.max_runs_per_hour is not None and len(recent) + ahead >= limits.max_runs_per_hour:
            return Answer(
                verdict="refuse",
                limit="max_runs_per_hour",
                reason=f"{len(recent)} write-runs of {playbook} in the last hour (max_runs_per_hour "
                f"{limits.max_runs_per_hour})",
                frees_at=min(recent, default=now) + HOUR,
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

    def still_waiting(self, run_id: str, now: datetime) -> bool:
        """A waiting run is still there: its place does not lapse. What a poll whose answer cannot have changed
        does (replay's runs ask again only when an answer can change); False when it has no place."""
        mine = self.state.waiting.get(run_id)
        if mine is None or now - mine.seen >= WAIT_STALE:
            return False
        mine.seen = now
        return True

    def next_in_line(self, playbook: str, now: datetime) -> str | None:
        """A slot of this playbook has just freed: the first run waiting for it, not told so in the last TOLD_AGAIN,
        which should ask now rather than at its next poll. Only a hint: its ask decides, as every ask does."""
        self._told = {run: at for run, at in self._told.items() if now - at < TOLD_AGAIN and run in self.state.waiting}
        line = [(w.since, run) for run, w in self.state.waiting.items() if w.playbook == playbook]
        first = min((entry for entry in line if entry[1] not in self._told), default=None)
        if first is None:
            return None
        self._told[first[1]] = now
        return first[1]

    def release(self, run_id: str, wrote: bool = True) -> bool:
        """The run ended (or waits for a person): it no longer counts as acting, nor waits in line; a run that wrote
        nothing gets its hourly slot and cooldown back. True when a counted write-run was refunded."""
        self.state.leases.pop(run_id, None)
        self.state.waiting.pop(run_id, None)
        if wrote:
            return False
        grant = self.state.grants.pop(run_id, None)
        if grant is None:
            return False
        cooldowns = self._playbook(grant.playbook).cooldowns
        if (held := cooldowns.get(grant.key)) is not None and held.run_id == run_id:
            del cooldowns[grant.key]
        return True

    def effectiveness(
        self, playbook: str, result: Literal["effective", "ineffective", "unknown"], limits: Limits, run_id: str = ""
    ) -> bool:
        """Record a run's effectiveness, once per run (a batch sent again after a lost answer counts nothing twice);
        True when this result opened the breaker."""
        state = self._playbook(playbook)
        if run_id:
            if run_id in state.reported:
                return False
            state.reported = [*state.reported, run_id][-REPORTED:]
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
