"""One Update to one of the service's own long-lived workflows, started on demand and asked again across its
continue-as-new; the one place this package turns Temporal's errors into ours."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import WorkflowUpdateFailedError

from service.temporal.rpc import rpc
from service.vocabulary.errors import RunNotOpen, RunUnknown, TemporalUnavailable

T = TypeVar("T")
UPDATE_ATTEMPTS = 5  # within a local activity's own retries: a continue-as-new takes a moment


async def update(call: Callable[[], Awaitable[T]], start: Callable[[], Awaitable[None]], what: str) -> T:
    """`call`; a workflow not running yet (or terminated) is started first, and one caught between two runs
    (continue-as-new) or a failed task is asked again."""
    for attempt in range(UPDATE_ATTEMPTS):
        try:
            with rpc(what):
                return await call()
        except RunUnknown:
            await start()
        except WorkflowUpdateFailedError as exc:
            raise TemporalUnavailable(f"the governor failed while {what}: {exc.cause or exc}") from exc
        except (RunNotOpen, TemporalUnavailable):
            if attempt == UPDATE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.1 * 2**attempt)
    raise TemporalUnavailable(f"the governor did not answer while {what}")
