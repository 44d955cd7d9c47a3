"""The governor as the CLI, the web side and the activities reach it: Updates to one workflow, started on demand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from service.adapters.temporal_rpc import QUERY_TIMEOUT, RPC_TIMEOUT, rpc
from service.errors import RunUnknown, TemporalUnavailable
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
)
from service.governor_workflow import GovernorWorkflow

T = TypeVar("T")


class GovernorClient:
    """One governor per task queue (`remediate-governor:<queue>`); the first caller starts it."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue, self.id = client, task_queue, governor_id(task_queue)

    async def _start(self) -> None:
        with rpc("starting the governor"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, 2_000],
                id=self.id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="the governor: kill switch, limits, storm and breaker for this task queue",
                rpc_timeout=RPC_TIMEOUT,
            )

    async def _update(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """An Update to the governor; a governor that is not running yet (or was terminated) is started first."""
        for attempt in range(3):
            try:
                with rpc(what):
                    return await call()
            except RunUnknown:
                await self._start()
            except WorkflowUpdateFailedError as exc:
                raise TemporalUnavailable(f"the governor failed while {what}: {exc.cause or exc}") from exc
            except TemporalUnavailable:
                if attempt == 2:
                    raise
        raise TemporalUnavailable(f"the governor could not be started while {what}")

    async def ask(self, ask: Ask, update_id: str) -> Answer:
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        return await self._update(
            lambda: handle.execute_update(GovernorWorkflow.ask, ask, id=update_id, rpc_timeout=RPC_TIMEOUT),
            f"asking for {ask.run_id}",
        )

    async def release(self, release: Release) -> None:
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        await self._update(
            lambda: handle.execute_update(
                GovernorWorkflow.release, release, id=f"release:{release.run_id}", rpc_timeout=RPC_TIMEOUT
            ),
            f"releasing {release.run_id}",
        )

    async def set_switch(self, change: SwitchChange) -> Switch:
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        return await self._update(
            lambda: handle.execute_update(GovernorWorkflow.set_switch, change, rpc_timeout=RPC_TIMEOUT),
            "setting the kill switch",
        )

    async def report(self, report: Report) -> Tripped:
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        return await self._update(
            lambda: handle.execute_update(
                GovernorWorkflow.report, report, id=f"report:{report.run_id}", rpc_timeout=RPC_TIMEOUT
            ),
            f"reporting {report.run_id}",
        )

    async def reset_breaker(self, playbook: str) -> None:
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        await self._update(
            lambda: handle.execute_update(GovernorWorkflow.reset_breaker, playbook, rpc_timeout=RPC_TIMEOUT),
            f"resetting the breaker of {playbook}",
        )

    async def occurred(self, occurrence: Occurrence) -> None:
        """Signal-with-start: one round trip, and the governor exists afterwards."""
        with rpc("counting an occurrence"):
            await self.client.start_workflow(
                GovernorWorkflow.run,
                args=[None, 2_000],
                id=self.id,
                task_queue=self.task_queue,
                start_signal="occurred",
                start_signal_args=[occurrence],
                rpc_timeout=RPC_TIMEOUT,
            )

    async def view(self) -> GovernorView:
        """The current state; a governor nobody has asked yet is the default state."""
        handle = self.client.get_workflow_handle_for(GovernorWorkflow.run, self.id)
        try:
            with rpc("reading the governor"):
                state = await handle.query(GovernorWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RunUnknown:
            return GovernorView()
        return GovernorView(state=GovernorState.model_validate(state.model_dump()), started=True)
