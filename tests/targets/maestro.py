"""Runbook 004's target: Maestro's `runs` table in Postgres and its BullMQ queue (`maestro:queue:*`) in Redis."""

from __future__ import annotations

import psycopg
import redis

SCHEMA = """
create table runs (id text primary key, status text not null, current_step text, failure_reason text,
                   updated_at timestamptz not null default now());
create table run_changes (id text not null, status text not null, failure_reason text);
create function note_run() returns trigger language plpgsql as $$
begin insert into run_changes values (new.id, new.status, new.failure_reason); return new; end $$;
create trigger runs_changed after update on runs for each row execute function note_run();
"""
AGES = "select id as run_id, extract(epoch from now() - updated_at) as value from runs where status = 'RUNNING'"
BASE = "maestro:queue"


def seed(dsn: str, redis_url: str, stuck: list[str] = (), healthy: list[str] = ()) -> None:  # type: ignore[assignment]
    """Stuck runs whose active jobs lost their locks (stalled), next to healthy runs whose jobs hold locks."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for run in stuck:
            conn.execute(
                "insert into runs values (%s, 'RUNNING', 'inference', null, now() - interval '2 hours')", [run]
            )
        for run in healthy:
            conn.execute("insert into runs values (%s, 'RUNNING', 'inference', null, now())", [run])
    client = redis.Redis.from_url(redis_url)
    for run in [*stuck, *healthy]:
        client.hset(
            f"{BASE}:{run}",
            mapping={"name": "run-step", "data": f'{{"runId": "{run}"}}', "processedOn": "1", "attemptsMade": "0"},
        )
        client.lpush(f"{BASE}:active", run)
    for run in healthy:
        client.set(f"{BASE}:{run}:lock", "worker-token", px=600_000)
    client.close()


def runs(dsn: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("select id, status, failure_reason from runs")}


def changes(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute("select id, status from run_changes order by id")]


def queue(redis_url: str) -> dict[str, list[str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {
            "active": sorted(str(v) for v in client.lrange(f"{BASE}:active", 0, -1)),
            "wait": sorted(str(v) for v in client.lrange(f"{BASE}:wait", 0, -1)),
        }
    finally:
        client.close()
