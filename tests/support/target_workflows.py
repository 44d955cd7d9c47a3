"""Workflows that get stuck the ways runbook 002 describes; they are the targets of temporal.* actions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn
async def flaky_carrier_call(order: str) -> str:
    raise RuntimeError(f"carrier API timed out for {order}")


@workflow.defn
class AwaitsPickConfirmation:
    """Waits for a `pick_confirmed` signal that never comes."""

    def __init__(self) -> None:
        self.confirmed = False

    @workflow.run
    async def run(self, order: str, lines: int) -> str:
        await workflow.wait_condition(lambda: self.confirmed)
        return f"{order}: {lines} lines picked"

    @workflow.signal
    def pick_confirmed(self, by: str) -> None:
        self.confirmed = True

    @workflow.query
    def status(self) -> str:
        return "confirmed" if self.confirmed else "awaiting pick confirmation"


@workflow.defn
class StuckOnCarrier:
    """Retries an activity that keeps failing: a pending activity with attempts and a last failure."""

    @workflow.run
    async def run(self, order: str) -> str:
        return await workflow.execute_activity(
            flaky_carrier_call,
            order,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                maximum_interval=timedelta(milliseconds=200),
            ),
        )


@workflow.defn
class LongHistory:
    """Grows its history with many timers, then waits: a run heading toward the history limit."""

    @workflow.run
    async def run(self, timers: int) -> None:
        # Concurrent timers: one workflow task adds `timers` started events, and their firing as many again.
        await asyncio.gather(*(workflow.sleep(0.01) for _ in range(timers)))
        await workflow.wait_condition(lambda: False)


@workflow.defn
class Pokeable:
    """Waits for `poke`, then stays open a while so that a duplicate signal would be counted; returns the count."""

    def __init__(self) -> None:
        self.pokes = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.pokes > 0)
        await workflow.sleep(6)
        return self.pokes

    @workflow.signal
    def poke(self, by: str) -> None:
        self.pokes += 1

    @workflow.query(name="pokes")
    def count(self) -> int:
        return self.pokes
