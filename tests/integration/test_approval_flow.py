"""Approval gates through the real Temporal dev server, Postgres and a local Slack endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import psycopg
import pytest
from temporalio.client import Client

from service.app.compose import Notifiers
from service.cli.main import main
from service.notify.slack.kind import SlackSettings
from service.runs.policy import Mode
from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from tests.support.fake_slack import FakeSlack
from tests.support.jobs import job_states, seed_jobs, update_counts
from tests.support.paths import ROOT
from tests.support.servers import serving
from tests.support.stack import TOKEN, running_stack, state_now

SIGNING = "signing-secret-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEOPLE = ("U_ALICE", "U_BOB", "U_MALLORY")


def approver(user: str) -> dict[str, str]:
    """The Authorization header of this person's approver token (the webhook's token cannot decide)."""
    return {"Authorization": f"Bearer approver-token-of-{user}"}


@dataclass
class World:
    base: Path
    slack: FakeSlack
    slack_url: str
    client: Client
    dsn: str

    def settings(self) -> dict[str, Any]:
        slack = SlackSettings(
            bot_token="xoxb-test", signing_secret=SIGNING, channel="C_OPS", api_url=f"{self.slack_url}/api"
        )
        return {"notifiers": Notifiers({"slack": slack})}


def playbook(timeout: str = "30s", min_approvals: int = 1) -> str:
    text = (ROOT / "playbooks" / "stuck-jobs.yaml").read_text().replace("    approval: none\n", "")
    return text + f"approvers: [oncall]\nmin_approvals: {min_approvals}\napproval_timeout: {timeout}\n"


@pytest.fixture
async def world(tmp_path: Path, temporal_client: Client, jobs_db: str) -> AsyncIterator[World]:
    slack = FakeSlack()
    tokens = ", ".join(f"{u}: 'file:{tmp_path / u}'" for u in PEOPLE)
    for user in PEOPLE:
        (tmp_path / user).write_text(approver(user)["Authorization"].removeprefix("Bearer "))
    (tmp_path / "config.yaml").write_text(
        "connections: {jobs-db: {type: postgres, dsn: 'env:JOBS_DB_DSN'}}\n"
        "approvers: [oncall]\napprover_groups: {oncall: [U_ALICE, U_BOB]}\n"
        f"approver_tokens: {{{tokens}}}\n"
    )
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "stuck-jobs.yaml").write_text(playbook())
    async with serving(slack.app()) as url:
        yield World(tmp_path, slack, url, temporal_client, jobs_db)


def alert(status: str = "firing", fingerprint: str | None = None, starts: str | None = None) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "critical"},
                "startsAt": starts or datetime.now(UTC).isoformat(),
                "fingerprint": fingerprint or uuid.uuid4().hex[:16],
            }
        ],
    }


def run_id_of(message: dict[str, Any]) -> str:
    a = message["alerts"][0]
    return f"stuck-jobs/{a['fingerprint']}/{int(datetime.fromisoformat(a['startsAt']).timestamp())}"


async def wait_for(runs: TemporalRuns, run_id: str, status: str, within: float = 20) -> RunState:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = await state_now(runs, run_id)
        if state is not None and state.status == status:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never reached {status}: {state}")


def slack_click(user: str, run_id: str, verdict: str = "approve") -> tuple[bytes, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [
            {
                "action_id": verdict,
                "action_ts": f"{time.time():.6f}",
                "value": json.dumps({"run": run_id, "gate": "act"}),
            }
        ],
    }
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SIGNING.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def queue() -> str:
    return f"appr-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def waiting_run(
    world: World, mode: Mode = Mode.AUTO, task_queue: str | None = None, message: dict[str, Any] | None = None
) -> AsyncIterator[tuple[httpx2.AsyncClient, TemporalRuns, str]]:
    """The service running, one alert delivered, and its run waiting at the gate."""
    message = message or alert()
    async with (
        running_stack(
            world.client,
            world.base / "config.yaml",
            world.base / "playbooks",
            mode,
            task_queue=task_queue or queue(),
            **world.settings(),
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        await http.post("/alertmanager", json=message)
        runs = TemporalRuns(world.client, "")
        await wait_for(runs, run_id_of(message), "awaiting_approval")
        yield http, runs, run_id_of(message)


async def test_slack_approval_after_a_refused_click_acts_once(world: World) -> None:
    """The request names the rows; an outsider's click is refused visibly; an approver's click leads to one write."""
    seed_jobs(world.dsn, stuck=[1, 2], fresh=[3])
    async with waiting_run(world) as (http, runs, run_id):
        assert job_states(world.dsn) == {1: "running", 2: "running", 3: "running"}
        for _ in range(50):
            if world.slack.messages("chat.postMessage"):
                break
            await asyncio.sleep(0.1)
        [posted] = world.slack.messages("chat.postMessage")
        assert posted["channel"] == "C_OPS" and "row 1, row 2" in json.dumps(posted["blocks"])
        raw, headers = slack_click("U_MALLORY", run_id)
        assert (await http.post("/slack/interactions", content=raw, headers=headers)).status_code == 200
        raw, headers = slack_click("U_ALICE", run_id)
        assert (await http.post("/slack/interactions", content=raw, headers=headers)).status_code == 200
        state = await wait_for(runs, run_id, "succeeded")
    assert update_counts(world.dsn) == {1: 1, 2: 1}
    assert state.gate is not None and [d.outcome for d in state.gate.decisions] == ["refused", "counted"]
    updates = json.dumps(world.slack.messages("chat.update"))
    assert "U_MALLORY" in updates and "not an approver" in updates and "Approved" in updates
    assert "Outcome: succeeded: 1 write(s) done; verify passed" in updates


async def test_api_reject_writes_nothing_and_later_approvals_change_nothing(world: World) -> None:
    """A rejection through the API ends the run; an approval after it is ignored with 409."""
    seed_jobs(world.dsn, stuck=[1])
    async with waiting_run(world) as (http, runs, run_id):
        refused = await http.post(
            f"/api/v1/runs/{run_id}/approve", json={"approver": "U_MALLORY"}, headers=approver("U_MALLORY")
        )
        assert refused.status_code == 403 and refused.json()["outcome"] == "refused"
        rejected = await http.post(
            f"/api/v1/runs/{run_id}/reject", json={"approver": "U_BOB", "decision_id": "d-1"}, headers=approver("U_BOB")
        )
        assert rejected.status_code == 200 and rejected.json()["outcome"] == "counted"
        again = await http.post(
            f"/api/v1/runs/{run_id}/reject", json={"approver": "U_BOB", "decision_id": "d-1"}, headers=approver("U_BOB")
        )
        assert again.json()["outcome"] in ("duplicate", "counted")
        state = await wait_for(runs, run_id, "rejected")
        late = await http.post(
            f"/api/v1/runs/{run_id}/approve", json={"approver": "U_ALICE"}, headers=approver("U_ALICE")
        )
        assert late.status_code == 409
    assert state.reason.startswith("rejected by U_BOB") and update_counts(world.dsn) == {}


async def test_an_unanswered_gate_expires_and_writes_nothing(world: World) -> None:
    """With a 2 s approval_timeout and no decision, the run ends expired and no row changes."""
    (world.base / "playbooks" / "stuck-jobs.yaml").write_text(playbook(timeout="2s"))
    seed_jobs(world.dsn, stuck=[1])
    async with waiting_run(world) as (_, runs, run_id):
        state = await wait_for(runs, run_id, "expired")
    assert update_counts(world.dsn) == {} and state.gate is not None and state.gate.status == "expired"
    assert "Expired" in json.dumps(world.slack.messages("chat.update"))


async def test_a_resolved_alert_cancels_the_pending_approval(world: World) -> None:
    """Alertmanager's resolved notification ends the wait; the message says so and nothing is written."""
    seed_jobs(world.dsn, stuck=[1])
    message = alert()
    async with waiting_run(world, message=message) as (http, runs, run_id):
        a = message["alerts"][0]
        resolved = await http.post("/alertmanager", json=alert("resolved", a["fingerprint"], a["startsAt"]))
        assert resolved.json()["resolved"] == 1
        state = await wait_for(runs, run_id, "resolved_before_action")
    assert update_counts(world.dsn) == {} and state.resolved
    assert "The alert resolved" in json.dumps(world.slack.messages("chat.update"))


def run_sql(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


async def test_after_approval_only_what_is_still_broken_is_fixed(world: World) -> None:
    """Rows fixed by someone else while waiting are left alone; if nothing is left, the run says so."""
    seed_jobs(world.dsn, stuck=[1, 2])
    async with waiting_run(world) as (http, runs, run_id):
        run_sql(world.dsn, "update jobs set status = 'done' where id = 1")  # an operator fixed job 1 by hand
        await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_ALICE"}, headers=approver("U_ALICE"))
        await wait_for(runs, run_id, "succeeded")
    run_sql(world.dsn, "insert into jobs values (9, 'q1', 'running', 'w', now() - interval '1 hour')")
    async with waiting_run(world) as (http, runs, run_id):
        run_sql(world.dsn, "update jobs set status = 'done' where id = 9")
        await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_BOB"}, headers=approver("U_BOB"))
        fixed = await wait_for(runs, run_id, "resolved_before_action")
    assert update_counts(world.dsn) == {1: 1, 2: 1, 9: 1}  # 1 and 9 by the operator, 2 by the run
    assert job_states(world.dsn)[2] == "pending" and "nothing left to fix" in fixed.reason


async def test_slack_down_still_accepts_decisions_from_the_cli(
    world: World, monkeypatch: pytest.MonkeyPatch, temporal_env_address: str
) -> None:
    """With Slack answering 429 and then 500 for good, the run shows the failure and `remediate approve` works."""
    world.slack.answers = [429]
    seed_jobs(world.dsn, stuck=[1])
    async with waiting_run(world) as (_, runs, run_id):
        for _ in range(50):
            if world.slack.messages("chat.postMessage"):
                break
            await asyncio.sleep(0.1)
        assert [name for name, _ in world.slack.calls][:2] == ["chat.postMessage:429", "chat.postMessage"]
        monkeypatch.setenv("REMEDIATE_TEMPORAL_ADDRESS", temporal_env_address)
        world.slack.always = 500
        assert await asyncio.to_thread(main, ["approve", run_id, "--as", "U_ALICE"]) == 0
        state = await wait_for(runs, run_id, "succeeded", within=40)
    assert update_counts(world.dsn) == {1: 1} and state.gate is not None
    assert state.gate.decisions[0].source == "cli"


async def test_two_approvers_when_the_playbook_asks(world: World) -> None:
    """min_approvals 2: one approval keeps waiting, the second distinct approver lets the run act."""
    (world.base / "playbooks" / "stuck-jobs.yaml").write_text(playbook(min_approvals=2))
    seed_jobs(world.dsn, stuck=[1])
    async with waiting_run(world) as (http, runs, run_id):
        await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_ALICE"}, headers=approver("U_ALICE"))
        await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_ALICE"}, headers=approver("U_ALICE"))
        assert (await runs.state(run_id)).status == "awaiting_approval"  # type: ignore[union-attr]
        await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_BOB"}, headers=approver("U_BOB"))
        await wait_for(runs, run_id, "succeeded")
    assert update_counts(world.dsn) == {1: 1}


async def test_a_worker_restart_while_waiting_loses_nothing_and_acts_once(world: World) -> None:
    """The worker stops while the run waits; a new worker picks it up, and after approval it acts exactly once."""
    seed_jobs(world.dsn, stuck=[1])
    task_queue = queue()
    async with waiting_run(world, task_queue=task_queue) as (_, runs, run_id):
        pass  # the whole service, worker included, stops here with the run waiting
    async with (
        running_stack(
            world.client,
            world.base / "config.yaml",
            world.base / "playbooks",
            Mode.AUTO,
            task_queue=task_queue,
            **world.settings(),
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        answer = await http.post(
            f"/api/v1/runs/{run_id}/approve", json={"approver": "U_BOB"}, headers=approver("U_BOB")
        )
        # 200 once the new worker has counted it; 202 when that worker, just started on a busy machine, takes longer
        # than the route waits: the decision is in the run's history either way.
        assert answer.status_code in (200, 202), answer.text
        await wait_for(runs, run_id, "succeeded")
    assert update_counts(world.dsn) == {1: 1}


async def test_approving_while_no_worker_runs_answers_202_at_once_and_counts_later(world: World) -> None:
    """With only the web side up, an approval is recorded in the run's history and answered 202 within seconds;
    reading the run says no worker answered; once a worker is back, the approval counts and the run acts once."""
    seed_jobs(world.dsn, stuck=[1])
    task_queue = queue()
    async with waiting_run(world, task_queue=task_queue) as (_, runs, run_id):
        pass
    async with (
        running_stack(
            world.client,
            world.base / "config.yaml",
            world.base / "playbooks",
            Mode.AUTO,
            task_queue=task_queue,
            worker=False,
            **world.settings(),
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        reply = await http.post(f"/api/v1/runs/{run_id}/approve", json={"approver": "U_BOB"}, headers=approver("U_BOB"))
        assert reply.status_code == 202 and reply.json()["outcome"] == "pending", reply.text
        shown = await http.get(f"/api/v1/runs/{run_id}")
        assert shown.status_code == 503 and "no worker answered" in shown.json()["error"]
    async with running_stack(
        world.client,
        world.base / "config.yaml",
        world.base / "playbooks",
        Mode.AUTO,
        task_queue=task_queue,
        web=False,
        **world.settings(),
    ):
        await wait_for(runs, run_id, "succeeded")
    assert update_counts(world.dsn) == {1: 1}


async def test_approve_mode_gates_even_writes_marked_approval_none(world: World) -> None:
    """In mode approve every write waits, including one the playbook marks `approval: none`."""
    (world.base / "playbooks" / "stuck-jobs.yaml").write_text(
        (ROOT / "playbooks" / "stuck-jobs.yaml").read_text() + "approvers: [oncall]\n"
    )
    seed_jobs(world.dsn, stuck=[1])
    async with waiting_run(world, Mode.APPROVE):
        pass
    assert update_counts(world.dsn) == {}


async def test_a_for_each_write_asks_approval_naming_each_item(world: World) -> None:
    """A requeue done once per stuck row (for_each, approval required): the Slack request and the run record name
    each row by its id, not `row True`; the approval leads to one write per row."""
    seed_jobs(world.dsn, stuck=[1, 2], fresh=[3])
    text = playbook().replace(
        '    when: "steps.stuck.rows | length > 0"\n',
        '    when: "steps.stuck.rows | length > 0"\n    for_each: "steps.stuck.rows"\n    max_items: 10\n',
    )
    text = text.replace(
        """params: {ids: "{{ steps.stuck.rows | map(attribute='id') | list }}"}""",
        'params: {ids: "{{ [item.id] }}"}',
        1,
    )
    (world.base / "playbooks" / "stuck-jobs.yaml").write_text(text)
    async with waiting_run(world) as (http, runs, run_id):
        for _ in range(50):
            if world.slack.messages("chat.postMessage"):
                break
            await asyncio.sleep(0.1)
        [posted] = world.slack.messages("chat.postMessage")
        shown = json.dumps(posted["blocks"])
        assert "Targets: row 1, row 2" in shown and "True" not in shown, shown
        print("\nthe approval request as Slack shows it (section texts):")  # for a reader running with -s
        for block in posted["blocks"]:
            for part in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
                if isinstance(part, dict) and part.get("text"):
                    print(part["text"] if isinstance(part["text"], str) else f"[{part['text'].get('text')}]")
        state = await runs.state(run_id)
        assert state is not None and state.gate is not None
        assert state.gate.request.writes[0].targets == ["row 1", "row 2"]
        reply = await http.post(f"/api/v1/runs/{run_id}/approve", json={}, headers=approver("U_ALICE"))
        assert reply.status_code == 200, reply.text
        await wait_for(runs, run_id, "succeeded")
    assert update_counts(world.dsn) == {1: 1, 2: 1}
