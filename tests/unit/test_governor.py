"""The governor's rules as a pure state machine: stateful properties over generated sequences of events."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.governor import HOUR, Breaker, Governor, GovernorState, Limits, Storm

START = datetime(2026, 12, 1, tzinfo=UTC)
LIMITS = {
    "a": Limits(cooldown=timedelta(minutes=30), max_runs_per_hour=3, max_concurrent=2),
    "b": Limits(
        max_concurrent=1, storm=Storm(occurrences=3, within=timedelta(minutes=5)), breaker=Breaker(ineffective=2)
    ),
}
CAP = 5
T = TypeVar("T")
EXAMPLES = int(os.environ.get("GOVERNOR_EXAMPLES", "200"))  # CI; GOVERNOR_EXAMPLES=10000 takes about 100 s


class GovernorMachine(RuleBasedStateMachine):
    """Drives a Governor with alerts, grants, completions, clock jumps, kill-switch flips, continue-as-new and
    worker restarts (replay), and checks every grant against the limits from its own record of what was granted."""

    def __init__(self) -> None:
        super().__init__()
        self.governor = Governor(GovernorState(max_writes_per_hour=CAP), lease=timedelta(minutes=10))
        # What a worker restart replays: the state at the last continue-as-new and every call since.
        self.base = self.governor.state.model_copy(deep=True)
        self.log: list[Callable[[Governor], object]] = []
        self.now = START
        self.first_grants: list[tuple[datetime, str, str, str]] = []  # (at, playbook, key, run)
        self.switch_on = False

    def apply(self, call: Callable[[Governor], T]) -> T:
        self.log.append(call)
        return call(self.governor)

    @rule(run=st.integers(0, 8), playbook=st.sampled_from(["a", "b"]), key=st.sampled_from(["k1", "k2"]))
    def ask(self, run: int, playbook: str, key: str) -> None:
        run_id = f"{playbook}/{run}"
        state = self.governor.state
        live = run_id in state.leases and state.leases[run_id].until > self.now
        counted = run_id in state.grants and self.now - HOUR < state.grants[run_id].at
        held = live or counted  # a run already counted is not a new write-run
        now = self.now
        answer = self.apply(lambda g: g.ask(run_id, playbook, key, now, LIMITS[playbook]))
        if self.switch_on:
            assert answer.verdict == "refuse" and answer.limit == "kill_switch"
            return
        if answer.verdict != "refuse" and not held:
            self.first_grants.append((self.now, playbook, key, run_id))
        if answer.verdict == "refuse":
            assert answer.reason and answer.limit
            assert answer.frees_at is None or answer.frees_at > self.now

    @rule(run=st.integers(0, 8), playbook=st.sampled_from(["a", "b"]), wrote=st.booleans())
    def release(self, run: int, playbook: str, wrote: bool) -> None:
        run_id = f"{playbook}/{run}"
        refunded = not wrote and run_id in self.governor.state.grants
        self.apply(lambda g: g.release(run_id, wrote))
        if refunded:  # a run that wrote nothing gives its budget back: it no longer counts as a write-run
            last = max(i for i, g in enumerate(self.first_grants) if g[3] == run_id)
            del self.first_grants[last]

    @rule(playbook=st.sampled_from(["a", "b"]))
    def occurrence(self, playbook: str) -> None:
        now = self.now
        self.apply(lambda g: g.occurred(playbook, now, LIMITS[playbook]))

    @rule(seconds=st.sampled_from([1, 30, 120, 600, 1800, 3600, 7200]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(on=st.booleans(), playbook=st.sampled_from([None, "a", "b"]))
    def kill_switch(self, on: bool, playbook: str | None) -> None:
        if playbook is None:  # the property checks the global switch; per-playbook ones are flipped too
            self.switch_on = on
        now = self.now
        self.apply(lambda g: g.set_switch(on, "oncall", "test", now, playbook))

    @rule(result=st.sampled_from(["effective", "ineffective", "unknown"]))
    def effectiveness(self, result: str) -> None:
        self.apply(lambda g: g.effectiveness("b", result, LIMITS["b"]))  # type: ignore[arg-type]

    @rule()
    def reset(self) -> None:
        self.apply(lambda g: g.reset_breaker("b"))

    @rule()
    def continue_as_new(self) -> None:
        """The workflow carries the state across continue-as-new (and a worker restart replays it) as JSON."""
        carried = GovernorState.model_validate_json(self.governor.state.model_dump_json())
        assert carried == self.governor.state
        self.governor = Governor(carried, lease=self.governor.lease)
        self.base, self.log = carried.model_copy(deep=True), []

    @rule()
    def worker_restart(self) -> None:
        """A new worker replays the history since the last continue-as-new: it must reach the very same state."""
        replayed = Governor(self.base.model_copy(deep=True), lease=self.governor.lease)
        for call in self.log:
            call(replayed)
        assert replayed.state == self.governor.state
        self.governor = replayed

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
            live = [r for r, lease in self.governor.state.leases.items() if lease.playbook == playbook]
            if limits.max_concurrent is not None:
                assert len(live) <= limits.max_concurrent


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
    """Over the storm threshold, or with the breaker open, a write is granted only with an approval."""
    governor = Governor()
    limits = Limits(storm=Storm(occurrences=2, within=timedelta(minutes=5)), breaker=Breaker(ineffective=2))
    for i in range(3):
        governor.occurred("b", START + timedelta(seconds=i), limits)
    assert governor.ask("r1", "b", "k", START + timedelta(seconds=5), limits).limit == "storm"
    assert governor.effectiveness("b", "ineffective", limits) is False
    assert governor.effectiveness("b", "ineffective", limits) is True  # the second in a row opens it
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
