"""The governor as the CLI, the web side and the activities reach it: one shard per playbook, asked in batches, the
global budget held in a purse of leased blocks, and the kill switch on its own board."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from service.durable.budget_workflow import Borrow, BudgetWorkflow
from service.durable.governor_workflow import CONTINUE_AFTER, GovernorWorkflow
from service.rails.budget import Block, Loan, Purse
from service.rails.governance import (
    TURN,
    Answer,
    Ask,
    GovernorState,
    GovernorView,
    Message,
    Occurrence,
    Release,
    Reply,
    Report,
    Switch,
    SwitchChange,
    Tripped,
    budget_id,
    governor_id,
    governor_queue,
)
from service.rails.kill_switch import SwitchBoard
from service.temporal.governor.batches import Batches
from service.temporal.governor.board import Board
from service.temporal.governor.updates import update
from service.temporal.rpc import QUERY_TIMEOUT, RPC_TIMEOUT, rpc
from service.vocabulary.errors import RemediateError, RunUnknown, TemporalUnavailable

IDLE_SETTLE = 2.0  # seconds without asks after which a purse hands its unused budget back
BLOCK_MIN = 5  # units borrowed at least (fewer round trips in a storm), never more than the cap leaves


def _now() -> datetime:
    return datetime.now(UTC)


class GovernorClient:
    """Shards `remediate-governor:<queue>:<playbook>` and the budget keeper `remediate-budget:<queue>`, each started
    by the first caller that needs it."""

    def __init__(self, client: Client, task_queue: str, continue_after: int = CONTINUE_AFTER) -> None:
        self.client, self.task_queue = client, task_queue
        self.continue_after = continue_after
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._shards: dict[str, Batches[Message, Reply]] = {}
        self._occurrences: dict[str, Batches[Occurrence, None]] = {}
        self._purse, self._borrows = Purse(), Batches(self._borrow_many)
        self._budgeted, self._asking, self._idle = False, 0, asyncio.Event()
        self._settler: asyncio.Task[None] | None = None
        self._board = Board(client, task_queue)

    def id(self, playbook: str) -> str:
        return governor_id(self.task_queue, playbook)

    def _handle(self, playbook: str) -> WorkflowHandle[GovernorWorkflow, None]:
        return self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id(playbook))

    def _shard(self, playbook: str) -> Batches[Message, Reply]:
        if playbook not in self._shards:
            self._shards[playbook] = Batches(lambda messages: self._exchange(playbook, messages))
        return self._shards[playbook]

    async def reachable(self) -> bool:
        """Whether the Temporal frontend answers a health check within two seconds."""
        try:
            return await self.client.service_client.check_health(timeout=timedelta(seconds=2))
        except (RPCError, RuntimeError):
            return False

    def queued(self) -> int:
        """Messages waiting for their shard's next batch in this process: the governor's queue as a run sees it."""
        return sum(shard.queued() for shard in self._shards.values())

    async def _start(self, playbook: str) -> None:
        with rpc(f"starting the governor of {playbook}"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, self.continue_after],
                id=self.id(playbook),
                task_queue=governor_queue(self.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=f"the governor of playbook {playbook}: cooldowns, limits, its line, storm, breaker",
                rpc_timeout=RPC_TIMEOUT,
            )

    async def _exchange(self, playbook: str, messages: list[Message]) -> list[Reply]:
        handle = self._handle(playbook)
        return await update(
            lambda: handle.execute_update(GovernorWorkflow.exchange, messages, rpc_timeout=RPC_TIMEOUT),
            lambda: self._start(playbook),
            f"asking the governor of {playbook} ({len(messages)} message(s))",
        )

    async def ask(self, ask: Ask) -> Answer:
        """May this run write: a unit of the global budget from the purse first (no round trip while it has one),
        then the playbook's shard, in this process's next batch for it."""
        block: Block | None = None
        if ask.max_writes_per_hour is not None:
            block, frees_at = await self._unit(ask.max_writes_per_hour)
            ask = ask.model_copy(update={"unit": block.until if block else False, "budget_frees_at": frees_at})
        self._asking += 1
        try:
            reply = await self._shard(ask.playbook).submit(ask)
        except BaseException:
            if block is not None:  # the shard may have counted it before the answer was lost: spent, to be safe
                self._purse.spend(block.id, ask.run_id, _now())
            raise
        finally:
            self._asking -= 1
            self._settle_when_idle()
        answer = reply.answer or Answer(verdict="refuse", limit="governor_unavailable", reason="no answer")
        if block is not None:
            if answer.counted:
                self._purse.spend(block.id, ask.run_id, _now())
            else:
                self._purse.put_back(block.id)
        return answer

    async def _unit(self, cap: int) -> tuple[Block | None, datetime | None]:
        taken = self._purse.take(_now())
        if taken is not None:
            return self._purse.blocks[taken], None
        return await self._borrows.submit(cap)

    async def _borrow_many(self, caps: list[int]) -> list[tuple[Block | None, datetime | None]]:
        """One round trip for every ask waiting for budget: hand back what is due, borrow a block for them all."""
        self._budgeted = True
        now = _now()
        call = Borrow(
            holder=self.holder,
            block_id=uuid.uuid4().hex,
            want=max(2 * len(caps), BLOCK_MIN),
            cap=min(caps),
            settle=self._purse.due(now, idle=False),
        )
        loan = await self._borrow(call)
        self._purse.add(loan.block)
        units: list[tuple[Block | None, datetime | None]] = []
        for _ in caps:
            taken = self._purse.take(_now())
            units.append((self._purse.blocks[taken], None) if taken else (None, loan.frees_at))
        return units

    async def _borrow(self, call: Borrow) -> Loan:
        handle = self.client.get_workflow_handle_for(BudgetWorkflow.run, budget_id(self.task_queue))
        return await update(
            lambda: handle.execute_update(BudgetWorkflow.borrow, call, rpc_timeout=RPC_TIMEOUT),
            self._start_budget,
            "borrowing from the global budget",
        )

    async def _start_budget(self) -> None:
        with rpc("starting the global budget"):
            await self.client.start_workflow(
                BudgetWorkflow.run,
                args=[None],
                id=budget_id(self.task_queue),
                task_queue=governor_queue(self.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="the global hourly budget (REMEDIATE_MAX_WRITES_PER_HOUR), lent to workers in blocks",
                rpc_timeout=RPC_TIMEOUT,
            )

    def _settle_when_idle(self) -> None:
        """Once no ask has been in flight for IDLE_SETTLE seconds, unused budget goes back to the keeper."""
        if self._budgeted and (self._settler is None or self._settler.done()):
            self._settler = asyncio.create_task(self._settle_idle())

    async def _settle_idle(self) -> None:
        await asyncio.sleep(IDLE_SETTLE)
        if self._asking:
            self._settle_when_idle()
            return
        await self.settle()

    async def settle(self) -> None:
        """Hand every block without an ask in flight back (a worker stopping calls this); errors leave the blocks
        to end by themselves, counted in full."""
        due = self._purse.due(_now(), idle=True)
        if not due:
            return
        try:
            await self._borrow(Borrow(holder=self.holder, settle=due))
        except TemporalUnavailable:
            return

    async def release(self, release: Release) -> None:
        """A run ended (or waits for a person): its shard forgets its slot; a refund gives back its budget unit."""
        reply = await self._shard(release.playbook).submit(release)
        if reply.refunded and self._budgeted:
            self._purse.refund(release.run_id)
        await asyncio.gather(*(self._tell_turn(run_id) for run_id in reply.turns))

    async def _tell_turn(self, run_id: str) -> None:
        """The run next in line asks now instead of at its next poll; if it cannot be told, it polls as before."""
        try:
            with rpc("telling a waiting run its turn came"):
                await self.client.get_workflow_handle(run_id).signal(TURN, rpc_timeout=RPC_TIMEOUT)
        except RemediateError:
            return

    async def report(self, report: Report) -> Tripped:
        """Effectiveness, batched like asks (one Update per run was what filled Temporal's in-flight limit)."""
        reply = await self._shard(report.playbook).submit(report)
        return reply.tripped or Tripped()

    async def reset_breaker(self, playbook: str) -> None:
        handle = self._handle(playbook)
        await update(
            lambda: handle.execute_update(GovernorWorkflow.reset_breaker, playbook, rpc_timeout=RPC_TIMEOUT),
            lambda: self._start(playbook),
            f"resetting the breaker of {playbook}",
        )

    async def occurred(self, occurrence: Occurrence) -> None:
        playbook = occurrence.playbook
        if playbook not in self._occurrences:
            self._occurrences[playbook] = Batches(lambda items: self._occurred_many(playbook, items))
        await self._occurrences[playbook].submit(occurrence)

    async def _occurred_many(self, playbook: str, occurrences: list[Occurrence]) -> list[None]:
        """Signal-with-start: one round trip for the batch, and the shard exists afterwards."""
        with rpc(f"counting {len(occurrences)} occurrence(s)"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, self.continue_after],
                id=self.id(playbook),
                task_queue=governor_queue(self.task_queue),
                start_signal="occurred",
                start_signal_args=[occurrences],
                rpc_timeout=RPC_TIMEOUT,
            )
        return [None] * len(occurrences)

    async def view(self, playbook: str) -> GovernorView:
        """One shard's state (limits, its line, storm, breaker); a shard nobody has asked yet is the default state.
        The kill switch is on its own board: `board()`."""
        try:
            with rpc(f"reading the governor of {playbook}"):
                state = await self._handle(playbook).query(GovernorWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RunUnknown:
            return GovernorView()
        return GovernorView(state=GovernorState.model_validate(state.model_dump()), started=True)

    async def waiting(self, playbook: str) -> int:
        """How many runs wait in this playbook's line (0 for a shard nobody has asked yet)."""
        try:
            with rpc(f"reading the line of {playbook}"):
                return await self._handle(playbook).query(GovernorWorkflow.waiting, rpc_timeout=QUERY_TIMEOUT)
        except RunUnknown:
            return 0

    async def playbooks(self) -> list[str]:
        """The playbooks that have a shard (a visibility list: a shard started a moment ago may be missing)."""
        prefix = governor_id(self.task_queue) + ":"
        names = set()
        with rpc("listing the governor's shards"):
            async for found in self.client.list_workflows(
                'WorkflowType = "GovernorWorkflow" AND ExecutionStatus = "Running"', rpc_timeout=RPC_TIMEOUT
            ):
                if found.id.startswith(prefix) and found.id != prefix:
                    names.add(found.id.removeprefix(prefix))
        return sorted(names)

    async def switch_seen(self, version: int) -> None:
        await self._board.seen(self.holder, version)

    async def board(self) -> SwitchBoard:
        return await self._board.read()

    async def set_switch(self, change: SwitchChange) -> Switch:
        board = await self._board.flip(change)
        return board.everything if change.playbook is None else board.playbooks[change.playbook]
