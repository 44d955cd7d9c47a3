"""The kill switch while writes flow (issue 21, item 1): `remediate kill-switch on` returns only once no replica can
start another write, and every replica refuses from its own view of the switch, without asking the governor."""

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

TRIALS = 2  # the 20-trial drill with its timing is tests/bench/storm.py's; this one asserts the rule


async def test_no_write_starts_after_the_kill_switch_command_returns(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Alerts stream into two `serve` replicas in auto mode and writes reach the target from both; in each trial
    `remediate kill-switch on` (a process) returns, and no write reaches the target after that moment, while alerts
    keep coming; off again, writes resume. The time from the command's start to each replica's last write is
    printed (a bench figure, not an assertion)."""
    target, queue = RailTarget(), f"flow-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "flow.yaml").write_text(playbook("kill-flow", "KillFlow"))
    switch_env = {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue}
    shapes = [("a", ["serve"], "a"), ("b", ["serve"], "b")]
    async with (
        serving(target.app()) as url,
        replicas(tmp_path, temporal_env_address, queue, shapes, books, url) as (
            a,
            b,
        ),
    ):
        feeding, sent = asyncio.Event(), [0]

        async def feed() -> None:
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http:
                while not feeding.is_set():
                    keys = [f"k{sent[0] + i}" for i in range(2)]
                    sent[0] += len(keys)
                    replica = (a, b)[sent[0] // 2 % 2]
                    assert (await http.post(f"{replica.url}/alertmanager", json=many("KillFlow", keys))).is_success
                    await asyncio.sleep(0.2)  # a steady stream, light enough for a loaded CI machine

        feeder = asyncio.create_task(feed())
        rows = []
        try:
            for trial in range(TRIALS):
                started = time.monotonic()
                while {r for t, _, r in target.write_log if t > started} != {"a", "b"}:
                    assert time.monotonic() - started < 180, f"writes did not flow from both replicas: {target.writes}"
                    await asyncio.sleep(0.1)
                at = time.monotonic()
                flipped = await cli(["kill-switch", "on", "--reason", f"flow {trial}", "--as", "drill"], switch_env)
                returned = time.monotonic()
                assert flipped.returncode == 0, flipped.stderr
                await asyncio.sleep(2)  # alerts keep coming meanwhile
                late = [(t - returned, key, r) for t, key, r in target.write_log if t > returned]
                assert late == [], late
                last = {r: max(t for t, _, rr in target.write_log if rr == r) - at for r in ("a", "b")}
                rows.append((trial, returned - at, last))
                assert (await cli(["kill-switch", "off", "--as", "drill"], switch_env)).returncode == 0
        finally:
            feeding.set()
            await feeder
    for trial, command, last in rows:
        print(
            f"\ntrial {trial}: command {command:.2f} s; last write after its start: "
            + ", ".join(f"{r} {s:.2f} s" for r, s in sorted(last.items()))
        )
    assert all(count == 1 for count in target.writes.values()), "a key written twice"
