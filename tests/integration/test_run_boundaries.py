"""An error in workflow code, wherever it is raised, ends the run with its reason: it never fails the workflow
task, which Temporal would retry for ever while the run holds its place."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from service.alerts.webhook import Alert
from service.durable.workflows import RemediationWorkflow
from service.playbooks.loader import load_playbooks
from service.runs.deadline import longest_run
from service.runs.engine import Run
from service.runs.policy import Mode
from service.runs.state import RunInput, RunState
from tests.support.jobs import seed_jobs
from tests.support.paths import DATA
from tests.support.stack import TOKEN, run_handle, running_stack


def _message(fingerprint: str) -> dict[str, object]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "warning"},
        "startsAt": datetime.now(UTC).isoformat(),
        "fingerprint": fingerprint,
    }
    return {"version": "4", "status": "firing", "alerts": [alert]}


async def _outcome(client: Client, url: str) -> tuple[RunState, bool]:
    """The run's final state, and whether its execution failed (True) or completed."""
    fingerprint = uuid.uuid4().hex[:16]
    async with httpx2.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert (await http.post("/alertmanager", json=_message(fingerprint))).json()["started"] == 1
    query = f"WorkflowId STARTS_WITH 'stuck-jobs/{fingerprint}/'"
    ids: list[str] = []
    for _ in range(300):
        ids = [e.id async for e in client.list_workflows(query)]
        if ids:
            break
        await asyncio.sleep(0.1)
    handle = await run_handle(client, ids[0])
    try:
        return RunState.model_validate(await asyncio.wait_for(handle.result(), 30)), False
    except WorkflowFailureError as failed:
        cause = failed.cause
        assert isinstance(cause, ApplicationError) and cause.type == "RunFailed", cause
        return RunState.model_validate(cause.details[0]), True


def _inside(monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(*_args: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(Run, "_plan", plan)


def _outside(monkeypatch: pytest.MonkeyPatch) -> None:
    async def announce(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(RemediationWorkflow, "_announce", announce)


async def test_a_bug_inside_the_engine_fails_the_run_with_its_reason(
    temporal_client: Client, jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RuntimeError raised while the engine plans ends the run `failed`, at once, with 'internal error' and
    what had been written in its reason."""
    seed_jobs(jobs_db, stuck=[1])
    _inside(monkeypatch)
    queue = f"bug-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.DRY_RUN, task_queue=queue
    ) as stack:
        state, failed = await _outcome(temporal_client, stack.url)
    assert failed and state.status == "failed"
    assert "internal error: RuntimeError: injected; the run stopped here (nothing was written)" in state.reason


async def test_a_bug_after_the_outcome_keeps_the_outcome_and_completes(
    temporal_client: Client, jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RuntimeError raised in the workflow's own code after the run reached its outcome (announcing it) keeps
    that outcome and completes the execution, so no later delivery attempts the occurrence again."""
    seed_jobs(jobs_db, stuck=[1])
    _outside(monkeypatch)
    queue = f"bug-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.DRY_RUN, task_queue=queue
    ) as stack:
        state, failed = await _outcome(temporal_client, stack.url)
    assert not failed and state.status == "succeeded"
    assert "afterwards internal error: RuntimeError: injected" in state.reason


async def test_a_run_is_started_with_its_playbooks_own_lifetime(temporal_client: Client, jobs_db: str) -> None:
    """Every run carries an execution timeout computed from its playbook's own timeouts: past it, Temporal ends the
    run instead of leaving it open without progress."""
    seed_jobs(jobs_db, stuck=[1])
    queue = f"life-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.DRY_RUN, task_queue=queue
    ) as stack:
        state, failed = await _outcome(temporal_client, stack.url)
    assert not failed and state.status == "succeeded"
    described = await temporal_client.get_workflow_handle(state.run_id).describe()
    timeout = described.raw_description.execution_config.workflow_execution_timeout.ToTimedelta()
    playbook = next(p for p in load_playbooks([DATA / "playbooks"]) if p.name == "stuck-jobs")
    alert = Alert.model_validate(
        {"status": "firing", "labels": state.labels, "startsAt": "2026-12-01T00:00:00Z", "fingerprint": "f"}
    )
    expected = longest_run(RunInput(run_id="x", playbook=playbook, alert=alert, mode=Mode.DRY_RUN))
    # The governance the service adds (effectiveness) only lengthens it: at least the playbook's own bound.
    assert timeout >= expected and timeout < timedelta(days=1), timeout
