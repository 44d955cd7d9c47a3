"""The kill switch board as the CLI, the web side and the workers reach it: a query to read, one Update to flip."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from service.durable.governor_workflow import GovernorWorkflow
from service.durable.kill_switch_workflow import KillSwitchWorkflow
from service.rails.governance import GovernorState, SwitchChange, governor_id
from service.rails.kill_switch import Seen, SwitchBoard, kill_switch_id, switch_queue
from service.temporal.governor.updates import UPDATE_ATTEMPTS, update
from service.temporal.rpc import QUERY_TIMEOUT, RPC_TIMEOUT, rpc
from service.vocabulary.errors import RunNotOpen, RunUnknown, TemporalUnavailable


class Board:
    """One board per task queue (`remediate-kill-switch:<queue>`); the first reader starts it."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    @property
    def _handle(self) -> WorkflowHandle[KillSwitchWorkflow, None]:
        return self.client.get_workflow_handle_for(KillSwitchWorkflow.run, kill_switch_id(self.task_queue))

    @property
    def _legacy(self) -> WorkflowHandle[GovernorWorkflow, None]:
        """The one governor of releases before the board and the shards, which may still hold a switch."""
        return self.client.get_workflow_handle_for(GovernorWorkflow.run, governor_id(self.task_queue))

    async def _held_before(self) -> GovernorState:
        try:
            with rpc("reading the governor"):
                return await self._legacy.query(GovernorWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RunUnknown:
            return GovernorState()

    async def _start(self) -> None:
        """The first board takes over the switches the governor held before it existed (and clears them there, so
        the governor's own copy can never refuse after the board turns a switch off)."""
        held = await self._held_before()
        board = SwitchBoard(
            everything=held.switch, playbooks={n: p.switch for n, p in held.playbooks.items() if p.switch.at}
        )
        with rpc("starting the kill switch"):
            await self.client.start_workflow(
                KillSwitchWorkflow.run,
                args=[board, {}],
                id=kill_switch_id(self.task_queue),
                task_queue=switch_queue(self.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="the kill switch for this task queue: flipped by `remediate kill-switch`",
                rpc_timeout=RPC_TIMEOUT,
            )
        scopes: list[str | None] = [None] if held.switch.on else []
        for scope in scopes + [n for n, p in held.playbooks.items() if p.switch.on]:
            await self._clear_held(scope)

    async def _clear_held(self, scope: str | None) -> None:
        moved = SwitchChange(on=False, by="remediate", reason="moved to the kill switch board", playbook=scope)
        legacy = self._legacy
        await update(
            lambda: legacy.execute_update(GovernorWorkflow.set_switch, moved, rpc_timeout=RPC_TIMEOUT),
            self._nothing,
            "moving the kill switch",
        )

    @staticmethod
    async def _nothing() -> None:
        raise RunUnknown("the governor of an earlier release is gone")

    async def read(self) -> SwitchBoard:
        """The switch board as it is now (a query: nothing written, nothing queued behind asks)."""
        for attempt in range(UPDATE_ATTEMPTS):
            try:
                with rpc("reading the kill switch"):
                    return await self._handle.query(KillSwitchWorkflow.board, rpc_timeout=QUERY_TIMEOUT)
            except RunUnknown:
                await self._start()
            except (RunNotOpen, TemporalUnavailable):
                if attempt == UPDATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise TemporalUnavailable("the kill switch did not answer")

    async def seen(self, worker: str, version: int) -> None:
        """Tell the board this worker holds this version (after adopting it): flips wait for that word."""
        handle = self._handle
        await update(
            lambda: handle.execute_update(KillSwitchWorkflow.seen, Seen(worker=worker, version=version),
                                          rpc_timeout=RPC_TIMEOUT),
            self._start,
            "telling the kill switch what this worker holds",
        )  # fmt: skip

    async def flip(self, change: SwitchChange) -> SwitchBoard:
        """Flip one switch (a board not started yet is started, and seeded, first); the whole board after it.
        Turning one on returns only once no worker can still start a write it forbids: every worker heard from
        lately holds the flip (each says so after adopting it), or CONFIRM_WITHIN has passed, after which a worker
        that has not seen it no longer trusts its older view."""
        handle = self._handle
        board = await update(
            lambda: handle.execute_update(KillSwitchWorkflow.flip, change, rpc_timeout=RPC_TIMEOUT),
            self._start,
            "setting the kill switch",
        )
        return board  # turning one on, the board answered once every live worker held it, or after CONFIRM_WITHIN
