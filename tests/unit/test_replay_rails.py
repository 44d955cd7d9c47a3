"""Replay on a virtual clock: the governor's rules land where the input says, and the simulated governor answers
exactly as the governor workflow's own handlers answer the same messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio import workflow

from service.alerts.webhook import Alert, WebhookMessage
from service.durable.governor_workflow import GovernorWorkflow
from service.playbooks.playbook import Playbook
from service.rails import exchange
from service.rails.governance import Governance, Occurrence, Reply
from service.rails.governor_state import Limits
from service.replay import simulation
from service.replay.events import Assumptions
from service.replay.history import Delivered, fingerprint
from service.replay.planning import CapsPlanner
from service.replay.runner import Replay
from service.replay.tally import PlaybookReport, ReplayReport
from tests.support.requeue import requeue as playbook

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def governance(p: Playbook) -> Governance:
    return Governance(
        limits=p.limits.over(Limits()), cooldown_key=p.limits.cooldown_key, effective_within=timedelta(minutes=10)
    )


def alert(minute: float, queue: str, status: str = "firing", ends: float | None = None) -> Alert:
    labels = {"alertname": "JobsStuck", "queue": queue, "n": str(minute)}
    return Alert.model_validate(
        {
            "status": status,
            "labels": labels,
            "startsAt": T0 + timedelta(minutes=minute),
            "endsAt": T0 + timedelta(minutes=ends) if ends is not None else None,
            "fingerprint": fingerprint(labels),
        }
    )


def sent(minute: float, *alerts: Alert) -> Delivered:
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Delivered(T0 + timedelta(minutes=minute), WebhookMessage(version="4", status=status, alerts=list(alerts)))


async def _stream(items: Iterable[Delivered]) -> AsyncIterator[Delivered]:
    for item in items:
        yield item


def replayed(
    p: Playbook, history: list[Delivered], end: float | None = None, assumptions: Assumptions | None = None
) -> PlaybookReport:
    heading = ReplayReport(source="test", mode="auto", reads="skip", acting_for_seconds=60)
    replay = Replay([p], governance, CapsPlanner(), assumptions or Assumptions(), heading)
    until = T0 + timedelta(minutes=end) if end is not None else None
    report = asyncio.run(replay.messages(_stream(history), until))
    [found] = report.playbooks
    return found


def test_cooldown_and_storm_land_where_the_clock_says() -> None:
    """Each occurrence's fate, derived by hand: a 10m cooldown per queue, and more than 3 new occurrences within 5m
    makes a storm whose writes need a person."""
    p = playbook({"cooldown": "10m", "storm": {"occurrences": 3, "within": "5m"}})
    q1 = alert(0, "q1")
    history = [
        sent(0, q1),  # q1 writes: nothing before it
        sent(1, q1),  # the same occurrence again: a duplicate, no new run
        sent(2, alert(2, "q1")),  # q1 wrote at 0; 2 < 10: cooldown
        sent(3, alert(3, "q2")),  # q2 writes
        sent(4, alert(4, "q1")),  # cooldown again (4 occurrences in (-1, 4]: the storm begins, cooldown comes first)
        sent(5, alert(5, "q3")),  # q3 writes; 4 occurrences in (0, 5] > 3: a person is asked (storm)
        sent(11, alert(11, "q1")),  # q1's cooldown ended at 10; one occurrence in (6, 11]: calm, it writes
        sent(12, alert(12, "q2")),  # q2 wrote at 3; 12 - 3 = 9 < 10: cooldown
    ]
    found = replayed(p, history)
    assert found.occurrences == 7 and found.duplicates == 1
    assert found.outcomes == {"acted": 4, "refused": 3}
    assert found.refusals == {"cooldown": 3}
    assert found.storms == 1 and found.approvals == {"storm": 1}
    assert found.writes_planned == 4 and found.targets_bound == 4  # one target per HTTP request
    assert [(h.start.hour, h.occurrences, h.acted, h.refused) for h in found.timeline] == [(0, 7, 4, 3)]


def test_the_breaker_opens_on_runs_whose_alert_never_cleared() -> None:
    """A run is effective when its alert really resolved (its endsAt) within effective_within of the write;
    three ineffective runs in a row open the breaker, and the next writes need a person."""
    p = playbook({"breaker": {"ineffective": 3}})
    history = [sent(0, alert(0, "a"))]
    # a resolves at 5 (its message only at 13, after the check at 11): still effective, as Alertmanager would say
    history += [sent(13, alert(0, "a", "resolved", ends=5))]
    history += [sent(20 + m, alert(20 + m, q)) for m, q in ((0, "b"), (1, "c"), (2, "d"))]  # never resolve
    history += [sent(40, alert(40, "e")), sent(41, alert(41, "f"))]  # after the three checks (31..33)
    found = replayed(p, history, end=60)
    assert found.breaker_trips == 1
    assert found.outcomes == {"acted": 6}
    assert found.approvals == {"breaker": 2}
    # A history that keeps no resolves (the audit trail's) cannot tell: nothing is ineffective, nothing trips.
    unknown = replayed(p, history, end=60, assumptions=Assumptions(resolves_known=False))
    assert unknown.breaker_trips == 0 and unknown.approvals == {}


def test_a_paced_limit_lines_runs_up_and_a_resolve_ends_a_wait() -> None:
    """max_concurrent 1 and a write that takes a minute: the second run waits for the first to end; a third whose
    alert resolves while it waits writes nothing."""
    p = playbook({"max_concurrent": 1})
    c = alert(0.2, "c")
    history = [sent(0, alert(0, "a")), sent(0.1, alert(0.1, "b")), sent(0.2, c)]
    history += [sent(0.5, c.model_copy(update={"status": "resolved", "endsAt": T0 + timedelta(minutes=0.5)}))]
    found = replayed(p, history, end=30)
    assert found.outcomes == {"acted": 2, "resolved_while_waiting": 1}
    assert found.waited_seconds > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 180), st.sampled_from(["q1", "q2", "q3"])), min_size=1, max_size=40))
def test_cooldown_refusals_match_a_hand_rule(occurrences: list[tuple[int, str]]) -> None:
    """For any history: a run writes unless its queue's last write was under 10 minutes before (an independent
    statement of the cooldown rule, not the governor's code)."""
    events = sorted(occurrences)
    history = [sent(m, alert(m + i / 1000, q)) for i, (m, q) in enumerate(events)]
    last: dict[str, int] = {}
    acted = refused = 0
    for minute, queue in events:
        if queue in last and minute - last[queue] < 10:
            refused += 1
        else:
            acted, last[queue] = acted + 1, minute
    found = replayed(playbook({"cooldown": "10m"}), history)
    assert (found.outcomes.get("acted", 0), found.refusals.get("cooldown", 0)) == (acted, refused)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 90), st.sampled_from(["q1", "q2", "q3"])), min_size=3, max_size=30),
    st.sampled_from(
        [
            {"max_concurrent": 1},
            {"max_runs_per_hour": 1},
            {"max_runs_per_hour": 2, "on_limit": "refuse"},
            {"max_runs_per_hour": 2, "max_concurrent": 1, "wait_at_most": "30m"},
        ]
    ),
    st.lists(st.integers(0, 29), max_size=10),
)
def test_the_simulated_governor_answers_as_the_governor_workflow(
    monkeypatch_module: Any, occurrences: list[tuple[int, str]], limits: dict[str, Any], resolving: list[int]
) -> None:
    """Every message replay sent its governor, given in the same order at the same instants to the governor
    workflow's own handlers, gets the same answers: the same refusals, waits and grants; and each poll replay left
    out (it kept the run's place instead) is answered `wait` by the workflow, so leaving it out changed nothing."""
    events = sorted(occurrences)
    history = []
    for i, (minute, queue) in enumerate(events):
        fired = alert(minute + i / 1000, queue, ends=None)
        history.append(sent(minute, fired))
        if i in resolving:
            done = fired.model_copy(update={"status": "resolved", "endsAt": fired.startsAt + timedelta(minutes=3)})
            history.append(sent(minute + 3, done))
    history.sort(key=lambda d: d.at)
    log: list[tuple[str, datetime, Any, Any]] = []

    def decide(governor: Any, message: Any, now: datetime) -> tuple[Reply, str | None]:
        reply = exchange.decide(governor, message, now)
        log.append(("exchange", now, message, reply[0]))
        return reply

    def keep(governor: Any, ask: Any, now: datetime) -> bool:
        kept = exchange.keep(governor, ask, now)
        log.append(("keep", now, ask, kept))
        return kept

    def occurred(governor: Any, occurrence: Occurrence, now: datetime) -> str | None:
        log.append(("occurred", now, occurrence, None))
        return exchange.occurred(governor, occurrence, now)

    monkeypatch_module.setattr(simulation, "decide", decide)
    monkeypatch_module.setattr(simulation, "occurred", occurred)
    monkeypatch_module.setattr(simulation, "keep", keep)
    replayed(playbook({"cooldown": "2m", **limits}), history, end=200)
    assert any(kind == "exchange" for kind, *_ in log)

    live = GovernorWorkflow()
    clock: list[datetime] = [T0]
    monkeypatch_module.setattr(workflow, "now", lambda: clock[0])
    for kind, now, message, reply in log:
        clock[0] = now
        if kind == "occurred":
            live.occurred([message])
        elif kind == "keep":
            answers: Any = GovernorWorkflow.exchange(live, [message])  # a plain method outside a workflow
            [answer] = answers
            assert answer.answer is not None and answer.answer.verdict == "wait", f"at {now}: {answer}"
        else:
            assert GovernorWorkflow.exchange(live, [message]) == [reply], f"at {now}: {message}"


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    """One MonkeyPatch for the property test's examples (hypothesis runs them inside one test call)."""
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()
