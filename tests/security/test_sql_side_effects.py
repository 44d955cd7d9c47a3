"""Issue 20, item 4: no read and no dry-run changes the target, through `remediate lint`, `remediate plan` and
`remediate serve` in dry-run with the Postgres audit store, checked by a victim session, sequences and pg_locks."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import psycopg
import pytest
from ruamel.yaml import YAML
from temporalio.client import Client

from tests.support.crash import webhook_message
from tests.support.deployment import AUTH, cli, env
from tests.support.jobs import new_database
from tests.support.processes import start
from tests.support.servers import Postgres
from tests.support.stack import RUNS

pytestmark = pytest.mark.process
HOSTILE = Path(__file__).parent / "data" / "hostile-sql.yaml"
SCHEMA = """
create sequence victim_seq;
create table victim_log (id serial primary key, note text);
create table victim_target (id int primary key, note text);
insert into victim_target values (1, 'untouched');
create function kill_victim() returns boolean language sql as
  $$ select coalesce(bool_or(pg_terminate_backend(pid)), false) from pg_stat_activity
     where application_name = 'victim' $$;
create function lock_it() returns boolean language sql as $$ select pg_try_advisory_lock(7) $$;
"""
# The role docs/security.md recommends for diagnosis: it may read and (for dry-runs) write the tables it remediates,
# and holds no pg_signal_backend, so even a statement no check caught could not end another session.
ROLE = """
create role {role} login;
grant select, insert, update on victim_log, victim_target to {role};
grant usage, select on sequence victim_seq, victim_log_id_seq to {role};
"""
QUERY = """
name: {name}
match: {{alertname: SqlProbe}}
diagnose:
  - id: probe
    action: postgres.query
    connection: victim-db
    with: {{sql: {sql}}}
"""
EXECUTE = """
name: {name}
match: {{alertname: SqlProbe}}
act:
  - id: probe
    action: postgres.execute
    connection: victim-db
    approval: none
    with: {{sql: {sql}, max_rows: 5}}
"""


def target_state(dsn: str) -> dict[str, object]:
    """Everything a hostile statement could have changed, read from outside."""
    with psycopg.connect(dsn, autocommit=True) as db:
        return {
            "victim_seq": db.execute("select last_value, is_called from victim_seq").fetchone(),
            "victim_log_seq": db.execute("select last_value, is_called from victim_log_id_seq").fetchone(),
            "victim_log": db.execute("select count(*) from victim_log").fetchone(),
            "victim_target": db.execute("select note from victim_target where id = 1").fetchone(),
            "advisory_locks": db.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone(),
            "evil_sessions": db.execute(
                "select count(*) from pg_stat_activity where application_name = 'evil'"
            ).fetchone(),
        }


def write_playbooks(into: Path) -> dict[str, str]:
    """One playbook per hostile statement; returns file name -> statement."""
    into.mkdir()
    written = {}
    for i, entry in enumerate(YAML(typ="safe").load(HOSTILE.read_text())):
        template = QUERY if entry["kind"] == "query" else EXECUTE
        name = f"sql-{i:02d}"
        (into / f"{name}.yaml").write_text(template.format(name=name, sql=json.dumps(entry["sql"])))
        written[f"{name}.yaml"] = entry["sql"]
    return written


async def test_hostile_sql_is_refused_or_changes_nothing_in_lint_plan_and_dry_run(
    postgres: Postgres, temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Each hostile statement is refused by lint, refused at first use (volatile per the target's pg_proc), or
    planned without running; afterwards the victim session lives, no sequence moved, no row or lock is left."""
    dsn, audit = new_database(postgres), new_database(postgres)
    role = f"diagnose_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(SCHEMA)
        db.execute(ROLE.format(role=role))
        assert db.execute("select pg_has_role(%s, 'pg_signal_backend', 'member')", [role]).fetchone() == (False,)
    victim = psycopg.connect(dsn + "?application_name=victim", autocommit=True)
    before = target_state(dsn)
    books = tmp_path / "all"
    statements = write_playbooks(books)
    config = tmp_path / "config.yaml"
    config.write_text("connections:\n  victim-db: {type: postgres, dsn: 'env:VICTIM_DSN', statement_timeout: 5}\n")
    settings = env(temporal_env_address, f"sql-{uuid.uuid4().hex[:8]}", config, books)
    diagnosis_dsn = dsn.replace("postgresql://postgres@", f"postgresql://{role}@")
    settings.update({"VICTIM_DSN": diagnosis_dsn, "REMEDIATE_MODE": "dry-run", "REMEDIATE_DATABASE_URL": audit})
    try:
        linted = await cli(["lint", str(books)], settings)
        refused_by_lint = {Path(line.split(":", 1)[0]).name for line in linted.stderr.splitlines() if ".yaml:" in line}
        refused_by_lint |= {Path(line.split(":", 1)[0]).name for line in linted.stdout.splitlines() if ".yaml:" in line}
        assert linted.returncode == 1 and refused_by_lint, linted
        accepted = tmp_path / "accepted"
        accepted.mkdir()
        for name in set(statements) - refused_by_lint:
            shutil.copy(books / name, accepted / name)
        assert (await cli(["lint", str(accepted)], settings)).returncode == 0

        alert = tmp_path / "alert.json"
        message = webhook_message({"alertname": "SqlProbe"}, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
        alert.write_text(json.dumps(message))
        settings["REMEDIATE_PLAYBOOKS"] = str(accepted)
        planned = await cli(["plan", "--alert", str(alert)], settings)
        blocks = {b.split(" · ", 1)[0].split("playbook ", 1)[-1]: b for b in planned.stdout.split("\nrun ")[1:]}
        for name in set(statements) - refused_by_lint:
            block = blocks[name.removesuffix(".yaml")]
            assert "marks volatile" in block or "planned, not run" in block, (name, statements[name], block)
        assert target_state(dsn) == before and victim.execute("select 1").fetchone() == (1,)

        assert (await cli(["migrate", "audit"], settings)).returncode == 0
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                reply = await http.post("/alertmanager", json=message)
                assert reply.json()["started"] == len(statements) - len(refused_by_lint), reply.text
            query = f"TaskQueue = '{settings['REMEDIATE_TASK_QUEUE']}' AND {RUNS} AND ExecutionStatus = 'Running'"
            for _ in range(600):
                if (await temporal_client.count_workflows(query)).count == 0 and _recorded(audit) == len(
                    statements
                ) - len(refused_by_lint):
                    break
                await asyncio.sleep(0.1)
            reasons = _reasons(audit)
            for playbook, (status, reason, summary) in reasons.items():
                assert (status == "failed" and "marks volatile" in reason) or "planned, not run" in summary, (
                    playbook,
                    status,
                    reason,
                    summary,
                )
        finally:
            assert await service.terminate() == 0
        assert target_state(dsn) == before and victim.execute("select 1").fetchone() == (1,)
    finally:
        victim.close()


def _recorded(audit: str) -> int:
    with psycopg.connect(audit) as db:
        row = db.execute("select count(*) from remediate_audit_runs where status = any(%s)", [["failed", "succeeded"]])
        return int((row.fetchone() or (0,))[0])


def _reasons(audit: str) -> dict[str, tuple[str, str, str]]:
    with psycopg.connect(audit) as db:
        rows = db.execute(
            "select playbook, status, state->>'reason', state->'steps'->0->>'summary' from remediate_audit_runs"
        )
        return {
            playbook: (status, reason or "", re.sub(r"\s+", " ", summary or ""))
            for playbook, status, reason, summary in rows
        }
