"""Items submitted from many tasks go out in batches: one Update in flight per destination, whatever the storm."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")
BATCH_WINDOW = 0.01  # seconds a first item waits for company; well under a write's own latency
BATCH_MAX = 200


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

    def queued(self) -> int:
        """Items waiting for a batch (the one in flight not counted): how far behind this destination is."""
        return len(self._pending)
