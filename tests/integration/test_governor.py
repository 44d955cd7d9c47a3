"""The governor through the real Temporal dev server and Postgres: kill switch, cooldown per key, refunds, the
line over a limit and the global budget lent in blocks."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import psycopg
import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from service.app.worker import PASSTHROUGH
from service.durable.budget_workflow import BudgetWorkflow
from service.durable.governor_workflow import GovernorWorkflow
from service.durable.kill_switch_workflow import KillSwitchWorkflow
from service.rails.governance import (
    TURN,
    Answer,
    Ask,
    Limits,
    Release,
    SwitchChange,
    budget_id,
    governor_id,
    governor_queue,
)
from service.rails.kill_switch import kill_switch_id, switch_queue
from service.runs.policy import Mode
from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from service.temporal.governor.board import Board
from service.temporal.governor.client import GovernorClient
from tests.support.jobs import job_states, seed_jobs, update_counts
from tests.support.messages import message
from tests.support.paths import DATA
from tests.support.stack import TOKEN, run_handle, running_stack

UNSANDBOXED = UnsandboxedWorkflowRunner()


@workflow.defn(name="TurnListener")
class TurnListener:
    """Stands in for a waiting run: True once its `turn` signal came (within 30 s)."""

    def __init__(self) -> None:
        self.told = False

    @workflow.run
    async def run(self) -> bool:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.told, timeout=timedelta(seconds=30))
        return self.told

    @workflow.signal(name=TURN)
    def turn(self) -> None:
        self.told = True


ONCALL = "oncall-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONCALL_TOKEN", ONCALL)
    path = tmp_path / "config.yaml"
    path.write_text(
        (DATA / "jobs-config.yaml").read_text() + "approver_tokens: {oncall: 'env:ONCALL_TOKEN'}\n", encoding="utf-8"
    )
    return path


def run_id_of(body: dict[str, object]) -> str:
    alert = body["alerts"][0]  # type: ignore[index]
    return f"stuck-jobs/{alert['fingerprint']}/{int(datetime.fromisoformat(alert['startsAt']).timestamp())}"


async def outcome(client: Client, run_id: str, within: float = 30) -> RunState:
    with contextlib.suppress(WorkflowFailureError):  # a failed run carries its state in the failure: read below
        await asyncio.wait_for((await run_handle(client, run_id, within)).result(), within)
    state = await TemporalRuns(client, "unused").state(run_id)
    assert state is not None
    return state


def restale(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("update jobs set status = 'running', updated_at = now() - interval '1 hour'")


async def test_kill_switch_blocks_every_write_until_it_is_off_and_says_who_and_why(
    temporal_client: Client, jobs_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUT /api/v1/kill-switch by an approver: the next run ends blocked_by_policy writing nothing; off, it writes."""
    seed_jobs(jobs_db, stuck=[1])
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with (
        running_stack(
            temporal_client, config(tmp_path, monkeypatch), DATA / "playbooks", Mode.AUTO, task_queue=queue
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url) as http,
    ):
        oncall = {"Authorization": f"Bearer {ONCALL}"}
        body = {"on": True, "reason": "bad deploy, hands off"}
        assert (await http.put("/api/v1/kill-switch", json=body, headers=AUTH)).status_code == 403
        assert (await http.put("/api/v1/kill-switch", json=body)).status_code == 401
        assert (await http.put("/api/v1/kill-switch", content=b"{", headers=oncall)).status_code == 400
        unknown = await http.put("/api/v1/kill-switch", json={"on": True, "playbook": "nope"}, headers=oncall)
        assert unknown.status_code == 400 and "no playbook named 'nope'" in unknown.text
        flipped = await http.put("/api/v1/kill-switch", json=body, headers=oncall)
        assert flipped.status_code == 200 and flipped.json()["by"] == "oncall", flipped.text
        shown = (await http.get("/api/v1/kill-switch", headers=AUTH)).json()["everything"]
        assert shown["on"] and shown["by"] == "oncall" and shown["reason"] == "bad deploy, hands off"
        blocked = message()
        await http.post("/alertmanager", json=blocked, headers=AUTH)
        state = await outcome(temporal_client, run_id_of(blocked))
        assert state.status == "blocked_by_policy" and state.limit == "kill_switch", state.reason
        assert "set by oncall: bad deploy, hands off" in state.reason
        assert job_states(jobs_db) == {1: "running"} and update_counts(jobs_db) == {}
        metrics = (await http.get("/metrics")).text
        assert 'remediate_policy_refusals_total{playbook="stuck-jobs",reason="kill_switch"} 1.0' in metrics
        await http.put("/api/v1/kill-switch", json={"on": False, "reason": "fixed"}, headers=oncall)
        freed = message()
        await http.post("/alertmanager", json=freed, headers=AUTH)
        state = await outcome(temporal_client, run_id_of(freed))
        assert state.status == "succeeded", state.reason
        assert job_states(jobs_db) == {1: "pending"}


async def test_cooldown_blocks_the_same_key_and_lets_another_key_write(
    temporal_client: Client, jobs_db: str, tmp_path: Path
) -> None:
    """The shipped example's cooldown (10m per queue): a second occurrence for q1 is refused; one for q2 writes."""
    seed_jobs(jobs_db, stuck=[1], other_queue=[2])
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with (
        running_stack(
            temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        first = message(queue="q1")
        await http.post("/alertmanager", json=first)
        assert (await outcome(temporal_client, run_id_of(first))).status == "succeeded"
        restale(jobs_db)
        second = message(queue="q1")
        await http.post("/alertmanager", json=second)
        state = await outcome(temporal_client, run_id_of(second))
        assert state.status == "blocked_by_policy" and state.limit == "cooldown", state.reason
        assert "cooldown 10m for 'q1'" in state.reason and "frees at" in state.reason
        other = message(queue="q2")
        await http.post("/alertmanager", json=other)
        assert (await outcome(temporal_client, run_id_of(other))).status == "succeeded"
        view = await GovernorClient(temporal_client, queue).view("stuck-jobs")
    assert view.started and set(view.state.playbooks["stuck-jobs"].cooldowns) == {"q1", "q2"}
    assert update_counts(jobs_db) == {1: 2, 2: 2}  # q1's row: the first run and the restale; q2's: restale + run


async def test_a_switch_for_one_playbook_blocks_only_its_writes(temporal_client: Client, jobs_db: str) -> None:
    """The switch set for one playbook through the governor client: its run writes nothing and says which switch."""
    seed_jobs(jobs_db, stuck=[1])
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with (
        running_stack(
            temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers=AUTH) as http,
    ):
        governor = GovernorClient(temporal_client, queue)
        await governor.set_switch(SwitchChange(on=True, by="tester", reason="drill", playbook="stuck-jobs"))
        body = message()
        await http.post("/alertmanager", json=body)
        state = await outcome(temporal_client, run_id_of(body))
        assert state.status == "blocked_by_policy" and "playbook stuck-jobs" in state.reason
        await governor.set_switch(SwitchChange(on=False, by="tester", playbook="stuck-jobs"))
        assert not (await governor.board()).playbooks["stuck-jobs"].on
    assert update_counts(jobs_db) == {}


async def test_the_governor_continues_as_new_with_its_state_and_answers_the_same(
    temporal_client: Client, jobs_db: str
) -> None:
    """A governor told to continue-as-new every 40 events does so while 60 runs ask; the switch, the grants and
    the cooldowns are all still there afterwards, and a run already granted is still known."""
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
    ):
        governor = GovernorClient(temporal_client, queue, continue_after=40)
        await governor.set_switch(SwitchChange(on=True, by="tester", reason="kept", playbook="other"))
        limits = Limits(cooldown=timedelta(minutes=5))
        first = ""
        for i in range(60):
            answer = await governor.ask(Ask(run_id=f"r{i}", playbook="p", key=f"k{i}", limits=limits))
            assert answer.verdict == "grant", answer
            # The switch lives on its own board; the governor starts with the first ask.
            first = first or (await temporal_client.get_workflow_handle(governor.id("p")).describe()).run_id
        again = await governor.ask(Ask(run_id="r0", playbook="p", key="k0", limits=limits))
        refused = await governor.ask(Ask(run_id="late", playbook="p", key="k0", limits=limits))
        view, board = await governor.view("p"), await governor.board()
        last = (await temporal_client.get_workflow_handle(governor.id("p")).describe()).run_id
    assert last != first  # it did continue as new, at least once
    assert again.verdict == "grant" and refused.limit == "cooldown"
    assert board.playbooks["other"].on and board.playbooks["other"].reason == "kept"  # on its own board
    assert len(view.state.grants) == 60 and len(view.state.playbooks["p"].cooldowns) == 60


async def test_a_switch_the_governor_held_before_the_board_moves_to_the_board(temporal_client: Client) -> None:
    """A kill switch set on the governor by a release without the board (an upgrade) is on the board from its first
    read, and no longer in the governor, so turning it off on the board lets writes through."""
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    governor = GovernorClient(temporal_client, queue)
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
    async with Worker(  # the governor alone, as the release before the board ran it
        temporal_client, task_queue=governor_queue(queue), workflows=[GovernorWorkflow], workflow_runner=runner
    ):
        legacy = SwitchChange(on=True, by="before-upgrade", reason="old")
        handle = temporal_client.get_workflow_handle_for(GovernorWorkflow.run, governor_id(queue))
        await temporal_client.start_workflow(
            GovernorWorkflow.run, args=[None], id=governor_id(queue), task_queue=governor_queue(queue)
        )
        await handle.execute_update(GovernorWorkflow.set_switch, legacy)
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
    ):
        board = await governor.board()
        assert board.everything.on and board.everything.by == "before-upgrade"
        held = await temporal_client.get_workflow_handle_for(GovernorWorkflow.run, governor_id(queue)).query(
            GovernorWorkflow.state
        )
        assert not held.switch.on
        await governor.set_switch(SwitchChange(on=False, by="tester"))
        answer = await governor.ask(Ask(run_id="r", playbook="p", key="k", limits=Limits()))
    assert answer.verdict == "grant", answer


async def test_turning_the_switch_on_waits_for_a_worker_that_has_not_confirmed_it(temporal_client: Client) -> None:
    """A worker heard from lately (its word: version 0) that never says it holds the flip keeps the flip from
    answering until CONFIRM_WITHIN has passed (the board's timer fires first), when that worker no longer trusts its
    older view; the answer is the board with the switch on."""
    queue = f"ks-{uuid.uuid4().hex[:8]}"
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
    async with Worker(
        temporal_client, task_queue=switch_queue(queue), workflows=[KillSwitchWorkflow], workflow_runner=runner
    ):
        board = Board(temporal_client, queue)
        await board.seen("silent-worker", 0)
        flipped = await board.flip(SwitchChange(on=True, by="tester", reason="drill"))
        assert flipped.everything.on and flipped.version == 1
        handle = temporal_client.get_workflow_handle(kill_switch_id(queue))
        events = [e async for e in handle.fetch_history_events()]
    kinds = [EventType.Name(e.event_type) for e in events]
    completed = max(i for i, k in enumerate(kinds) if k == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED")
    assert "EVENT_TYPE_TIMER_FIRED" in kinds[:completed], kinds


async def test_over_max_concurrent_runs_wait_their_turn_in_order_of_arrival(temporal_client: Client) -> None:
    """Through a real shard: over max_concurrent, later runs get `wait` with their place (1 = next); a newcomer
    queues behind them even when a slot frees; the release tells the first in line (a `turn` signal to its run), and
    the freed slot goes to it; `on_limit: refuse` keeps
    the old refusal; a release takes a run out of line."""
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
    ):
        governor = GovernorClient(temporal_client, queue)
        limits = Limits(max_concurrent=2)
        t0 = datetime.now(UTC)

        async def ask(run: str, at: int, given: Limits = limits) -> Answer:
            since = t0 + timedelta(seconds=at)
            return await governor.ask(Ask(run_id=run, playbook="line", key=run, limits=given, since=since))

        assert [(await ask(r, i)).verdict for i, r in enumerate(["r1", "r2"])] == ["grant", "grant"]
        r3 = f"r3-{queue}"
        third, fourth = await ask(r3, 3), await ask("r4", 4)
        assert (third.verdict, third.place, third.limit) == ("wait", 1, "max_concurrent")
        assert (fourth.verdict, fourth.place) == ("wait", 2)
        async with Worker(
            temporal_client, task_queue=f"{queue}-listen", workflows=[TurnListener], workflow_runner=UNSANDBOXED
        ):
            listener = await temporal_client.start_workflow(TurnListener.run, id=r3, task_queue=f"{queue}-listen")
            await governor.release(Release(run_id="r1", wrote=True, playbook="line"))
            assert await listener.result() is True  # the first in line was told its turn came
        newcomer = await ask("r5", 5)
        assert (newcomer.verdict, newcomer.place) == ("wait", 3), newcomer  # a slot is free, but two wait before it
        assert (await ask("r4", 4)).verdict == "wait"  # second in line: the one free slot is the first's
        assert (await ask(r3, 3)).verdict == "grant"
        refused = await ask("r6", 6, Limits(max_concurrent=2, on_limit="refuse"))
        assert (refused.verdict, refused.limit) == ("refuse", "max_concurrent")
        await governor.release(Release(run_id="r4", wrote=False, playbook="line"))  # r4 resolved while waiting
        view = await governor.view("line")
    assert set(view.state.waiting) == {"r5"} and set(view.state.leases) == {"r2", r3}


async def test_the_global_budget_is_lent_in_blocks_and_handed_back(temporal_client: Client) -> None:
    """REMEDIATE_MAX_WRITES_PER_HOUR 3 across two playbooks, asked by two workers' clients: three write-runs are
    counted, the fourth waits for the budget; a run that wrote nothing hands its unit back; idle purses settle."""
    queue = f"gov-{uuid.uuid4().hex[:8]}"
    async with running_stack(
        temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.AUTO, task_queue=queue
    ):
        one, two = GovernorClient(temporal_client, queue), GovernorClient(temporal_client, queue)

        async def ask(client: GovernorClient, run: str, playbook: str) -> Answer:
            return await client.ask(Ask(run_id=run, playbook=playbook, key=run, limits=Limits(), max_writes_per_hour=3))

        answers = [await ask(one, "a1", "pa"), await ask(two, "b1", "pb"), await ask(one, "a2", "pa")]
        assert [a.counted for a in answers] == [True, True, True]
        over = await ask(two, "b2", "pb")
        assert (over.verdict, over.limit) == ("wait", "max_writes_per_hour"), over
        await one.release(Release(run_id="a2", wrote=False, playbook="pa"))
        await one.settle()
        await two.settle()
        again = await ask(two, "b2", "pb")
        budget = await temporal_client.get_workflow_handle_for(BudgetWorkflow.run, budget_id(queue)).query(
            BudgetWorkflow.state
        )
    assert again.counted, again
    assert set(budget.uses) | {u for b in budget.blocks.values() for u in b.uses} >= {"a1", "b1"}
    assert "a2" not in budget.uses
