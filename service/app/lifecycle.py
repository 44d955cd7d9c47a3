"""A process's life: the worker waits for Temporal with back-off, and SIGTERM drains web and worker gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import uvicorn
from temporalio.client import Client

from service.vocabulary.errors import TemporalUnavailable

log = logging.getLogger("remediate")
FIRST_DELAY, MAX_DELAY = 1.0, 30.0


class Polling(Protocol):
    """A Temporal worker, or several run together."""

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass
class WorkerHealth:
    """What /readyz says about this process's worker; None means the process runs no worker."""

    state: str = "starting"
    detail: str = "not connected to Temporal yet"

    def problem(self) -> str | None:
        return None if self.state == "polling" else f"{self.state}: {self.detail}"


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process stops web and worker together, in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def connect_with_backoff(
    connect: Callable[[], Awaitable[Client]], address: str, stop: asyncio.Event, health: WorkerHealth
) -> Client | None:
    """Connect until it works or the process is told to stop; one log line per failed attempt."""
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return await connect()
        except TemporalUnavailable as exc:
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (attempt - 1))
            health.state, health.detail = "waiting for Temporal", f"attempt {attempt} failed: {exc}"
            log.warning(
                "worker: Temporal at %s unreachable (attempt %d), retrying in %.0fs: %s", address, attempt, delay, exc
            )
            await _pause(stop, delay)
    return None


async def run_worker(
    client: Client | None,
    connect: Callable[[], Awaitable[Client]],
    build: Callable[[Client], Polling],
    address: str,
    stop: asyncio.Event,
    health: WorkerHealth,
) -> None:
    """Poll until `stop`; then stop polling and let activities in flight finish within the worker's grace period.

    A worker that fails (Temporal gone for long, a namespace not there yet) is rebuilt after a back-off rather
    than taking the process down with it.
    """
    failures = 0
    while not stop.is_set():
        if client is None:
            client = await connect_with_backoff(connect, address, stop, health)
            if client is None:
                return
        worker = build(client)
        running = asyncio.create_task(worker.run())
        stopping = asyncio.create_task(stop.wait())
        health.state, health.detail = "polling", ""
        log.info("worker: polling on Temporal at %s", address)
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            running.cancel()  # a hard stop (a second signal): no drain
            stopping.cancel()
            raise
        if stopping.done():
            health.state, health.detail = "stopping", "draining activities in flight"
            log.info("worker: stopping; activities in flight may finish within the grace period")
            await worker.shutdown()
            await asyncio.gather(running, return_exceptions=True)
            return
        stopping.cancel()
        failures += 1
        error = running.exception()
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - 1))
        health.state, health.detail = "restarting", f"worker failed: {error}"
        log.error("worker failed (%s); starting it again in %.0fs", error, delay)
        await _pause(stop, delay)
