"""Crash drills by hand (not in CI): many SIGKILL trials per point and write type, then a table.

    .venv/bin/python -m tests.faults.crash_table [--rounds 4] [--per-kind 5]

Each round starts a faulty worker, sends `per-kind` alerts of each write type (a Postgres write, a Temporal
signal, an HTTP write), holds them at one point (diagnose, in flight, applied but unreported, verify, waiting at
a gate), starts a replacement worker and SIGKILLs the faulty one. Every trial's run must end `succeeded` with
its write applied exactly once; the table counts writes applied 0, 1 and 2+ times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections import Counter

import psycopg

from service.cli.devserver import start_dev_server
from tests.support.crash import (
    KINDS,
    POINTS,
    SLOW_TRIGGER,
    Cluster,
    base_env,
    cluster_config,
    crash_round,
    pokeable_worker,
    start_cluster_alertmanager,
    write_playbooks,
)
from tests.support.jobs import JOBS_SCHEMA
from tests.support.processes import REMEDIATE
from tests.support.servers import scratch, serving, start_postgres
from tests.targets.jobs_api import JobsApi


async def drill(rounds: int, per_kind: int) -> dict[tuple[str, str], Counter[str]]:
    root = scratch("faults")
    pg = start_postgres(scratch("faults-pg"))
    env_server = await start_dev_server()
    address = env_server.client.service_client.config.target_host
    table: dict[tuple[str, str], Counter[str]] = {}
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(JOBS_SCHEMA)
            conn.execute(SLOW_TRIGGER)
        api, target_queue = JobsApi(), f"targets-{uuid.uuid4().hex[:8]}"
        async with serving(api.app()) as api_url, pokeable_worker(env_server.client, target_queue):
            (root / "config.yaml").write_text(cluster_config("CRASH_DB_DSN", address, api_url))
            env = base_env(address, "faults", write_playbooks(root / "playbooks"), root / "config.yaml", dsn)
            migrate = await asyncio.create_subprocess_exec(REMEDIATE, "migrate", "jobs-db", env={**os.environ, **env})
            assert await migrate.wait() == 0
            cluster = Cluster(env_server.client, dsn, api, env, root / "logs", target_queue=target_queue)
            webs = [cluster.web(), cluster.web()]
            for web in webs:
                await web.wait_ready()
            start_cluster_alertmanager(cluster, root / "am")
            try:
                for point in POINTS:
                    for n in range(rounds):
                        results = await crash_round(cluster, point, per_kind)
                        for target, state, writes in results:
                            cell = table.setdefault((point, target.kind), Counter())
                            cell["trials"] += 1
                            cell["succeeded"] += state.status == "succeeded"
                            cell[f"writes {min(writes, 2)}"] += 1
                        print(f"{point} round {n + 1}/{rounds}: {[(t.kind, s.status, w) for t, s, w in results]}")
            finally:
                assert cluster.alertmanager is not None
                cluster.alertmanager.process.stop()
                for proc in cluster.workers + webs:
                    proc.kill()
    finally:
        await env_server.shutdown()
        pg.stop()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per point")
    parser.add_argument("--per-kind", type=int, default=5, help="alerts per write type in each round")
    args = parser.parse_args()
    table = asyncio.run(drill(args.rounds, args.per_kind))
    print(f"\n| point | write | trials | runs succeeded | writes applied 0 | 1 | 2+ |\n|{'---|' * 7}")
    for point in POINTS:
        for kind in KINDS:
            c = table.get((point, kind), Counter())
            print(
                f"| {point} | {kind} | {c['trials']} | {c['succeeded']} | "
                f"{c['writes 0']} | {c['writes 1']} | {c['writes 2']} |"
            )


if __name__ == "__main__":
    main()
