"""The governor's rules as a pure state machine: stateful properties over generated sequences of events."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.rails.budget import Budget, BudgetState, Purse
from service.rails.governor import Governor
from service.rails.governor_state import HOUR, PACED, TOLD_AGAIN, Breaker, GovernorState, Limits, Storm

START = datetime(2026, 12, 1, tzinfo=UTC)
LIMITS = {
    "a": Limits(cooldown=timedelta(minutes=30), max_runs_per_hour=3, max_concurrent=2),
    "b": Limits(
        max_concurrent=1,
        storm=Storm(occurrences=3, within=timedelta(minutes=5)),
        breaker=Breaker(ineffective=2),
        on_limit="refuse",
    ),
}
WORKERS = ["w1", "w2"]
CAP = 5
T = TypeVar("T")
EXAMPLES = int(os.environ.get("GOVERNOR_EXAMPLES", "200"))  # CI; GOVERNOR_EXAMPLES=10000 takes about 100 s


class GovernorMachine(RuleBasedStateMachine):
    """Drives one governor shard per playbook and the global budget lent to two workers' purses with alerts, asks
    (some answers lost on the way back), releases, settlements, killed workers, clock jumps, kill-switch flips,
    continue-as-new and worker restarts (replay); checks every grant against the limits from its own record of what
    was granted, never from the governor's state."""

    def __init__(self) -> None:
        super().__init__()
        self.shards = {name: Governor(lease=timedelta(minutes=10)) for name in LIMITS}
        self.budget = Budget()
        self.purses = {worker: Purse() for worker in WORKERS}
        # What a worker restart replays: each shard's state at its last continue-as-new and every call since.
        self.base = {name: g.state.model_copy(deep=True) for name, g in self.shards.items()}
        self.log: dict[str, list[Callable[[Governor], object]]] = {name: [] for name in LIMITS}
        self.now = START
        self.first_grants: list[tuple[datetime, str, str, str]] = []  # (at, playbook, key, run)
        self.switch_on = False
        self.blocks = 0

    def apply(self, playbook: str, call: Callable[[Governor], T]) -> T:
        self.log[playbook].append(call)
        return call(self.shards[playbook])

    def _unit(self, worker: str) -> str | None:
        purse = self.purses[worker]
        taken = purse.take(self.now)
        if taken is None:
            self.blocks += 1
            purse.add(self.budget.lend(worker, f"{worker}-{self.blocks}", 2, CAP, self.now).block)
            taken = purse.take(self.now)
        return taken

    @rule(
        run=st.integers(0, 8),
        playbook=st.sampled_from(["a", "b"]),
        key=st.sampled_from(["k1", "k2"]),
        worker=st.sampled_from(WORKERS),
        lost=st.booleans(),
    )
    def ask(self, run: int, playbook: str, key: str, worker: str, lost: bool) -> None:
        run_id = f"{playbook}/{run}"
        state = self.shards[playbook].state
        live = run_id in state.leases and state.leases[run_id].until > self.now
        counted = run_id in state.grants and self.now - HOUR < state.grants[run_id].at
        held = live or counted  # a run already counted is not a new write-run
        purse, block = self.purses[worker], self._unit(worker)
        unit: datetime | bool = purse.blocks[block].until if block else False
        now = self.now
        answer = self.apply(playbook, lambda g: g.ask(run_id, playbook, key, now, LIMITS[playbook], unit, now))
        event(f"{answer.verdict} {answer.limit}")
        if block is not None:  # a lost answer may have been counted: the purse takes it as spent
            (purse.spend(block, run_id, now) if answer.counted or lost else purse.put_back(block))
        if self.switch_on:
            assert answer.verdict == "refuse" and answer.limit == "kill_switch"
            return
        assert answer.counted == (answer.verdict in ("grant", "approval") and not held)
        if answer.counted:
            self.first_grants.append((self.now, playbook, key, run_id))
        if answer.verdict == "wait":
            assert LIMITS[playbook].waits() and answer.limit in PACED and answer.place >= 1
        if answer.verdict in ("refuse", "wait"):
            assert answer.reason and answer.limit
            assert answer.frees_at is None or answer.frees_at > self.now

    @rule(run=st.integers(0, 8), playbook=st.sampled_from(["a", "b"]), wrote=st.booleans(), w=st.sampled_from(WORKERS))
    def release(self, run: int, playbook: str, wrote: bool, w: str) -> None:
        run_id = f"{playbook}/{run}"
        refunded = self.apply(playbook, lambda g: g.release(run_id, wrote))
        recent = any(g[3] == run_id for g in self.first_grants if self.now - HOUR < g[0])
        assert refunded or wrote or not recent  # a write-run of the last hour that wrote nothing is given back
        assert not refunded or any(g[3] == run_id for g in self.first_grants)
        if refunded:  # a run that wrote nothing gives its budget back: it no longer counts as a write-run
            last = max(i for i, g in enumerate(self.first_grants) if g[3] == run_id)
            del self.first_grants[last]
            self.purses[w].refund(run_id)

    @rule(worker=st.sampled_from(WORKERS), idle=st.booleans())
    def settle(self, worker: str, idle: bool) -> None:
        for settlement in self.purses[worker].due(self.now, idle):
            self.budget.settle(settlement, self.now)

    @rule(worker=st.sampled_from(WORKERS))
    def worker_killed(self, worker: str) -> None:
        """A worker dies with its blocks: nothing it held is settled; its runs ask again from the other one."""
        self.purses[worker] = Purse()

    @rule(playbook=st.sampled_from(["a", "b"]))
    def occurrence(self, playbook: str) -> None:
        now = self.now
        self.apply(playbook, lambda g: g.occurred(playbook, now, LIMITS[playbook]))

    @rule(playbook=st.sampled_from(["a", "b"]))
    def told_next_in_line(self, playbook: str) -> None:
        now = self.now
        told = self.apply(playbook, lambda g: g.next_in_line(playbook, now))
        assert told is None or told in self.apply(playbook, lambda g: g.state.waiting)  # a hint names a waiting run

    @rule(seconds=st.sampled_from([1, 10, 30, 120, 600, 1800, 3600, 7200]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(on=st.booleans(), playbook=st.sampled_from([None, "a", "b"]))
    def kill_switch(self, on: bool, playbook: str | None) -> None:
        """The switch a shard of an earlier release still held (the board is tested on its own)."""
        if playbook is None:  # the property checks the global switch; per-playbook ones are flipped too
            self.switch_on = on
        now = self.now
        for name in LIMITS if playbook is None else [playbook]:
            self.apply(name, lambda g: g.set_switch(on, "oncall", "test", now, playbook))

    @rule(result=st.sampled_from(["effective", "ineffective", "unknown"]))
    def effectiveness(self, result: str) -> None:
        self.apply("b", lambda g: g.effectiveness("b", result, LIMITS["b"]))  # type: ignore[arg-type]

    @rule()
    def reset(self) -> None:
        self.apply("b", lambda g: g.reset_breaker("b"))

    @rule(playbook=st.sampled_from(["a", "b"]))
    def continue_as_new(self, playbook: str) -> None:
        """A shard carries its state across continue-as-new (and a worker restart replays it) as JSON; so does the
        budget's keeper."""
        carried = GovernorState.model_validate_json(self.shards[playbook].state.model_dump_json())
        assert carried == self.shards[playbook].state
        self.shards[playbook] = Governor(carried, lease=self.shards[playbook].lease)
        self.base[playbook], self.log[playbook] = carried.model_copy(deep=True), []
        kept = BudgetState.model_validate_json(self.budget.state.model_dump_json())
        assert kept == self.budget.state
        self.budget = Budget(kept)

    @rule(playbook=st.sampled_from(["a", "b"]))
    def worker_restart(self, playbook: str) -> None:
        """A new worker replays the history since the last continue-as-new: it must reach the very same state."""
        replayed = Governor(self.base[playbook].model_copy(deep=True), lease=self.shards[playbook].lease)
        for call in self.log[playbook]:
            call(replayed)
        assert replayed.state == self.shards[playbook].state
        self.shards[playbook] = replayed

    @invariant()
    def limits_hold(self) -> None:
        for at, playbook, key, _ in self.first_grants:
            limits = LIMITS[playbook]
            same = [g for g in self.first_grants if g[1] == playbook and at - HOUR < g[0] <= at]
            if limits.max_runs_per_hour is not None:
                assert len(same) <= limits.max_runs_per_hour
            assert len([g for g in self.first_grants if at - HOUR < g[0] <= at]) <= CAP
            if limits.cooldown is not None:
                earlier = [g[0] for g in self.first_grants if g[1] == playbook and g[2] == key and g[0] < at]
                assert all(at - t >= limits.cooldown for t in earlier)

    @invariant()
    def concurrency_holds(self) -> None:
        for playbook, limits in LIMITS.items():
            live = self.shards[playbook].state.leases
            if limits.max_concurrent is not None:
                assert len(live) <= limits.max_concurrent

    @invariant()
    def budget_counts_every_unit_out(self) -> None:
        """The keeper never lends more than the cap leaves."""
        assert self.budget.spent(self.now) <= CAP


GovernorMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)
TestGovernor = GovernorMachine.TestCase


def test_a_refusal_names_its_limit_and_when_it_frees() -> None:
    """A second write-run for the same key inside the cooldown is refused, saying so and until when."""
    governor = Governor()
    limits = Limits(cooldown=timedelta(minutes=30))
    assert governor.ask("r1", "a", "q1", START, limits).verdict == "grant"
    governor.release("r1")
    refused = governor.ask("r2", "a", "q1", START + timedelta(minutes=5), limits)
    assert refused.verdict == "refuse" and refused.limit == "cooldown"
    assert refused.frees_at == START + timedelta(minutes=30)
    assert governor.ask("r3", "a", "q2", START + timedelta(minutes=5), limits).verdict == "grant"


def test_storm_and_breaker_ask_for_approval_instead_of_writing() -> None:
    """Over the storm threshold, or with the breaker open, a write is granted only with an approval; a run's
    effectiveness counts once, however often its report is sent."""
    governor = Governor()
    limits = Limits(storm=Storm(occurrences=2, within=timedelta(minutes=5)), breaker=Breaker(ineffective=2))
    for i in range(3):
        governor.occurred("b", START + timedelta(seconds=i), limits)
    assert governor.ask("r1", "b", "k", START + timedelta(seconds=5), limits).limit == "storm"
    assert governor.effectiveness("b", "ineffective", limits, "r1") is False
    assert governor.effectiveness("b", "ineffective", limits, "r1") is False  # the same run's report sent again
    assert governor.effectiveness("b", "ineffective", limits, "r2") is True  # the second in a row opens it
    later = START + timedelta(hours=1)
    assert governor.ask("r2", "b", "k2", later, limits).limit == "breaker"
    governor.reset_breaker("b")
    assert governor.ask("r3", "b", "k3", later, limits).verdict == "grant"


def test_a_run_that_wrote_nothing_gets_its_budget_back_and_a_long_wait_keeps_its_own_cooldown() -> None:
    """A rejected run frees its cooldown and hourly slot; a run whose lease ran out while waiting may still write."""
    governor = Governor(lease=timedelta(minutes=10))
    limits = Limits(cooldown=timedelta(minutes=30), max_runs_per_hour=1)
    assert governor.ask("r1", "a", "q", START, limits).verdict == "grant"
    assert governor.ask("r1", "a", "q", START + timedelta(minutes=20), limits).verdict == "grant"  # lease expired
    governor.release("r1", wrote=False)
    assert governor.ask("r2", "a", "q", START + timedelta(minutes=21), limits).verdict == "grant"
    assert governor.ask("r3", "a", "q2", START + timedelta(minutes=22), limits).limit == "max_runs_per_hour"


def test_the_first_occurrence_over_the_threshold_starts_a_storm_once() -> None:
    """`occurred` says True once when a storm starts, not for every occurrence after it, and again after calm."""
    governor = Governor()
    limits = Limits(storm=Storm(occurrences=2, within=timedelta(minutes=5)))
    started = [governor.occurred("b", START + timedelta(seconds=i), limits) for i in range(5)]
    assert started == [False, False, True, False, False]
    assert governor.occurred("b", START + timedelta(hours=1), limits) is False
    assert [governor.occurred("b", START + timedelta(hours=1, seconds=i), limits) for i in (1, 2)] == [False, True]


def test_a_freed_slot_tells_the_first_run_in_line_once_then_the_next() -> None:
    """`next_in_line` names the earliest waiting run of the playbook; a run told and not asking since is skipped for
    TOLD_AGAIN (the next slot goes to the next run), told again after it, and forgotten once it asks."""
    governor = Governor()
    limits = Limits(max_concurrent=1)
    assert governor.ask("r1", "a", "k1", START, limits).verdict == "grant"
    for i, run in enumerate(["r3", "r2"], start=1):  # r2 arrived first, asks second
        since = START + timedelta(seconds=3 if run == "r3" else 2)
        assert governor.ask(run, "a", run, START + timedelta(seconds=i), limits, since=since).verdict == "wait"
    assert governor.ask("x1", "other", "x1", START, limits).verdict == "grant"
    now = START + timedelta(seconds=5)
    assert [governor.next_in_line("a", now), governor.next_in_line("a", now), governor.next_in_line("a", now)] == [
        "r2",
        "r3",
        None,
    ]
    assert governor.next_in_line("a", now + TOLD_AGAIN) == "r2"
    governor.release("r1")
    assert (
        governor.ask("r2", "a", "r2", now + TOLD_AGAIN, limits, since=START + timedelta(seconds=2)).verdict == "grant"
    )
    assert governor.next_in_line("a", now + TOLD_AGAIN) == "r3"  # told 5 s ago: told again
    assert governor.next_in_line("other", now) is None
