"""Runs through the real Temporal dev server and a real Postgres, driven over the real webhook."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path

import httpx2
import pytest
from temporalio.client import Client

from service.cli.main import main
from service.runs.listing import RunQuery
from service.runs.policy import Mode
from service.runs.state import short_id
from service.temporal.client import TemporalRuns, connect
from tests.support.jobs import job_states, seed_jobs, update_counts
from tests.support.messages import message
from tests.support.paths import DATA, ROOT
from tests.support.servers import free_port
from tests.support.stack import TOKEN, run_handle, running_stack

CONFIG = DATA / "jobs-config.yaml"
PLAYBOOKS = DATA / "playbooks"  # holds a copy of the shipped stuck-jobs.yaml, kept equal by a test
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def wait_closed(client: Client, run_id: str, within: float = 30) -> TemporalRuns:
    runs = TemporalRuns(client, "unused")
    await asyncio.wait_for((await run_handle(client, run_id, within)).result(), within)
    return runs


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


async def test_auto_mode_requeues_stuck_jobs_exactly_once(temporal_client: Client, jobs_db: str) -> None:
    """The example playbook in auto changes exactly the stuck rows, once each, and verify passes."""
    seed_jobs(jobs_db, stuck=[1, 2], fresh=[3], other_queue=[4])
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        body = message()
        response = await http.post("/alertmanager", json=body)
        assert response.json() == {"started": 1, "duplicates": 0, "resolved": 0, "unmatched": 0}
        assert (await http.post("/alertmanager", json=body)).json()["duplicates"] == 1
        alert = body["alerts"][0]  # type: ignore[index]
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        state = await (await wait_closed(temporal_client, run_id)).state(run_id)
    assert state is not None and state.status == "succeeded", state
    assert job_states(jobs_db) == {1: "pending", 2: "pending", 3: "running", 4: "running"}
    assert update_counts(jobs_db) == {1: 1, 2: 1}


async def test_dry_run_changes_nothing_and_records_the_plan(temporal_client: Client, jobs_db: str) -> None:
    """In dry-run the run records that 2 rows would change, and no row is touched."""
    seed_jobs(jobs_db, stuck=[1, 2])
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.DRY_RUN, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        body = message()
        assert (await http.post("/alertmanager", json=body)).json()["started"] == 1
        alert = body["alerts"][0]  # type: ignore[index]
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        state = await (await wait_closed(temporal_client, run_id)).state(run_id)
    assert state is not None and state.status == "succeeded" and state.mode == Mode.DRY_RUN
    requeue = next(s for s in state.steps if s.id == "requeue")
    assert requeue.status == "dry_run" and requeue.result is not None and requeue.result["rowcount"] == 2
    assert requeue.targets == ["row 1", "row 2"]
    assert job_states(jobs_db) == {1: "running", 2: "running"} and update_counts(jobs_db) == {}


async def test_five_concurrent_deliveries_make_one_run(temporal_client: Client, jobs_db: str) -> None:
    """The same alert POSTed 5 times at once yields one run and one change per row."""
    seed_jobs(jobs_db, stuck=[1])
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        body = message()
        replies = await asyncio.gather(*(http.post("/alertmanager", json=body) for _ in range(5)))
        counts = [r.json() for r in replies]
        alert = body["alerts"][0]  # type: ignore[index]
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        await wait_closed(temporal_client, run_id)
    assert sum(c["started"] for c in counts) == 1 and sum(c["duplicates"] for c in counts) == 4
    listed = [e async for e in temporal_client.list_workflows(f"WorkflowId = '{run_id}'")]
    assert len(listed) == 1
    assert update_counts(jobs_db) == {1: 1}


async def test_resolved_before_action_skips_the_write(temporal_client: Client, jobs_db: str, tmp_path: Path) -> None:
    """A resolved notification during diagnosis ends the run as resolved_before_action with no write."""
    seed_jobs(jobs_db, stuck=[1])
    slow = (
        (ROOT / "playbooks" / "stuck-jobs.yaml")
        .read_text()
        .replace("select id from jobs where", "select id from jobs, pg_sleep(2) where")
    )
    (tmp_path / "slow.yaml").write_text(slow)
    async with (
        running_stack(temporal_client, CONFIG, tmp_path, Mode.AUTO, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        firing = message()
        alert = firing["alerts"][0]  # type: ignore[index]
        assert (await http.post("/alertmanager", json=firing)).json()["started"] == 1
        await asyncio.sleep(0.5)
        resolved = message("resolved", alert["fingerprint"], alert["startsAt"])
        assert (await http.post("/alertmanager", json=resolved)).json()["resolved"] == 1
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        state = await (await wait_closed(temporal_client, run_id)).state(run_id)
    assert state is not None and state.status == "resolved_before_action" and state.resolved
    assert job_states(jobs_db) == {1: "running"}


async def test_webhook_contract_errors(temporal_client: Client, jobs_db: str) -> None:
    """401 without auth, 413 over the limit, 400 with a reason, unmatched counted, health answers."""
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.DRY_RUN, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url) as http,
    ):
        assert (await http.post("/alertmanager", json=message())).status_code == 401
        assert (
            await http.post("/alertmanager", json=message(), headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        assert (await http.post("/alertmanager", content=b"x" * 2_000_000, headers=AUTH)).status_code == 413
        bad = await http.post("/alertmanager", content=b'{"version": "3"}', headers=AUTH)
        assert bad.status_code == 400 and "not an Alertmanager v4" in bad.json()["error"]
        assert (await http.post("/alertmanager", content=b"{nope", headers=AUTH)).status_code == 400
        other = await http.post("/alertmanager", json=message(severity="info"), headers=AUTH)
        assert other.json() == {"started": 0, "duplicates": 0, "resolved": 0, "unmatched": 1}
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"ready": True}  # details only for a caller with credentials
        ready = (await http.get("/readyz", headers=AUTH)).json()
        assert ready["checks"] == {"worker": "ok", "temporal": "ok", "connection:jobs-db": "ok"}
        assert "remediate_webhook_alerts_total" in (await http.get("/metrics")).text


async def test_basic_auth_is_accepted(temporal_client: Client, jobs_db: str) -> None:
    """Basic credentials work as the alternative to a bearer token; wrong ones get 401."""
    from service.web.credentials import WebAuth

    auth = WebAuth(username="am", password="secret")
    assert auth.allows("Basic " + __import__("base64").b64encode(b"am:secret").decode())
    assert not auth.allows("Basic " + __import__("base64").b64encode(b"am:wrong").decode())
    assert not auth.allows("Basic !!notbase64")


async def test_temporal_unreachable_answers_503(jobs_db: str) -> None:
    """With nothing listening at the Temporal address the webhook answers 503, so Alertmanager retries."""
    client = await connect(f"127.0.0.1:{free_port()}", "default")
    async with (
        running_stack(client, CONFIG, PLAYBOOKS, Mode.DRY_RUN, task_queue=queue_name(), worker=False) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        reply = await http.post("/alertmanager", json=message())
        assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
        assert (await http.get("/readyz")).status_code == 503


async def test_runs_list_and_show_print_runs(
    temporal_client: Client,
    temporal_env_address: str,
    jobs_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`remediate runs list` prints a header, the run's final status, its playbook and its short id; filters by
    playbook, status and time narrow it; `runs show` prints the run."""
    seed_jobs(jobs_db, stuck=[7])
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.DRY_RUN, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        await http.post("/alertmanager", json=message())  # an earlier run of the same playbook, for the paging below
        body = message()
        await http.post("/alertmanager", json=body)
        alert = body["alerts"][0]  # type: ignore[index]
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        await wait_closed(temporal_client, run_id)
        shown = await http.get(f"/api/v1/runs/{run_id}")
        assert shown.json()["status"] == "succeeded"
    monkeypatch.setenv("REMEDIATE_TEMPORAL_ADDRESS", temporal_env_address)
    listed: list[str] = []
    # Newest first, this playbook's only: the suite's other tests start hundreds of runs of other playbooks in the same
    # namespace meanwhile, which pushed ours off an unfiltered newest 50.
    for _ in range(30):  # visibility is eventually consistent: the closed run is listed within seconds
        assert await asyncio.to_thread(main, ["runs", "list", "--playbook", "stuck-jobs", "--limit", "50"]) == 0
        listed = capsys.readouterr().out.splitlines()
        if any(row.endswith(run_id) for row in listed):
            break
        await asyncio.sleep(1)
    assert listed[0].split()[:4] == ["STARTED", "(UTC)", "ID", "STATUS"]
    line = next(row for row in listed if row.endswith(run_id))
    short = line.split()[2]
    assert short == short_id(run_id) and line.split()[3:5] == ["succeeded", "stuck-jobs"], line
    since = ["runs", "list", "--playbook", "stuck-jobs", "--status", "succeeded", "--since", "1h", "--limit", "50"]
    assert await asyncio.to_thread(main, since) == 0
    assert run_id in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["runs", "list", "--status", "failed", "--playbook", "stuck-jobs"]) == 0
    assert run_id not in capsys.readouterr().out
    # `runs show SHORT` looks among Temporal's newest 1000 runs: the suite's shared namespace holds more, so the dev
    # test shows a short id against a Temporal of its own.
    assert await asyncio.to_thread(main, ["runs", "show", run_id]) == 0
    out = capsys.readouterr().out
    assert "would change 1 row(s)" in out and "row 7" in out
    assert await asyncio.to_thread(main, ["runs", "show", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    # Without an audit store the list pages Temporal's visibility by start time: the next page is strictly older.
    runs = TemporalRuns(temporal_client, "unused")
    first = await runs.list(RunQuery(limit=1, playbook="stuck-jobs"))
    assert len(first.runs) == 1 and first.older is not None
    second = await runs.list(RunQuery(limit=1, playbook="stuck-jobs", before=first.older))
    assert second.runs and second.runs[0].started < first.runs[0].started  # type: ignore[operator]
    succeeded = await runs.list(RunQuery(limit=5, playbook="stuck-jobs", status="succeeded"))
    assert {r.status for r in succeeded.runs} <= {"succeeded"}


def test_the_test_copy_of_the_example_is_the_shipped_one() -> None:
    """The integration tests run the shipped example playbook, byte for byte."""
    assert (PLAYBOOKS / "stuck-jobs.yaml").read_bytes() == (ROOT / "playbooks" / "stuck-jobs.yaml").read_bytes()


async def test_reads_run_as_local_activities_and_the_history_still_shows_every_step(
    temporal_client: Client, jobs_db: str
) -> None:
    """Diagnose and verify are local-activity markers in the history (no task-queue round trip); the write is a
    regular activity with a heartbeat timeout; the run record lists all three steps."""
    seed_jobs(jobs_db, stuck=[1])
    async with (
        running_stack(temporal_client, CONFIG, PLAYBOOKS, Mode.AUTO, task_queue=queue_name()) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        body = message()
        await http.post("/alertmanager", json=body)
        alert = body["alerts"][0]  # type: ignore[index]
        run_id = f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"
        state = await (await wait_closed(temporal_client, run_id)).state(run_id)
        history = await temporal_client.get_workflow_handle(run_id).fetch_history()
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(markers) >= 2  # `stuck` and `none-left` (plus the governor's asks), each a local-activity marker
    steps = [
        (a.activity_type.name, a.heartbeat_timeout.seconds > 0) for a in scheduled if a.activity_type.name != "settle"
    ]
    assert steps == [("run_step", True)]  # only the write (besides one `settle`: see RemediationWorkflow._settle)
    assert state is not None and [(r.id, r.status) for r in state.steps] == [
        ("stuck", "ok"),
        ("requeue", "ok"),
        ("none-left", "ok"),
    ]
