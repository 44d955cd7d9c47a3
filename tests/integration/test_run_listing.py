"""Runs listed from the audit store (real Postgres and SQLite): newest first, filtered in the store, paged by cursor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.runs.audit import AuditSnapshot, AuditStore
from service.runs.listing import RunCursor, RunQuery
from service.runs.state import RunState
from service.vocabulary.modes import Mode

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def run(
    i: int, *, playbook: str = "a", alert: str = "A", status: str = "succeeded", at: datetime | None = None
) -> RunState:
    return RunState(
        run_id=f"{playbook}/fp{i}/{i}",
        playbook=playbook,
        alertname=alert,
        fingerprint=f"fp{i}",
        labels={"alertname": alert},
        mode=Mode.AUTO,
        status=status,
        started_at=at or T0 + timedelta(minutes=i),
    )


async def record(store: AuditStore, states: list[RunState]) -> None:
    for s in states:
        await store.append(AuditSnapshot(seq=1, state=s), [])


async def every_page(store: AuditStore, query: RunQuery) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        listed = await store.runs(replace(query, limit=query.limit + 1, before=cursor))
        pages.append([r.state.run_id for r in listed[: query.limit]])
        if len(listed) <= query.limit:
            return pages
        cursor = listed[query.limit - 1].cursor


async def test_pages_follow_each_other_without_gaps_or_repeats_even_when_runs_share_a_start_time(
    store: AuditStore,
) -> None:
    """25 runs, 10 of them started in the same instant, paged 4 at a time: every run once, newest first."""
    tied = [run(i, at=T0 + timedelta(minutes=30)) for i in range(10, 20)]
    await record(store, [*(run(i) for i in range(10)), *tied, *(run(i) for i in range(31, 36))])
    pages = await every_page(store, RunQuery(limit=4))
    seen = [r for page in pages for r in page]
    assert len(seen) == 25 and len(set(seen)) == 25
    assert seen[:5] == [f"a/fp{i}/{i}" for i in range(35, 30, -1)]
    assert seen[-10:] == [f"a/fp{i}/{i}" for i in range(9, -1, -1)]
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]


async def test_filters_by_playbook_status_alert_and_time_apply_before_the_limit(store: AuditStore) -> None:
    """Each filter narrows in the store, so a page of five holds five matching runs however many others are newer."""
    await record(
        store,
        [
            *(run(i, playbook="quiet") for i in range(6)),
            *(run(i, status="failed", alert="B") for i in range(6, 12)),
            *(run(i) for i in range(12, 40)),  # newer noise
        ],
    )
    by_playbook = await store.runs(RunQuery(limit=5, playbook="quiet"))
    assert [r.state.run_id for r in by_playbook] == [f"quiet/fp{i}/{i}" for i in range(5, 0, -1)]
    failed = await store.runs(RunQuery(limit=5, status="failed"))
    assert len(failed) == 5 and {r.state.status for r in failed} == {"failed"}
    by_alert = await store.runs(RunQuery(limit=50, alertname="B"))
    assert len(by_alert) == 6 and {r.state.alertname for r in by_alert} == {"B"}
    recent = await store.runs(RunQuery(limit=50, since=T0 + timedelta(minutes=30)))
    assert [r.state.run_id for r in recent] == [f"a/fp{i}/{i}" for i in range(39, 29, -1)]
    together = await store.runs(RunQuery(limit=50, status="failed", alertname="B", playbook="quiet"))
    assert together == []


async def test_a_cursor_from_a_hostile_or_foreign_source_is_refused_or_matches_nothing(store: AuditStore) -> None:
    """A tampered page link is refused with a reason; a well-formed cursor naming no run is only a position."""
    for token in ("", "!!!", "x" * 5000, RunCursor(T0, "a/b/c").token()[:-3], "W10", "WyJ4IiwiYSIsMV0"):
        with pytest.raises(ValueError, match="page link"):
            RunCursor.parse(token)
    await record(store, [run(i) for i in range(3)])
    odd = RunCursor(T0 + timedelta(minutes=1, seconds=30), "'; DROP TABLE x; --", 7)
    assert RunCursor.parse(odd.token()) == odd
    assert [r.state.run_id for r in await store.runs(RunQuery(before=odd))] == ["a/fp1/1", "a/fp0/0"]
