"""Limits that pace rather than drop (issue 21): a storm over `max_concurrent` through two `serve` replicas is
written in full, never more at once than the limit allows, and the replicas drain on SIGTERM right after it."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx2
from temporalio.client import Client

from tests.support.deployment import AUTH, cli, many, replicas
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving

ALERTS = 40
LIMIT = 3
GRACE = 5


async def test_a_storm_over_max_concurrent_waits_its_turn_and_every_key_is_written_once(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """40 alerts, one key each, `max_concurrent: 3` with a cooldown per key, two `serve` replicas in auto mode, a
    global budget: every key is written exactly once (none refused for the limit), the target never sees more than
    3 writes at once; a second wave waits in line, shown by `remediate runs list` (`waiting_for_slot #N`) and the
    replicas' gauges, and both replicas then exit 0 on SIGTERM within the grace period while those runs are open."""
    target, queue = RailTarget(write_seconds=0.3), f"paced-{uuid.uuid4().hex[:8]}"
    switch_env = {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue}
    books = tmp_path / "playbooks"
    books.mkdir()
    limits = f"limits: {{max_concurrent: {LIMIT}, cooldown: 10m}}"
    (books / "paced.yaml").write_text(playbook("paced", "Paced", limits))
    shapes = [("a", ["serve"], "a"), ("b", ["serve"], "b")]
    keys = [f"k{i}" for i in range(ALERTS)]
    async with (
        serving(target.app()) as url,
        replicas(
            tmp_path,
            temporal_env_address,
            queue,
            shapes,
            books,
            url,
            REMEDIATE_MAX_WRITES_PER_HOUR="1000",
            REMEDIATE_SHUTDOWN_GRACE=str(GRACE),
        ) as (a, b),
    ):
        if True:
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http:
                for i in range(0, ALERTS, 10):
                    reply = await http.post(
                        f"{(a, b)[i // 10 % 2].url}/alertmanager", json=many("Paced", keys[i : i + 10])
                    )
                    assert reply.status_code == 200, reply.text
            began = time.monotonic()
            while len(target.writes) < ALERTS:
                assert time.monotonic() - began < 240, f"{len(target.writes)} of {ALERTS} written"
                await asyncio.sleep(0.2)
            # A second wave of slow writes, left open: runs wait in line, `runs list` and the gauge show it, and
            # SIGTERM (the context's exit) finds runs waiting for their turn.
            target.write_seconds = 3
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http:
                more = [f"m{i}" for i in range(20)]
                assert (await http.post(f"{a.url}/alertmanager", json=many("Paced", more))).status_code == 200
                listed = ""
                while "waiting_for_slot #" not in listed:
                    assert time.monotonic() - began < 300, listed
                    listed = (await cli(["runs", "list", "--limit", "100"], switch_env)).stdout
                    await asyncio.sleep(0.5)
                metrics = ""
                while 'remediate_runs_waiting_for_slot{playbook="paced"}' not in metrics:
                    assert time.monotonic() - began < 300
                    await asyncio.sleep(0.5)
                    metrics = (await http.get(f"{b.url}/metrics")).text
                waits = [line for line in metrics.splitlines() if line.startswith("remediate_grant_wait_seconds_count")]
                assert waits and float(waits[0].split()[-1]) > 0, waits
            # Drained within the grace (5 s) and a margin for a loaded machine, however many runs are open.
            assert await a.terminate(within=GRACE + 25) == 0
            assert await b.terminate(within=GRACE + 25) == 0
    assert all(target.writes[key] == 1 for key in keys), target.writes
    assert target.most_in_flight <= LIMIT, target.most_in_flight
    assert max(target.writes.values()) == 1
