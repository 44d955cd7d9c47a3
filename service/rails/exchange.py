"""How the governor answers each message: the one path the governor workflow and `remediate replay` both take."""

from __future__ import annotations

from datetime import datetime

from service.rails.governance import Ask, Message, Occurrence, Release, Reply, Report, Tripped
from service.rails.governor import Governor
from service.vocabulary.durations import written


def decide(governor: Governor, message: Message, now: datetime) -> tuple[Reply, str | None]:
    """One message of a worker's batch, decided at `now`; with the announcement it calls for (a breaker opened)."""
    if isinstance(message, Ask):
        answer = governor.ask(
            message.run_id,
            message.playbook,
            message.key,
            now,
            message.limits,
            message.unit,
            message.since,
            message.budget_frees_at,
        )
        return Reply(answer=answer), None
    if isinstance(message, Release):
        lease = governor.state.leases.get(message.run_id)
        refunded = governor.release(message.run_id, message.wrote)
        # The slot it held is free: the run next in line is told to ask now (its worker signals it).
        nxt = governor.next_in_line(lease.playbook, now) if lease else None
        return Reply(refunded=refunded, turns=[nxt] if nxt else []), None
    tripped, announcement = report(governor, message)
    return Reply(tripped=tripped), announcement


def keep(governor: Governor, ask: Ask, now: datetime) -> bool:
    """A waiting run's poll whose answer cannot have changed (replay asks only when one can): its place is kept, as
    the poll's `wait` would keep it. False when it has no place any more."""
    return governor.still_waiting(ask.run_id, now)


def report(governor: Governor, message: Report) -> tuple[Tripped, str | None]:
    """A run's effectiveness: what it changed in the breaker, and the announcement when it opened it."""
    opened = governor.effectiveness(message.playbook, message.result, message.limits, message.run_id)
    state = governor.state.playbooks.get(message.playbook)
    in_a_row = state.ineffective_in_a_row if state else 0
    announcement = (
        f"Breaker open for playbook {message.playbook}: {in_a_row} ineffective run(s) in a row (last: "
        f"{message.run_id}). Its writes now need approval until `remediate breaker reset {message.playbook}`."
        if opened
        else None
    )
    return Tripped(opened=opened, ineffective_in_a_row=in_a_row), announcement


def occurred(governor: Governor, occurrence: Occurrence, now: datetime) -> str | None:
    """A new occurrence, for the storm count; the announcement when it starts a storm."""
    if not governor.occurred(occurrence.playbook, now, occurrence.limits):
        return None
    storm = occurrence.limits.storm
    within = written(storm.within) if storm else "its window"
    count = storm.occurrences if storm else 0
    return (
        f"Alert storm for playbook {occurrence.playbook}: more than {count} new occurrences "
        f"within {within}. Its writes need approval until it is calm."
    )
