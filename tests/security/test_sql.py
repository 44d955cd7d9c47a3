"""Issue 9, item 2: SQL in a playbook means what it says; sessions are ended only through the typed action."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.playbooks import sql_check
from service.playbooks.loader import load_file
from service.playbooks.sql_check import REFUSED_FUNCTIONS, check
from service.playbooks.systems.postgres import PostgresConnection, PostgresExecuteParams, PostgresQueryParams
from service.runs.registry import Registry
from service.runs.state import StepRequest
from service.targets.postgres.adapter import PostgresAdapter
from service.vocabulary.errors import GuardViolation, StepError
from tests.support.jobs import job_states, seed_jobs

PLAYBOOK = """name: p
match: {{alertname: A}}
diagnose:
  - id: q
    action: postgres.query
    connection: db
    with:
      sql: {sql}
"""


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("select pg_terminate_backend(pid) from pg_stat_activity", "postgres.terminate_backends"),
        ("select 1 as a; commit; create table t (x int)", "3 statements"),
        ("with d as (delete from jobs returning *) select * from d", "data-modifying WITH"),
        ("select * from jobs for update", "FOR UPDATE"),
        ("select * into copy from jobs", "INTO"),
        ("select pg_catalog.PG_CANCEL_BACKEND(1)", "pg_cancel_backend"),
        ("select * from dblink('x', 'delete from jobs') as t(a int)", "dblink"),
        ("select pg_advisory_lock(1)", "pg_advisory_lock"),
        ("select set_config('search_path', 'x', false)", "set_config"),
        ("select nextval('s')::int", "nextval"),
        ("select id from jobs where queue = %(queue)s", "placeholders and params must match"),
    ],
)
def test_lint_refuses_sql_with_effects_beyond_its_step_at_file_line_col(tmp_path: Path, sql: str, reason: str) -> None:
    """Reproduction: these ran for real in `plan`, dry-run and previews; now lint refuses them where they stand."""
    path = tmp_path / "p.yaml"
    path.write_text(PLAYBOOK.format(sql=__import__("json").dumps(sql)))
    playbook, problems = load_file(path)
    assert playbook is None and any(reason in str(p) for p in problems), problems
    assert str(problems[0]).startswith((f"{path}:8:", f"{path}:7:"))  # the `sql:` line, or `with:` for params


def test_writes_need_one_statement_with_a_where() -> None:
    """postgres.execute is one INSERT, UPDATE or DELETE; UPDATE and DELETE name their rows."""
    assert check("update jobs set status = 'x'", "execute")[1]
    assert check("delete from jobs", "execute")[1]
    assert not check("update jobs set status = 'x' where id = %(id)s", "execute")[1]
    assert check("select 1", "execute")[1]


@pytest.fixture
async def db(jobs_db: str) -> AsyncIterator[Registry]:
    adapter = PostgresAdapter({"db": PostgresConnection(type="postgres", dsn="env:JOBS_DB_DSN")})
    yield Registry([adapter.actions()], require_all=False)
    await adapter.close()


async def _call(registry: Registry, action: str, dry_run: bool = False, **params: Any) -> Any:
    request = StepRequest(run_id="r", step_id="s", action=action, connection="db", params=params, dry_run=dry_run)
    return await registry.dispatch(request)


async def test_a_second_statement_cannot_run_even_past_the_checks(db: Registry, jobs_db: str) -> None:
    """Statements go out prepared (extended protocol): the server itself refuses a second one."""
    seed_jobs(jobs_db, stuck=[1])
    adapter_sql = "select 1; update jobs set status = 'x'"
    with pytest.raises(StepError):
        await _call(db, "postgres.query", sql=adapter_sql)  # refused by the model first
    from service.playbooks.systems.postgres import PostgresQueryParams

    params = PostgresQueryParams.model_construct(sql=adapter_sql, params={}, max_rows=10)  # as if a check missed it
    adapter = PostgresAdapter({"db": PostgresConnection(type="postgres", dsn="env:JOBS_DB_DSN")})
    try:
        with pytest.raises(StepError, match="multiple commands"):
            await adapter._query(
                StepRequest(run_id="r", step_id="s", action="postgres.query", connection="db", params={}), params
            )
    finally:
        await adapter.close()
    assert job_states(jobs_db) == {1: "running"}


IDLE = (
    "select pid, backend_start from pg_stat_activity "
    "where state = 'idle in transaction' and application_name = 'holder'"
)


async def test_terminate_backends_lists_in_dry_run_rechecks_and_ends_only_its_targets(
    db: Registry, jobs_db: str
) -> None:
    """A session idle in transaction holding a lock: dry-run names it and ends nothing; a target whose start time
    no longer matches, or whose transaction is younger than `still.in_transaction_for`, is skipped; the live call
    ends exactly the named session."""
    holder = await psycopg.AsyncConnection.connect(jobs_db, application_name="holder")
    await holder.execute("lock table jobs in exclusive mode")  # idle in transaction, holding a lock
    try:
        rows = (await _call(db, "postgres.query", sql=IDLE)).data["rows"]
        assert len(rows) == 1
        planned = await _call(
            db,
            "postgres.terminate_backends",
            dry_run=True,
            backends=rows,
            max_targets=1,
            still={"state": ["idle in transaction"]},
        )
        assert planned.data["results"][0]["outcome"] == "would terminate"
        assert (await holder.execute("select 1")).pgresult is not None  # still alive
        await holder.execute("select 1")
        moved = [{**rows[0], "backend_start": "2000-01-01T00:00:00+00:00"}]
        skipped = await _call(db, "postgres.terminate_backends", backends=moved, max_targets=1)
        assert skipped.data["results"][0]["outcome"].startswith("skipped")
        with pytest.raises(GuardViolation, match="empty target list"):
            await _call(db, "postgres.terminate_backends", backends=[], max_targets=1)
        young = await _call(  # its transaction is younger than an hour: not what the runbook ends
            db,
            "postgres.terminate_backends",
            backends=rows,
            max_targets=1,
            still={"state": ["idle in transaction"], "in_transaction_for": "1h"},
        )
        assert young.data["results"][0]["outcome"].startswith("skipped")
        ended = await _call(
            db,
            "postgres.terminate_backends",
            backends=rows,
            max_targets=1,
            still={"state": ["idle in transaction"], "idle_for": "0s", "in_transaction_for": "0s"},
        )
        assert ended.data["results"][0]["outcome"] == "terminated"
        await asyncio.sleep(0.2)
        with pytest.raises(psycopg.OperationalError):
            await holder.execute("select 1")
    finally:
        await holder.close()


KEYWORDS = st.sampled_from(sorted(REFUSED_FUNCTIONS))
SPELLINGS = st.sampled_from(["{f}", "pg_catalog.{f}", '"{f}"', 'pg_catalog."{f}"', "{F}"])


@settings(max_examples=300, deadline=None)
@given(
    KEYWORDS,
    SPELLINGS,
    st.sampled_from(
        ["select {call}", "select 1 where {call} is not null", "select ({call})::text", "select * from {call} as t"]
    ),
)
def test_no_spelling_of_a_refused_function_passes(function: str, spelling: str, shape: str) -> None:
    """Property: refused functions are found through schema names, quoting, case and casts."""
    call = spelling.format(f=function, F=function.upper()) + "(1)"
    _, problems = check(shape.format(call=call), "query")
    assert problems


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_a_second_statement_never_passes(tail: str) -> None:
    """Property: a query followed by anything that parses as another statement is refused."""
    _, problems = check(f"select 1; {tail}", "query")
    names, single = check("select 1", "query")
    assert problems or not tail.strip(" ;\n\t\r\x0b\x0c") or check(tail, "query")[1]
    assert not single and names == []


def test_a_step_decoded_again_costs_no_second_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A playbook validated again (a reload, a lint of many files) costs no parse: each statement is parsed once per
    process, its verdict (accepted or refused, with the reason) remembered."""
    real, parsed = vars(sql_check)["parse_sql"], []

    def counting(text: str) -> Any:
        parsed.append(text)
        return real(text)

    monkeypatch.setitem(vars(sql_check), "parse_sql", counting)
    sql = f"select id from jobs where queue = %(q)s and {uuid.uuid4().hex[:8]!r} <> ''"
    for _ in range(3):
        PostgresQueryParams.model_validate({"sql": sql, "params": {"q": "a"}})
    assert len(parsed) == 1
    refused = f"update jobs set status = '{uuid.uuid4().hex[:8]}'"  # no WHERE: refused every time, for one reason
    for _ in range(2):
        with pytest.raises(ValidationError, match="without WHERE"):
            PostgresExecuteParams.model_validate({"sql": refused, "max_rows": 1})
    assert len(parsed) == 2
