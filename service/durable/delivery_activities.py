"""The delivery activity: starts a message's runs and signals resolved ones, a bounded number at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import activity

from service.runs.delivery import DELIVER, Delivery, DeliveryCounts
from service.runs.intake import RunStarter


class DeliveryActivities:
    """Safe to repeat: a run start is USE_EXISTING on a deterministic id, and `resolved` only sets a flag."""

    def __init__(
        self, runs: RunStarter, concurrency: int = 32, observe: Callable[[DeliveryCounts], None] = lambda _: None
    ) -> None:
        self.runs, self.observe = runs, observe
        # Shared by every delivery on this worker: in a storm, starts queued at the server would otherwise grow with
        # the deliveries in flight, and the webhook's own durable start would wait behind them (and answer 503).
        self.lanes = asyncio.Semaphore(concurrency)

    @activity.defn(name=DELIVER)
    async def deliver(self, delivery: Delivery) -> DeliveryCounts:
        async def bounded(call: Awaitable[bool]) -> bool:
            async with self.lanes:
                return await call

        runs = delivery.runs()
        outcomes = await asyncio.gather(
            *(bounded(self.runs.start(run)) for run in runs),
            *(bounded(self.runs.resolve(run_id)) for run_id in delivery.resolves),
        )
        started, signalled = sum(outcomes[: len(runs)]), sum(outcomes[len(runs) :])
        counts = DeliveryCounts(
            started=started,
            duplicates=len(runs) - started,
            resolved=signalled,
            not_open=len(delivery.resolves) - signalled,
        )
        self.observe(counts)
        return counts

    def all(self) -> list[Callable[..., object]]:
        return [self.deliver]
