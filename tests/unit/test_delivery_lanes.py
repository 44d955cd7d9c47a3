"""A worker's deliveries share one bound on run starts and signals in flight."""

from __future__ import annotations

import asyncio

from service.durable.delivery_activities import DeliveryActivities
from service.runs.delivery import Delivery
from service.runs.state import RunStart


class SlowStarter:
    """Counts how many calls are in flight at once."""

    def __init__(self) -> None:
        self.now = self.most = 0

    async def _call(self) -> bool:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        return True

    async def start(self, run: RunStart) -> bool:
        return await self._call()

    async def resolve(self, run_id: str) -> bool:
        return await self._call()


async def test_concurrent_deliveries_on_one_worker_share_the_intake_bound() -> None:
    """Four deliveries of ten resolves each, run at once with a bound of 3, never have more than 3 calls out."""
    starter = SlowStarter()
    activities = DeliveryActivities(starter, concurrency=3)
    deliveries = [Delivery(delivery_id=f"d{i}", resolves=[f"p/{i}/{n}" for n in range(10)]) for i in range(4)]
    counts = await asyncio.gather(*(activities.deliver(d) for d in deliveries))
    assert [c.resolved for c in counts] == [10, 10, 10, 10]
    assert starter.most == 3
