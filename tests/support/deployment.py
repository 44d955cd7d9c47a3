"""The service as deployed, for tests: its environment and config, replicas and the CLI as processes, alerts,
and waiting for runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from tests.support.crash import webhook_message
from tests.support.processes import REMEDIATE, ServiceProcess, start
from tests.support.stack import RUNS

TOKEN = "rails-token"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


ONCALL = "oncall-token-0123456789"


def write_config(path: Path, target_url: str, replica: str, alertmanager: str | None = None) -> Path:
    extra = f"  am: {{type: alertmanager, url: '{alertmanager}'}}\n" if alertmanager else ""
    path.write_text(
        f"connections:\n  target: {{type: http, base_url: '{target_url}', headers: {{X-Replica: {replica}}}}}\n"
        + extra
        + "approver_tokens: {oncall: 'env:ONCALL_TOKEN'}\n",
        encoding="utf-8",
    )
    return path


def env(address: str, queue: str, config: Path, playbooks: Path, **extra: str) -> dict[str, str]:
    """What a `remediate serve` replica of these drills is started with, in auto mode."""
    return {
        "REMEDIATE_TEMPORAL_ADDRESS": address,
        "REMEDIATE_TASK_QUEUE": queue,
        "REMEDIATE_PLAYBOOKS": str(playbooks),
        "REMEDIATE_CONFIG": str(config),
        "REMEDIATE_MODE": "auto",
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
        "REMEDIATE_DEDUPE_TTL": "1",
        "ONCALL_TOKEN": ONCALL,
        # The suite runs several test workers on two cores: a worker starved for 10 s is busy, not lost. No test
        # here kills a worker (the crash drills set their own); each one's subject is not the heartbeat.
        "REMEDIATE_HEARTBEAT_TIMEOUT": "30",
        **extra,
    }


def alert(alertname: str, key: str) -> dict[str, object]:
    return webhook_message({"alertname": alertname, "key": key}, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())


def many(alertname: str, keys: list[str]) -> dict[str, object]:
    message = alert(alertname, keys[0])
    message["alerts"] = [alert(alertname, key)["alerts"][0] for key in keys]  # type: ignore[index]
    return message


async def cli(args: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`remediate <args>` as its own process (the test's servers keep answering meanwhile)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    proc = await asyncio.create_subprocess_exec(
        REMEDIATE, *args, env={**full, **environment}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


async def until(done: Callable[[], bool], within: float = 30) -> None:
    """Poll a condition the target or the processes change (no event to wait on across processes)."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"not within {within}s"
        await asyncio.sleep(0.05)


async def states(client: Client, queue: str, playbook_name: str, closed_only: bool = False) -> list[RunState]:
    runs = TemporalRuns(client, queue)
    query = f"TaskQueue = '{queue}' AND {RUNS} AND WorkflowId STARTS_WITH '{playbook_name}/'"
    if closed_only:
        query += " AND ExecutionStatus != 'Running'"
    ids = [e.id async for e in client.list_workflows(query)]
    found = await asyncio.gather(*(runs.state(i) for i in ids))
    return [s for s in found if s is not None]


async def finished(client: Client, queue: str, name: str, want: int, within: float = 60) -> list[RunState]:
    """Once `want` runs of this playbook have closed (counted by visibility, so busy workers are not queried)."""
    query = f"TaskQueue = '{queue}' AND {RUNS} AND WorkflowId STARTS_WITH '{name}/' AND ExecutionStatus != 'Running'"
    deadline, closed = time.monotonic() + within, 0
    while time.monotonic() < deadline:
        closed = (await client.count_workflows(query)).count
        if closed >= want:
            return await states(client, queue, name, closed_only=True)
        await asyncio.sleep(0.2)
    raise AssertionError(f"{closed} of {want} {name} run(s) closed within {within}s")


@asynccontextmanager
async def replicas(
    tmp_path: Path,
    address: str,
    queue: str,
    shapes: list[tuple[str, list[str], str]],
    playbooks: Path,
    url: str,
    alertmanager: str | None = None,
    clean_log: bool = True,
    **extra: str,
) -> AsyncIterator[list[ServiceProcess]]:
    started = []
    try:
        for name, args, replica in shapes:
            config = write_config(tmp_path / f"{name}.yaml", url, replica, alertmanager)
            started.append(start(name, args, env(address, queue, config, playbooks, **extra), tmp_path))
        for process in started:
            await process.wait_ready()
        yield started
    finally:
        for process in started:
            assert await process.terminate() == 0, process.text()[-2000:]
        for process in started:  # a step failing on purpose is logged by the SDK with its traceback
            assert not clean_log or "Traceback" not in process.text(), process.text()[-3000:]
