"""Runbook 003's target: Flovyn's `worker`, `workflow_execution` and `task_execution` tables."""

from __future__ import annotations

import uuid

import psycopg

SCHEMA = """
create table worker (id uuid primary key, worker_name text unique not null, status text not null,
                     last_heartbeat_at timestamptz not null);
create table workflow_execution (id uuid primary key, kind text not null, status text not null, worker_id text,
                                 updated_at timestamptz not null default now());
create table task_execution (id uuid primary key, workflow_execution_id uuid not null, status text not null,
                             worker_id text, updated_at timestamptz not null default now());
create table changes (tbl text not null, id text not null, status text not null);
create function note_change() returns trigger language plpgsql as $$
begin insert into changes values (TG_TABLE_NAME, new.id::text, new.status); return new; end $$;
create trigger w after update on worker for each row execute function note_change();
create trigger we after update on workflow_execution for each row execute function note_change();
create trigger te after update on task_execution for each row execute function note_change();
"""
HEARTBEATS = "select worker_name, status, extract(epoch from last_heartbeat_at) as value from worker"


def seed(
    dsn: str, dead: str | None = "worker-63767e2b", live: str = "worker-live", dead_workflows: int = 2
) -> dict[str, list[str]]:
    """A dead worker (heartbeat 2 days old) holding RUNNING workflows and tasks, and a live one holding others."""
    ids: dict[str, list[str]] = {"dead": [], "live": [], "dead_tasks": [], "live_tasks": []}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("insert into worker values (%s, %s, 'ONLINE', now())", [uuid.uuid4(), live])
        if dead:
            conn.execute(
                "insert into worker values (%s, %s, 'ONLINE', now() - interval '2 days')", [uuid.uuid4(), dead]
            )
        for owner, count in ((dead, dead_workflows if dead else 0), (live, 2)):
            key = "dead" if owner == dead else "live"
            for _ in range(count):
                wid, tid = uuid.uuid4(), uuid.uuid4()
                conn.execute(
                    "insert into workflow_execution values (%s, 'retry-workflow', 'RUNNING', %s, "
                    "now() - interval '2 days')",
                    [wid, owner],
                )
                conn.execute("insert into task_execution values (%s, %s, 'RUNNING', %s)", [tid, wid, owner])
                ids[key].append(str(wid))
                ids[f"{key}_tasks"].append(str(tid))
    return ids


def workflows(dsn: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        return {str(r[0]): (r[1], r[2]) for r in conn.execute("select id, status, worker_id from workflow_execution")}


def changes(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute("select tbl, id, status from changes order by 1, 2")]
