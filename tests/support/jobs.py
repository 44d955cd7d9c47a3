"""The jobs table the example playbooks fix: a database per test, seeded rows, and what happened to them."""

from __future__ import annotations

import uuid

import psycopg

from tests.support.servers import Postgres

JOBS_SCHEMA = """
create table jobs (id int primary key, queue text not null, status text not null, worker text,
                   updated_at timestamptz not null default now());
create table job_updates (job_id int not null, at timestamptz not null default clock_timestamp());
create function count_update() returns trigger language plpgsql as $$
begin insert into job_updates (job_id) values (new.id); return new; end $$;
create trigger jobs_updated after update on jobs for each row execute function count_update();
"""


def new_database(postgres: Postgres) -> str:
    """A fresh, empty database on the session's Postgres server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return postgres.dsn.rsplit("/", 1)[0] + f"/{name}"


def seed_jobs(dsn: str, stuck: list[int], fresh: list[int] = (), other_queue: list[int] = ()) -> None:  # type: ignore[assignment]
    """Stuck jobs are `running` for an hour on queue q1; fresh ones were updated now; others sit on q2."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in stuck:
            conn.execute("insert into jobs values (%s, 'q1', 'running', 'w1', now() - interval '1 hour')", [i])
        for i in fresh:
            conn.execute("insert into jobs values (%s, 'q1', 'running', 'w2', now())", [i])
        for i in other_queue:
            conn.execute("insert into jobs values (%s, 'q2', 'running', 'w3', now() - interval '1 hour')", [i])


def job_states(dsn: str) -> dict[int, str]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: r[1] for r in conn.execute("select id, status from jobs order by id")}


def update_counts(dsn: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: r[1] for r in conn.execute("select job_id, count(*) from job_updates group by job_id")}
