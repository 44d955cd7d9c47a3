"""The governor as the CLI, the web side and the activities reach it: Updates to one workflow, started on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from service.adapters.temporal_rpc import QUERY_TIMEOUT, RPC_TIMEOUT, rpc
from service.errors import RunNotOpen, RunUnknown, TemporalUnavailable
from service.governance import (
    Answer,
    Ask,
    GovernorState,
    GovernorView,
    Occurrence,
    Release,
    Report,
    Switch,
    SwitchChange,
    Tripped,
    governor_id,
    governor_queue,
)
from service.governor_workflow import CONTINUE_AFTER, GovernorWorkflow
from service.kill_switch import CONFIRM_WITHIN, SwitchBoard, kill_switch_id, switch_queue
from service.kill_switch_workflow import KillSwitchWorkflow

T = TypeVar("T")
Item = TypeVar("Item")
Out = TypeVar("Out")
BATCH_WINDOW = 0.01  # seconds a first item waits for company; well under a write's own latency
BATCH_MAX = 200
UPDATE_ATTEMPTS = 5  # within a local activity's own retries: a continue-as-new takes a moment


class Batches(Generic[Item, Out]):
    """Items submitted from many tasks go out in batches, one batch in flight at a time; each caller gets its own
    result (or the batch's error). A storm of runs becomes a few Updates, within Temporal's in-flight limits."""

    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Out]]]) -> None:
        self._send = send
        self._pending: list[tuple[Item, asyncio.Future[Out]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(BATCH_WINDOW)
            batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
            live = [(item, future) for item, future in batch if not future.done()]  # a caller may have given up
            if not live:
                continue
            try:
                results = await self._send([item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - whatever it is, each waiting caller gets it, none hangs
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)


class GovernorClient:
    """One governor per task queue (`remediate-governor:<queue>`); the first caller starts it."""

    def __init__(self, client: Client, task_queue: str, continue_after: int = CONTINUE_AFTER) -> None:
        self.client, self.task_queue, self.id = client, task_queue, governor_id(task_queue)
        self.continue_after = continue_after
        self._asks = Batches(self._ask_many)
        self._releases = Batches(self._release_many)
        self._occurrences = Batches(self._occurred_many)

    @property
    def _handle(self) -> WorkflowHandle[GovernorWorkflow, None]:
        return self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)

    async def _start(self) -> None:
        with rpc("starting the governor"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, self.continue_after],
                id=self.id,
                task_queue=governor_queue(self.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="the governor: kill switch, limits, storm and breaker for this task queue",
                rpc_timeout=RPC_TIMEOUT,
            )

    async def _update(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """An Update to the governor; a governor that is not running yet (or was terminated) is started first, and
        one caught between two runs (continue-as-new) or a failed task is asked again."""
        for attempt in range(UPDATE_ATTEMPTS):
            try:
                with rpc(what):
                    return await call()
            except RunUnknown:
                await self._start()
            except WorkflowUpdateFailedError as exc:
                raise TemporalUnavailable(f"the governor failed while {what}: {exc.cause or exc}") from exc
            except (RunNotOpen, TemporalUnavailable):
                if attempt == UPDATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise TemporalUnavailable(f"the governor did not answer while {what}")

    async def ask(self, ask: Ask) -> Answer:
        """Asks from this process's runs go in batches: one Update in flight per process, however many runs ask."""
        return await self._asks.submit(ask)

    async def _ask_many(self, asks: list[Ask]) -> list[Answer]:
        handle = self._handle
        return await self._update(
            lambda: handle.execute_update(GovernorWorkflow.ask, asks, rpc_timeout=RPC_TIMEOUT),
            f"asking for {len(asks)} run(s)",
        )

    async def release(self, release: Release) -> None:
        await self._releases.submit(release)

    async def _release_many(self, releases: list[Release]) -> list[None]:
        handle = self._handle
        await self._update(
            lambda: handle.execute_update(GovernorWorkflow.release, releases, rpc_timeout=RPC_TIMEOUT),
            f"releasing {len(releases)} run(s)",
        )
        return [None] * len(releases)

    @property
    def _board(self) -> WorkflowHandle[KillSwitchWorkflow, None]:
        return self.client.get_workflow_handle_for(KillSwitchWorkflow.run, kill_switch_id(self.task_queue))

    async def _start_board(self) -> None:
        """The first board takes over the switches the governor held before it existed (and clears them there, so
        the governor's own copy can never refuse after the board turns a switch off)."""
        held = (await self.view()).state
        board = SwitchBoard(
            everything=held.switch, playbooks={n: p.switch for n, p in held.playbooks.items() if p.switch.at}
        )
        with rpc("starting the kill switch"):
            await self.client.start_workflow(
                KillSwitchWorkflow.run,
                board,
                id=kill_switch_id(self.task_queue),
                task_queue=switch_queue(self.task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="the kill switch for this task queue: flipped by `remediate kill-switch`",
                rpc_timeout=RPC_TIMEOUT,
            )
        scopes: list[str | None] = [None] if held.switch.on else []
        for scope in scopes + [n for n, p in held.playbooks.items() if p.switch.on]:
            await self._clear_governor_copy(scope)

    async def _clear_governor_copy(self, scope: str | None) -> None:
        moved = SwitchChange(on=False, by="remediate", reason="moved to the kill switch board", playbook=scope)
        handle = self._handle
        await self._update(
            lambda: handle.execute_update(GovernorWorkflow.set_switch, moved, rpc_timeout=RPC_TIMEOUT),
            "moving the kill switch",
        )

    async def board(self) -> SwitchBoard:
        """The switch board as it is now (a query: nothing written, nothing queued behind asks)."""
        for attempt in range(UPDATE_ATTEMPTS):
            try:
                with rpc("reading the kill switch"):
                    return await self._board.query(KillSwitchWorkflow.board, rpc_timeout=QUERY_TIMEOUT)
            except RunUnknown:
                await self._start_board()
            except (RunNotOpen, TemporalUnavailable):
                if attempt == UPDATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise TemporalUnavailable("the kill switch did not answer")

    async def set_switch(self, change: SwitchChange) -> Switch:
        """Flip one switch. Turning one on returns only once no worker can still start a write it forbids: every
        worker has seen the flip, or has gone CONFIRM_WITHIN without confirming and so refuses writes anyway."""
        await self.board()  # started (and seeded) before the first flip
        handle = self._board
        board = await self._update(
            lambda: handle.execute_update(KillSwitchWorkflow.flip, change, rpc_timeout=RPC_TIMEOUT),
            "setting the kill switch",
        )
        if change.on:
            await asyncio.sleep(CONFIRM_WITHIN)
        return board.everything if change.playbook is None else board.playbooks[change.playbook]

    async def report(self, report: Report) -> Tripped:
        handle = self._handle
        return await self._update(
            lambda: handle.execute_update(
                GovernorWorkflow.report, report, id=f"report:{report.run_id}", rpc_timeout=RPC_TIMEOUT
            ),
            f"reporting {report.run_id}",
        )

    async def reset_breaker(self, playbook: str) -> None:
        handle = self._handle
        await self._update(
            lambda: handle.execute_update(GovernorWorkflow.reset_breaker, playbook, rpc_timeout=RPC_TIMEOUT),
            f"resetting the breaker of {playbook}",
        )

    async def occurred(self, occurrence: Occurrence) -> None:
        await self._occurrences.submit(occurrence)

    async def _occurred_many(self, occurrences: list[Occurrence]) -> list[None]:
        """Signal-with-start: one round trip for the batch, and the governor exists afterwards."""
        with rpc(f"counting {len(occurrences)} occurrence(s)"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, self.continue_after],
                id=self.id,
                task_queue=governor_queue(self.task_queue),
                start_signal="occurred",
                start_signal_args=[occurrences],
                rpc_timeout=RPC_TIMEOUT,
            )
        return [None] * len(occurrences)

    async def view(self) -> GovernorView:
        """The governor's state (limits, storms, breakers); a governor nobody has asked yet is the default state.
        The kill switch is on its own board: `board()`."""
        handle = self._handle
        try:
            with rpc("reading the governor"):
                state = await handle.query(GovernorWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RunUnknown:
            return GovernorView()
        return GovernorView(state=GovernorState.model_validate(state.model_dump()), started=True)
