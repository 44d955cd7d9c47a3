"""End to end: a real Alertmanager delivers the webhook, the service remediates a real Postgres via Temporal."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx2
import pytest
from temporalio.client import Client

from service.cli.devserver import start_dev_server
from service.runs.policy import Mode
from service.runs.state import RunState
from service.temporal.client import TemporalRuns, connect
from tests.support.jobs import job_states, seed_jobs, update_counts
from tests.support.paths import DATA
from tests.support.servers import Alertmanager, free_port, scratch, start_alertmanager
from tests.support.stack import RUNS, TOKEN, running_stack

CONFIG = DATA / "jobs-config.yaml"
PLAYBOOKS = DATA / "playbooks"


@pytest.fixture
def alertmanager_for() -> Iterator[list[Alertmanager]]:
    started: list[Alertmanager] = []
    yield started
    for am in started:
        am.process.stop()


def fire(am: Alertmanager, queue: str = "q1") -> None:
    am.post_alerts(
        [
            {
                "labels": {
                    "alertname": "JobsStuck",
                    "queue": queue,
                    "severity": "critical",
                    "instance": uuid.uuid4().hex[:8],
                },
                "annotations": {"summary": "jobs stuck"},
                "generatorURL": "http://prometheus/graph",
            }
        ]
    )


async def runs_on(client: Client, task_queue: str, want: int = 1, within: float = 45) -> list[RunState]:
    """Wait until `want` runs on this task queue are closed, and return their states."""
    deadline = time.monotonic() + within
    runs = TemporalRuns(client, task_queue)
    while time.monotonic() < deadline:
        closed = [
            e
            async for e in client.list_workflows(
                f"TaskQueue = '{task_queue}' AND {RUNS} AND ExecutionStatus != 'Running'"
            )
        ]
        if len(closed) >= want:
            states = [await runs.state(e.id) for e in closed]
            return [s for s in states if s is not None]
        await asyncio.sleep(0.3)
    raise TimeoutError(f"fewer than {want} closed run(s) on {task_queue} after {within}s")


async def test_auto_alertmanager_to_rows_changed_exactly_once(
    temporal_client: Client, jobs_db: str, alertmanager_for: list[Alertmanager]
) -> None:
    """Alertmanager → webhook → Temporal run → the stuck rows are requeued exactly once and verify passes."""
    seed_jobs(jobs_db, stuck=[1, 2, 3], fresh=[4], other_queue=[5])
    queue, port = f"e2e-{uuid.uuid4().hex[:8]}", free_port()
    am = start_alertmanager(scratch("am"), f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    alertmanager_for.append(am)
    async with running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue, port=port):
        fire(am)
        [state] = await runs_on(temporal_client, queue)
        await asyncio.sleep(3)  # let Alertmanager re-send on its group interval: still one change per row
    assert state.status == "succeeded", state.reason
    assert next(s for s in state.steps if s.id == "none-left").status == "ok"
    assert job_states(jobs_db) == {1: "pending", 2: "pending", 3: "pending", 4: "running", 5: "running"}
    assert update_counts(jobs_db) == {1: 1, 2: 1, 3: 1}


async def test_dry_run_alertmanager_to_a_plan_and_no_change(
    temporal_client: Client, jobs_db: str, alertmanager_for: list[Alertmanager]
) -> None:
    """The same path in dry-run ends with a plan naming the rows, and Postgres untouched."""
    seed_jobs(jobs_db, stuck=[1, 2])
    queue, port = f"e2e-{uuid.uuid4().hex[:8]}", free_port()
    am = start_alertmanager(scratch("am"), f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    alertmanager_for.append(am)
    async with running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.DRY_RUN, task_queue=queue, port=port):
        fire(am)
        [state] = await runs_on(temporal_client, queue)
    requeue = next(s for s in state.steps if s.id == "requeue")
    assert state.status == "succeeded" and requeue.status == "dry_run" and requeue.targets == ["row 1", "row 2"]
    assert job_states(jobs_db) == {1: "running", 2: "running"} and update_counts(jobs_db) == {}


async def test_temporal_down_gets_503_and_alertmanager_retries_until_remediated(
    jobs_db: str, alertmanager_for: list[Alertmanager]
) -> None:
    """While Temporal is down the receiver answers 503; once it is back, Alertmanager's retry gets the fix done."""
    seed_jobs(jobs_db, stuck=[1])
    temporal_port, port, queue = free_port(), free_port(), f"e2e-{uuid.uuid4().hex[:8]}"
    lazy = await connect(f"127.0.0.1:{temporal_port}", "default")
    am = start_alertmanager(scratch("am"), f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    alertmanager_for.append(am)
    async with (
        running_stack(lazy, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue, port=port, worker=False) as web,
        httpx2.AsyncClient(base_url=web.url) as http,
    ):
        fire(am)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = (await http.get("/metrics")).text
            if 'remediate_webhook_requests_total{code="503"}' in metrics:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("Alertmanager never got a 503")
        assert job_states(jobs_db) == {1: "running"}
        env = await start_dev_server(port=temporal_port)
        try:
            async with running_stack(env.client, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue, web=False):
                [state] = await runs_on(env.client, queue, within=90)
        finally:
            await env.shutdown()
        metrics = (await http.get("/metrics")).text
    assert 'remediate_webhook_requests_total{code="200"}' in metrics
    assert state.status == "succeeded", state.reason
    assert update_counts(jobs_db) == {1: 1}
