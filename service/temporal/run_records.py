"""Runs as the audit store remembers them, completed by Temporal for runs still open or cut short."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus

from service.runs.audit import FINAL, AuditStore
from service.runs.listing import RunQuery, RunsPage, RunSummary, one_page
from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from service.temporal.rpc import QUERY_TIMEOUT
from service.vocabulary.errors import RemediateError, RunUnknown

# What Temporal calls an execution that ended without our workflow returning, and how a run record shows it.
_CUT_SHORT = {
    WorkflowExecutionStatus.TERMINATED: "terminated in Temporal (by an operator, a reset or a deployment)",
    WorkflowExecutionStatus.TIMED_OUT: "timed out in Temporal (the workflow's execution timeout)",
    WorkflowExecutionStatus.CANCELED: "cancelled in Temporal",
}


class AuditedRuns(TemporalRuns):
    """`runs list/show` and the run API read the audit store first: runs outlive Temporal's retention there."""

    def __init__(self, client: Client, task_queue: str, store: AuditStore) -> None:
        super().__init__(client, task_queue)
        self.store = store

    async def list(self, query: RunQuery) -> RunsPage:
        listed, more = one_page(await self.store.runs(replace(query, limit=query.limit + 1)), query.limit)
        lanes = asyncio.Semaphore(16)  # unfinished records ask Temporal: a few at a time, not one after another

        async def current(state: RunState) -> RunState:
            async with lanes:
                return await self._current(state)

        states = await asyncio.gather(*(current(r.state) for r in listed))
        # A record still open may have been cut short in Temporal since: the status shown is the one filtered on.
        runs = [self._summary(s) for s in states if query.status is None or s.status == query.status]
        return RunsPage(runs, listed[-1].cursor if more else None)

    async def state(self, run_id: str, query_timeout: timedelta = QUERY_TIMEOUT) -> RunState | None:
        recorded = await self.store.run(run_id)
        if recorded is None:  # from before the audit store, or not recorded yet: Temporal may still know it
            return await super().state(run_id, query_timeout)
        return await self._current(recorded, always=True)

    async def resolve_id(self, given: str, within: int = 1000) -> str:
        if "/" in given and given.count("/") >= 2:
            return given
        matches = await self.store.find(given, within)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RunUnknown(f"{given!r} names {len(matches)} runs; give more of the id: {', '.join(matches[:5])}")
        return await super().resolve_id(given, within)

    async def _current(self, recorded: RunState, always: bool = False) -> RunState:
        """A finished record as it is; an unfinished one as Temporal sees it now (live, or how it was cut short).
        `always` asks Temporal about a finished record too: a worker may have finished a terminated run's reads
        (and recorded them) before it learned of the termination."""
        if recorded.status in FINAL and not always:
            return recorded
        try:
            execution = await self.execution_status(recorded.run_id)
        except RemediateError:
            return recorded  # Temporal is away: the record is the best we know
        if execution is None and recorded.status in FINAL:
            return recorded
        if execution is None:
            return recorded.model_copy(
                update={"reason": _join(recorded.reason, "Temporal no longer has this run; last recorded as shown")}
            )
        if (
            execution in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED)
            and recorded.status in FINAL
        ):
            return recorded
        if execution == WorkflowExecutionStatus.RUNNING:
            try:
                live = await super().state(recorded.run_id)
            except RemediateError:
                return recorded
            return live or recorded
        why = _CUT_SHORT.get(execution)
        if why is not None:
            when = (
                f"while {recorded.status}"
                if recorded.status not in FINAL
                else f"(its worker went on to record {recorded.status}: reads may finish after a termination)"
            )
            return recorded.model_copy(
                update={"status": "cancelled", "reason": f"{why} {when}; steps as last recorded"}
            )
        return (await super().state(recorded.run_id)) or recorded

    def _summary(self, state: RunState) -> RunSummary:
        return RunSummary(
            run_id=state.run_id,
            status=state.status,
            playbook=state.playbook,
            alertname=state.alertname,
            mode=state.mode.value,
            started=state.started_at,
            closed=state.finished_at,
            execution="recorded",
        )


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second
