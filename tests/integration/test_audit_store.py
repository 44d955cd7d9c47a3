"""The audit store on a real Postgres and on SQLite: idempotent appends, newest snapshot wins, secrets scrubbed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from temporalio.testing import ActivityEnvironment

from service.durable.audit_activities import AuditActivities
from service.runs.audit import AuditQuery, AuditSnapshot, AuditStore, Scrubber, events_of
from service.runs.listing import RunQuery
from service.runs.state import RunState, StepRecord, short_id
from service.stores.postgres import PostgresAuditStore
from service.vocabulary.approvals import DecisionRecord, Gate, GateRequest
from service.vocabulary.errors import AuditUnavailable
from service.vocabulary.modes import Mode
from tests.support.jobs import new_database
from tests.support.servers import Postgres

CANARY = "canary-secret-7f3a9b2c"
T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def state(status: str = "acting", *, run_id: str = "audit-test/fp1/100", canary: bool = False) -> RunState:
    """A run that read, wrote once (its error text carries the canary when asked) and had one decision."""
    leaked = f"target said: Authorization: Bearer {CANARY}" if canary else None
    return RunState.model_validate(
        {
            "run_id": run_id,
            "playbook": "audit-test",
            "alertname": "AuditTest",
            "fingerprint": "fp1",
            "labels": {"alertname": "AuditTest", "key": "k1"},
            "mode": Mode.AUTO,
            "status": status,
            "reason": "" if status == "acting" else "1 write(s) done",
            "started_at": T0,
            "finished_at": None if status == "acting" else T0 + timedelta(seconds=5),
            "steps": [
                StepRecord(
                    id="check",
                    phase="diagnose",
                    action="http.request",
                    effect="read",
                    connection="t",
                    status="ok",
                    result={"stuck": True},
                    started_at=T0,
                    finished_at=T0 + timedelta(seconds=1),
                ),
                StepRecord(
                    id="fix",
                    phase="act",
                    action="http.request",
                    effect="write",
                    connection="t",
                    status="failed" if canary else ("ok" if status != "acting" else "planned"),
                    params={"method": "POST", "path": "/fix/k1"},
                    targets=["POST /fix/k1"],
                    error=leaked,
                    started_at=T0 + timedelta(seconds=2),
                    finished_at=T0 + timedelta(seconds=3),
                ),
            ],
            "gate": Gate(
                request=GateRequest(
                    run_id=run_id,
                    playbook="audit-test",
                    alertname="AuditTest",
                    labels={},
                    diagnosis=[],
                    writes=[],
                    approvers=["U1"],
                    min_approvals=1,
                    expires_at=T0 + timedelta(hours=1),
                ),
                decisions=[
                    DecisionRecord(
                        decision_id="d1", user="U1", verdict="approve", source="api", outcome="counted", at=T0
                    )
                ],
            ),
        }
    )


async def test_a_repeated_snapshot_adds_nothing_and_an_older_one_never_replaces_a_newer(store: AuditStore) -> None:
    """The same snapshot twice (an activity retry) adds its records once; seq 1 after seq 2 leaves seq 2's state."""
    acting, done = AuditSnapshot(seq=1, state=state("acting")), AuditSnapshot(seq=2, state=state("succeeded"))
    assert await store.append(acting, events_of(acting.state)) == 3  # received, the read, the decision
    assert await store.append(acting, events_of(acting.state)) == 0
    assert await store.append(done, events_of(done.state)) == 2  # the write's outcome and the run's end
    assert await store.append(acting, events_of(acting.state)) == 0
    kept = await store.run("audit-test/fp1/100")
    assert kept is not None and kept.status == "succeeded"
    events = [e async for e in store.events(AuditQuery(playbook="audit-test"))]
    assert [e.key for e in events] == [
        "run/received",
        "decision/d1",
        "step/diagnose/check/2026-12-01T03:00:00+00:00/ok",
        "step/act/fix/2026-12-01T03:00:02+00:00/ok",
        "run/succeeded",
    ]
    assert len({e.key for e in events}) == len(events)
    assert await store.find(short_id("audit-test/fp1/100")) == ["audit-test/fp1/100"]
    assert await store.find("audit-test/fp1") == ["audit-test/fp1/100"]
    listed = await store.runs(RunQuery(since=T0 - timedelta(minutes=1)))
    assert [r.state.run_id for r in listed] == ["audit-test/fp1/100"]
    assert await store.runs(RunQuery(since=T0 + timedelta(minutes=1))) == []


async def test_a_step_never_run_is_exported_with_its_run_s_time_not_first(store: AuditStore) -> None:
    """A verify step that was not run (dry-run) has no time of its own: the export places it at the run's end,
    never before the run was received."""
    ended = state("succeeded")
    ended.steps.append(
        StepRecord(id="after", phase="verify", action="http.request", effect="read", connection="t", status="not_run")
    )
    await store.append(AuditSnapshot(seq=1, state=ended), events_of(ended))
    events = [e async for e in store.events(AuditQuery(playbook="audit-test"))]
    assert all(e.at is not None for e in events)
    assert events[0].key == "run/received"
    assert [e.key for e in events][-2:] == ["step/verify/after/-/not_run", "run/succeeded"]


async def test_the_activity_scrubs_known_secrets_and_a_retry_writes_no_duplicate(store: AuditStore) -> None:
    """Through the activity (as Temporal runs it, twice for a retry): one set of records, no canary anywhere."""
    activities = AuditActivities(store, Scrubber([CANARY]))
    snapshot = AuditSnapshot(seq=1, state=state("failed", run_id="audit-test/fp2/200", canary=True))
    env = ActivityEnvironment()
    added = await env.run(activities.record_audit, snapshot)
    assert added > 0
    assert await env.run(activities.record_audit, snapshot) == 0
    stored = await store.run("audit-test/fp2/200")
    assert stored is not None and stored.steps[1].error is not None and "***" in stored.steps[1].error
    everything = stored.model_dump_json() + "".join(
        [e.model_dump_json() async for e in store.events(AuditQuery(playbook="audit-test"))]
    )
    assert CANARY not in everything


async def test_a_postgres_store_without_its_tables_says_to_migrate(postgres: Postgres) -> None:
    """An unmigrated database is refused with the command that fixes it, never a stack trace."""
    store = PostgresAuditStore(new_database(postgres))
    try:
        with pytest.raises(AuditUnavailable, match="remediate migrate audit"):
            await store.check()
        await store.migrate()
        await store.migrate()  # idempotent
        await store.check()
    finally:
        await store.close()


async def test_records_in_postgres_are_jsonb_with_one_row_per_key(postgres: Postgres) -> None:
    """The schema's primary keys are what make a retried append harmless; records are queryable JSON."""
    dsn = new_database(postgres)
    store = PostgresAuditStore(dsn)
    try:
        await store.migrate()
        snapshot = AuditSnapshot(seq=1, state=state("succeeded"))
        await store.append(snapshot, events_of(snapshot.state))
        await store.append(snapshot, events_of(snapshot.state))
    finally:
        await store.close()
    with psycopg.connect(dsn) as db:
        found = list(
            db.execute("select key, count(*), min(jsonb_typeof(record)) from remediate_audit_events group by key")
        )
    assert len(found) == 5 and all(count == 1 and kind == "object" for _, count, kind in found)
