"""The service's own Temporal: start runs with deterministic ids, signal resolution, read run state."""

from __future__ import annotations

import asyncio
import builtins
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from service.durable.delivery_workflow import DeliveryWorkflow
from service.durable.workflows import RemediationWorkflow
from service.playbooks.shelf import SHELF
from service.runs.deadline import longest_run
from service.runs.delivery import Delivery
from service.runs.listing import RunCursor, RunQuery, RunsPage, RunSummary, one_page
from service.runs.state import PriorAttempts, RunStart, RunState, short_id
from service.temporal.rpc import QUERY_TIMEOUT, RPC_TIMEOUT, connect, connect_eager, rpc
from service.vocabulary.approvals import Decision, DecisionRecord
from service.vocabulary.errors import RemediateError, RunNotOpen, RunUnknown, TemporalUnavailable

__all__ = ["TemporalRuns", "connect", "connect_eager"]

PROBLEMS = "TemporalReportedProblems"  # set by the server after consecutive workflow task failures or timeouts
STUCK = f"WorkflowType = 'RemediationWorkflow' AND ExecutionStatus = 'Running' AND {PROBLEMS} IS NOT NULL"


class TemporalRuns:
    """Everything the web server and the CLI ask of the service's Temporal namespace."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    async def start(self, run: RunStart) -> bool:
        """Start the run; False when this occurrence already has one (running or closed).

        The common case, an id never used, is one call that also tells the run it is a first attempt (so it need not
        count earlier ones through visibility). Only an id with a closed execution takes a second call, which starts
        a new attempt if the last one failed.
        """
        try:
            return await self._start(
                run.model_copy(update={"first_attempt": True}), WorkflowIDReusePolicy.REJECT_DUPLICATE
            )
        except WorkflowAlreadyStartedError:  # a closed execution exists: another attempt only if it failed
            pass
        try:
            # A run that ended `failed` fails its execution, so a later delivery may start the occurrence again;
            # the workflow itself bounds how often (max attempts, back-off).
            return await self._start(run, WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        except WorkflowAlreadyStartedError:  # not an error: this occurrence already has its run
            return False

    async def _start(self, run: RunStart, reuse: WorkflowIDReusePolicy) -> bool:
        with rpc(f"starting {run.run_id}"):
            handle = await self.client.start_workflow(
                RemediationWorkflow.run,
                run,
                id=run.run_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=reuse,
                memo={"playbook": run.playbook_name, "alertname": run.alert.alertname, "mode": run.mode.value},
                static_summary=f"{run.playbook_name} for {run.alert.alertname} ({run.mode.value})",
                # No run stays open past its playbook's own timeouts (its playbook is on this process's shelf).
                execution_timeout=longest_run(run.resolved(SHELF)),
                rpc_timeout=RPC_TIMEOUT,
                request_eager_start=True,
            )
        return _started(handle)

    async def deliver(self, delivery: Delivery) -> bool:
        """Make one webhook message durable with a single start; False when an identical delivery was accepted."""
        try:
            with rpc(f"starting {delivery.delivery_id}"):
                handle = await self.client.start_workflow(
                    DeliveryWorkflow.run,
                    delivery,
                    id=delivery.delivery_id,
                    task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    # A delivery that failed (it retries for an hour first) may be sent again and redone.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    rpc_timeout=RPC_TIMEOUT,
                )
        except WorkflowAlreadyStartedError:  # an identical message was delivered in this window
            return False
        return _started(handle)

    async def resolve(self, run_id: str) -> bool:
        """Signal `resolved` to a run; False when there is no open run for it."""
        try:
            with rpc(f"signalling {run_id}"):
                await self.client.get_workflow_handle(run_id).signal(
                    RemediationWorkflow.resolve, rpc_timeout=RPC_TIMEOUT
                )
        except RunNotOpen:
            return False
        return True

    async def decide(self, run_id: str, decision: Decision) -> None:
        """Hand an approve/reject to the run; the run decides whether it counts."""
        try:
            with rpc(f"deciding {run_id}"):
                await self.client.get_workflow_handle(run_id).signal(
                    RemediationWorkflow.decide, decision, rpc_timeout=RPC_TIMEOUT
                )
        except RunNotOpen as exc:
            if await self.execution_status(run_id) is None:
                raise RunUnknown(f"no run {run_id}") from exc
            raise RunNotOpen(f"run {run_id} has finished; it waits for no decision") from exc

    async def execution_status(self, run_id: str) -> WorkflowExecutionStatus | None:
        """What Temporal says of the run's latest execution; None when it has no such run (or no longer)."""
        try:
            with rpc(f"reading {run_id}"):
                description = await self.client.get_workflow_handle(run_id).describe(rpc_timeout=RPC_TIMEOUT)
        except RunUnknown:
            return None
        return description.status

    async def decision(self, run_id: str, decision_id: str, within: float = 3.0) -> DecisionRecord | None:
        """The recorded fate of one decision, once the run has processed it (None if not yet)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                state = await self.state(run_id, query_timeout=timedelta(seconds=1))
            except TemporalUnavailable:
                return None  # no worker answers now: the decision is recorded in history and counts when one does
            records = state.gate.decisions if state and state.gate else []
            found = next((d for d in records if d.decision_id == decision_id), None)
            if found or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.1)

    async def ping(self) -> None:
        with rpc("checking readiness"):
            await self.client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=RPC_TIMEOUT)

    async def list(self, query: RunQuery) -> RunsPage:
        """The newest runs first, each with its own final status (read from its result once it has closed); the
        run's own status filters after the read (visibility knows only Temporal's)."""
        visibility = "WorkflowType = 'RemediationWorkflow'"
        if query.playbook:
            visibility += f" AND WorkflowId STARTS_WITH '{_quoted(query.playbook)}/'"
        if query.since is not None:
            visibility += f" AND StartTime >= '{query.since.isoformat()}'"
        if query.before is not None:
            visibility += f" AND StartTime < '{query.before.at.isoformat()}'"
        found = []
        with rpc("listing runs"):
            async for execution in self.client.list_workflows(visibility, limit=query.limit + 1):
                found.append(execution)
        found, more = one_page(found, query.limit)
        lanes = asyncio.Semaphore(16)  # a long list reads its results a few at a time

        async def read(run_id: str, status: WorkflowExecutionStatus | None) -> tuple[str, int]:
            async with lanes:
                return await self._outcome(run_id, status)

        outcomes = await asyncio.gather(*(read(e.id, e.status) for e in found))
        runs: builtins.list[RunSummary] = []
        for execution, (outcome, place) in zip(found, outcomes, strict=True):
            memo = await execution.memo()
            runs.append(
                RunSummary(
                    run_id=execution.id,
                    status=outcome,
                    place=place,
                    playbook=str(memo.get("playbook", "")),
                    alertname=str(memo.get("alertname", "")),
                    mode=str(memo.get("mode", "")),
                    started=execution.start_time,
                    closed=execution.close_time,
                    execution=execution.status.name.lower() if execution.status else "unknown",
                )
            )
        older = RunCursor(found[-1].start_time, found[-1].id) if more and found else None
        shown = [r for r in runs if _kept(r, query)]
        return RunsPage(shown, older)

    async def stuck(self, limit: int = 100) -> builtins.list[RunSummary]:
        """Open runs whose workflow tasks keep failing or timing out (Temporal reports it after a few in a row):
        they make no progress until someone looks. Runs past their own timeouts need no list: Temporal ends them."""
        found = []
        with rpc("listing stuck runs"):
            async for execution in self.client.list_workflows(STUCK, limit=limit):
                memo = await execution.memo()
                problems = execution.search_attributes.get(PROBLEMS) or []
                found.append(
                    RunSummary(
                        run_id=execution.id,
                        status="stuck",
                        playbook=str(memo.get("playbook", "")),
                        alertname=str(memo.get("alertname", "")),
                        mode=str(memo.get("mode", "")),
                        started=execution.start_time,
                        closed=None,
                        execution=", ".join(str(p) for p in problems) or "running",
                    )
                )
        return found

    async def count_stuck(self) -> int:
        with rpc("counting stuck runs"):
            return (await self.client.count_workflows(STUCK, rpc_timeout=RPC_TIMEOUT)).count

    async def _outcome(self, run_id: str, status: WorkflowExecutionStatus | None) -> tuple[str, int]:
        """The run's own status (and place in line while it waits for a slot)."""
        if status == WorkflowExecutionStatus.RUNNING:
            try:  # where it is now (awaiting_approval, waiting_for_slot, acting, …), if a worker answers at once
                live = await self.state(run_id, query_timeout=timedelta(seconds=1))
            except RemediateError:
                return "running", 0
            if live is None:
                return "running", 0
            return live.status, live.place if live.status == "waiting_for_slot" else 0
        if status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
            try:
                state = await self.state(run_id)
            except RemediateError:
                state = None
            if state is not None:
                return state.status, 0
        return (status.name.lower() if status else "unknown"), 0  # terminated, timed_out, cancelled: Temporal's word

    async def resolve_id(self, given: str, within: int = 1000) -> str:
        """A full run id as given, or the one run among the newest `within` whose short id or id prefix it is."""
        if "/" in given and given.count("/") >= 2:
            return given
        matches: list[str] = []
        with rpc("finding a run"):
            async for execution in self.client.list_workflows("WorkflowType = 'RemediationWorkflow'", limit=within):
                if short_id(execution.id) == given or execution.id.startswith(given):
                    matches.append(execution.id)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunUnknown(f"no run {given!r} among the newest {within}")
        raise RunUnknown(f"{given!r} names {len(matches)} runs; give more of the id: {', '.join(matches[:5])}")

    async def prior_attempts(self, run_id: str) -> PriorAttempts:
        """Closed executions of this run id that did not succeed (the workflow bounds retries with this)."""
        query = f"WorkflowId = '{_quoted(run_id)}' AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'"
        count, last = 0, None
        with rpc(f"counting attempts of {run_id}"):
            async for execution in self.client.list_workflows(query, rpc_timeout=RPC_TIMEOUT):
                count += 1
                if execution.close_time and (last is None or execution.close_time > last):
                    last = execution.close_time
        return PriorAttempts(count=count, last_closed_at=last)

    async def state(self, run_id: str, query_timeout: timedelta = QUERY_TIMEOUT) -> RunState | None:
        """The run's state: its result once closed (a failed run carries it in its failure), else a live query."""
        handle: WorkflowHandle[RemediationWorkflow, RunState] = self.client.get_workflow_handle_for(
            RemediationWorkflow.run, run_id
        )
        try:
            with rpc(f"reading {run_id}"):
                description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
                if description.status == WorkflowExecutionStatus.COMPLETED:
                    return await handle.result(rpc_timeout=RPC_TIMEOUT)
                if description.status == WorkflowExecutionStatus.FAILED:
                    return await _failed_state(handle)
                if description.status != WorkflowExecutionStatus.RUNNING:
                    return None
        except RunUnknown:
            return None
        try:
            # The client retries a query on its own; the overall wait is bounded here.
            async with asyncio.timeout(query_timeout.total_seconds()):
                with rpc(f"querying {run_id}"):
                    return await handle.query(RemediationWorkflow.state, rpc_timeout=query_timeout)
        except (RemediateError, TimeoutError) as exc:
            # Temporal answered the describe just now: no worker answered, or the run is inside a workflow task
            # (reads run as local activities in one, and a query waits for it to end).
            raise TemporalUnavailable(
                f"run {run_id} is open but no worker answered within {query_timeout.total_seconds():.0f}s "
                f"({exc or 'timed out'}): a run retrying a read answers once the read ends; "
                "if this persists, is a worker running?"
            ) from exc


async def _failed_state(handle: WorkflowHandle[RemediationWorkflow, RunState]) -> RunState | None:
    try:
        await handle.result(rpc_timeout=RPC_TIMEOUT)
    except WorkflowFailureError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "RunFailed" and cause.details:
            return RunState.model_validate(cause.details[0])
    return None


def _started(handle: WorkflowHandle[Any, Any]) -> bool:
    # USE_EXISTING answers with started=False when the workflow was already there.
    response = getattr(handle, "_start_workflow_response", None)
    return bool(getattr(response, "started", True))


def _kept(run: RunSummary, query: RunQuery) -> bool:
    return (query.status is None or run.status == query.status) and (
        query.alertname is None or run.alertname == query.alertname
    )


def _quoted(text: str) -> str:
    # Visibility strings have no escape for quotes; run ids never hold them, but never let one end the literal.
    return text.replace("'", "").replace("\\", "")
