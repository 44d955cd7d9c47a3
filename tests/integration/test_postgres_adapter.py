"""postgres.query and postgres.execute against a real Postgres server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.playbooks.systems.postgres import PostgresConnection
from service.runs.registry import Registry
from service.runs.state import StepRequest
from service.targets.postgres.adapter import PostgresAdapter
from service.vocabulary.errors import GuardViolation, PermanentStepError, StepError
from tests.support.jobs import job_states, seed_jobs, update_counts

STUCK = "select id from jobs where status = 'running' and queue = %(queue)s order by id"
REQUEUE = "update jobs set status = 'pending' where id = any(%(ids)s) and status = 'running'"


@pytest.fixture
async def registry(jobs_db: str) -> AsyncIterator[Registry]:
    adapter = PostgresAdapter(
        {"jobs-db": PostgresConnection(type="postgres", dsn="env:JOBS_DB_DSN", statement_timeout=1)}
    )
    yield Registry([adapter.actions()], require_all=False)
    await adapter.close()


def _req(action: str, dry_run: bool = False, **params: object) -> StepRequest:
    return StepRequest(run_id="r", step_id="s", action=action, connection="jobs-db", params=params, dry_run=dry_run)


async def test_query_returns_rows_with_bound_parameters(registry: Registry, jobs_db: str) -> None:
    """Rows come back as JSON data; values are bound, never spliced into SQL."""
    seed_jobs(jobs_db, stuck=[1, 2], other_queue=[3])
    result = await registry.dispatch(_req("postgres.query", sql=STUCK, params={"queue": "q1"}))
    assert result.data["rows"] == [{"id": 1}, {"id": 2}]


async def test_query_runs_in_a_read_only_transaction(registry: Registry, jobs_db: str) -> None:
    """A diagnose query cannot write through a function the SQL checker cannot see into: the target says it is
    volatile, so it is refused before it runs (the read-only transaction stands behind that rule)."""
    seed_jobs(jobs_db, stuck=[1])
    with psycopg.connect(jobs_db, autocommit=True) as conn:
        conn.execute(
            "create function sneaky() returns int language sql as $$ update jobs set status = 'x'; select 1 $$"
        )
    with pytest.raises(PermanentStepError, match="sneaky\\(\\), which PostgreSQL marks volatile"):
        await registry.dispatch(_req("postgres.query", sql="select sneaky()"))
    assert job_states(jobs_db) == {1: "running"}


async def test_query_has_a_statement_timeout_and_a_row_cap(registry: Registry, jobs_db: str) -> None:
    """Slow queries are cancelled by the statement timeout; results stop at max_rows and say so."""
    with pytest.raises(StepError, match="statement timeout"):
        await registry.dispatch(_req("postgres.query", sql="select pg_sleep(3)"))
    result = await registry.dispatch(_req("postgres.query", sql="select generate_series(1, 10) as n", max_rows=3))
    assert result.data["count"] == 3 and result.data["truncated"] is True


async def test_execute_changes_rows_and_reports_which(registry: Registry, jobs_db: str) -> None:
    """A live write commits and records the changed rows by key."""
    seed_jobs(jobs_db, stuck=[1, 2], fresh=[3])
    result = await registry.dispatch(_req("postgres.execute", sql=REQUEUE, params={"ids": [1, 2]}, max_rows=5))
    assert result.data["rowcount"] == 2 and result.targets == ["row 1", "row 2"]
    assert job_states(jobs_db) == {1: "pending", 2: "pending", 3: "running"}


async def test_dry_run_rolls_back_and_reports_what_it_would_change(registry: Registry, jobs_db: str) -> None:
    """In dry-run the statement runs inside a transaction that is rolled back; nothing changes."""
    seed_jobs(jobs_db, stuck=[1, 2])
    result = await registry.dispatch(
        _req("postgres.execute", dry_run=True, sql=REQUEUE, params={"ids": [1, 2]}, max_rows=5)
    )
    assert result.dry_run and result.data["rowcount"] == 2 and result.targets == ["row 1", "row 2"]
    assert job_states(jobs_db) == {1: "running", 2: "running"} and update_counts(jobs_db) == {}


async def test_max_rows_guard_rolls_back_and_fails(registry: Registry, jobs_db: str) -> None:
    """More changed rows than max_rows rolls the whole statement back and fails the step."""
    seed_jobs(jobs_db, stuck=[1, 2, 3])
    with pytest.raises(GuardViolation, match="would change 3 row"):
        await registry.dispatch(_req("postgres.execute", sql=REQUEUE, params={"ids": [1, 2, 3]}, max_rows=2))
    assert set(job_states(jobs_db).values()) == {"running"} and update_counts(jobs_db) == {}


async def test_multiple_statements_are_refused(registry: Registry, jobs_db: str) -> None:
    """A parameterised statement cannot smuggle a second statement."""
    seed_jobs(jobs_db, stuck=[1])
    with pytest.raises(PermanentStepError):
        await registry.dispatch(
            _req(
                "postgres.execute",
                sql="update jobs set status = 'x' where id = %(id)s; delete from jobs",
                params={"id": 1},
                max_rows=5,
            )
        )
    assert job_states(jobs_db) == {1: "running"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60).filter(lambda s: "\x00" not in s))
async def test_hostile_values_stay_data(registry: Registry, jobs_db: str, value: str) -> None:
    """Quotes, semicolons, `%s` and template syntax in a label reach Postgres only as a bound value."""
    result = await registry.dispatch(_req("postgres.query", sql="select %(v)s::text as v", params={"v": value}))
    assert result.data["rows"] == [{"v": value}]


@pytest.fixture
async def ledgered(jobs_db: str) -> AsyncIterator[tuple[PostgresAdapter, Registry]]:
    adapter = PostgresAdapter(
        {"jobs-db": PostgresConnection(type="postgres", dsn="env:JOBS_DB_DSN", ledger="remediate.ledger")}
    )
    await adapter.migrate("jobs-db")
    await adapter.migrate("jobs-db")  # creating it twice is harmless
    yield adapter, Registry([adapter.actions()], require_all=False)
    await adapter.close()


async def test_a_retried_write_finds_its_key_in_the_ledger_and_changes_nothing_more(
    ledgered: tuple[PostgresAdapter, Registry], jobs_db: str
) -> None:
    """Attempt 2 of the same key returns attempt 1's recorded rows; the rows were updated once."""
    _, registry = ledgered
    seed_jobs(jobs_db, stuck=[1, 2])
    first = await registry.dispatch(_req("postgres.execute", sql=REQUEUE, params={"ids": [1, 2]}, max_rows=5))
    seed_jobs(jobs_db, stuck=[3])  # a new stuck row must not be swept up by the retry
    retry = _req("postgres.execute", sql=REQUEUE.replace("any(%(ids)s)", "any(%(ids)s) or id = 3"), max_rows=5)
    retry.params["params"] = {"ids": [1, 2]}
    second = await registry.dispatch(retry.model_copy(update={"attempt": 2}))
    assert first.targets == second.targets == ["row 1", "row 2"]
    assert second.data["already_applied"] is True and second.note == "already applied; result from the ledger"
    assert update_counts(jobs_db) == {1: 1, 2: 1}
    assert job_states(jobs_db)[3] == "running"


async def test_concurrent_attempts_of_one_write_apply_it_once(
    ledgered: tuple[PostgresAdapter, Registry], jobs_db: str
) -> None:
    """Two attempts at once (a slow worker and its replacement): the ledger key serialises them, one writes."""
    _, registry = ledgered
    seed_jobs(jobs_db, stuck=[1])
    request = _req(
        "postgres.execute",
        sql=REQUEUE.replace("where", "where pg_sleep(0.5) is not null and"),
        params={"ids": [1]},
        max_rows=5,
    )
    results = await asyncio.gather(*(registry.dispatch(request) for _ in range(2)))
    assert sorted(bool(r.data.get("already_applied")) for r in results) == [False, True]
    assert update_counts(jobs_db) == {1: 1}


async def test_without_a_ledger_a_second_attempt_is_refused(registry: Registry, jobs_db: str) -> None:
    """No ledger: the earlier attempt may have committed, so attempt 2 is not sent (at most once)."""
    seed_jobs(jobs_db, stuck=[1])
    request = _req("postgres.execute", sql=REQUEUE, params={"ids": [1]}, max_rows=5).model_copy(update={"attempt": 2})
    with pytest.raises(PermanentStepError, match="no ledger"):
        await registry.dispatch(request)
    assert update_counts(jobs_db) == {}


async def test_a_pooled_connection_goes_back_with_no_session_state(jobs_db: str) -> None:
    """Whatever a statement leaves on its connection (an advisory lock, a setting, a temporary table) is gone when
    the pool hands the connection out again."""
    adapter = PostgresAdapter({"jobs-db": PostgresConnection(type="postgres", dsn="env:JOBS_DB_DSN", pool_size=1)})
    try:
        pool = await adapter.client("jobs-db")
        async with pool.connection() as conn:
            await conn.execute("select pg_advisory_lock(5)")
            await conn.execute("set application_name = 'left-behind'")
            await conn.execute("create temporary table scratch (x int)")
            backend = (await (await conn.execute("select pg_backend_pid()")).fetchone() or (0,))[0]
        async with pool.connection() as conn:  # the only connection: the same backend, reset
            same = (await (await conn.execute("select pg_backend_pid()")).fetchone() or (0,))[0]
            name = (await (await conn.execute("show application_name")).fetchone() or ("",))[0]
            temp = (await (await conn.execute("select to_regclass('pg_temp.scratch')")).fetchone() or (None,))[0]
        assert same == backend and name == "remediate" and temp is None
        with psycopg.connect(jobs_db) as db:
            held = db.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone()
        assert held == (0,)
    finally:
        await adapter.close()


async def test_a_dry_run_insert_that_would_advance_a_sequence_is_planned_not_run(
    registry: Registry, jobs_db: str
) -> None:
    """An INSERT into a table with a serial column is planned without running in a dry-run (the sequence would
    advance though the rows roll back); naming the column itself runs it as usual."""
    with psycopg.connect(jobs_db, autocommit=True) as db:
        db.execute("create table notes (id serial primary key, note text, at timestamptz default clock_timestamp())")
    planned = await registry.dispatch(
        _req(
            "postgres.execute",
            dry_run=True,
            sql="insert into notes (note) values (%(n)s)",
            params={"n": "x"},
            max_rows=1,
        )
    )
    assert planned.data["not_run"] and "sequence for id would advance" in planned.summary
    ran = await registry.dispatch(
        _req(
            "postgres.execute",
            dry_run=True,
            sql="insert into notes (id, note) values (7, %(n)s)",
            params={"n": "x"},
            max_rows=1,
        )
    )
    assert ran.data["rowcount"] == 1 and ran.targets == ["row 7"]
    with psycopg.connect(jobs_db) as db:
        assert db.execute("select last_value, is_called from notes_id_seq").fetchone() == (1, False)
        assert db.execute("select count(*) from notes").fetchone() == (0,)


async def test_an_insert_names_its_rows_by_the_columns_it_sets(registry: Registry, jobs_db: str) -> None:
    """A clock_timestamp() default differs on every dry-run; rows are named by what the INSERT itself sets, so the
    rows an approver saw are the rows the write touches."""
    with psycopg.connect(jobs_db, autocommit=True) as db:
        db.execute("create table events (note text, at timestamptz default clock_timestamp())")
    request = _req("postgres.execute", dry_run=True, sql="insert into events (note) values (%(n)s)", params={"n": "x"})
    request.params["max_rows"] = 1
    seen = [(await registry.dispatch(request)).targets for _ in range(2)]
    assert seen == [["row note=x"], ["row note=x"]]
