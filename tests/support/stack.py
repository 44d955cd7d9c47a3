"""The service as it runs in production (web + worker) on free ports, inside the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from service.app.compose import Adapters, Notifiers, load_all
from service.app.process import serve
from service.config import Settings
from service.runs.policy import Mode
from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from service.vocabulary.errors import TemporalUnavailable
from tests.support.servers import free_port

TOKEN = "test-token"
RUNS = "WorkflowType = 'RemediationWorkflow'"  # a task queue also holds the governor: list only runs


@dataclass
class Stack:
    url: str
    settings: Settings
    client: Client


@asynccontextmanager
async def running_stack(
    client: Client,
    config: Path,
    playbooks: Path,
    mode: Mode,
    *,
    task_queue: str,
    web: bool = True,
    worker: bool = True,
    port: int | None = None,
    notifiers: Notifiers | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """Start the composed service (exactly what `remediate serve` runs) and stop it afterwards."""
    port = port or free_port()
    settings = Settings(
        config=config,
        playbooks=playbooks,
        mode=mode,
        listen=f"127.0.0.1:{port}",
        task_queue=task_queue,
        webhook_token=TOKEN,
        **overrides,
    )
    cfg, books = load_all(settings)
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings,
            books,
            Adapters.build(cfg),
            client=client,
            web=web,
            worker=worker,
            ready=ready,
            stop=stop,
            notifiers=notifiers or Notifiers(),
        )
    )
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield Stack(f"http://127.0.0.1:{port}", settings, client)
    finally:
        stop.set()  # as SIGTERM does: drain, then stop
        try:
            await asyncio.wait_for(task, timeout=15)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def state_now(runs: TemporalRuns, run_id: str) -> RunState | None:
    """A run's state for a polling loop: None while its worker is too busy to answer a query.

    A worker answers a query only between workflow tasks, and reads run as local activities inside one, so a run
    retrying a read against a target that is down cannot answer for several seconds: that is "not yet", not a failure.
    """
    try:
        return await runs.state(run_id)
    except TemporalUnavailable:
        return None


async def run_handle(client: Client, run_id: str, within: float = 30) -> WorkflowHandle[Any, Any]:
    """The run's handle once it exists: a webhook's answer means its delivery is durable, and the delivery workflow
    starts the run moments later."""
    handle = client.get_workflow_handle(run_id)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await handle.describe()
            return handle
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.05)


async def run_result(client: Client, run_id: str, within: float = 30) -> RunState:
    """The run's final state (it must complete, not fail), waiting for the delivery to start it first."""
    handle = await run_handle(client, run_id, within)
    return RunState.model_validate(await asyncio.wait_for(handle.result(), within))
