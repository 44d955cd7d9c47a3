"""The activities: one step runner dispatching through the registry, the approval notifier, attempt counting."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from typing import Any, Protocol

from pydantic import JsonValue
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from service.runs.registry import Registry
from service.runs.state import NOTIFY_GATE, PRIOR_ATTEMPTS, RUN_STEP, SETTLE, PriorAttempts, StepRequest, StepResult
from service.vocabulary.approvals import MessageRef, Notice
from service.vocabulary.errors import ConfigError, NotifyError, StepError, WriteRefused
from service.vocabulary.log_format import in_step
from service.vocabulary.outcomes import NOTIFY_OUTCOME, Notifying, OutcomeNotice
from service.vocabulary.redact import redact

log = logging.getLogger("remediate.worker")
RESULT_LIMIT = 64 * 1024  # bytes of one step's result kept in the run's history and record


def bounded(result: StepResult) -> StepResult:
    """A result small enough for Temporal's payload limits: over RESULT_LIMIT, only short scalars are kept."""
    size = len(result.model_dump_json())
    if size <= RESULT_LIMIT:
        return result
    kept: dict[str, JsonValue] = {
        k: v
        for k, v in result.data.items()
        if v is None or isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) <= 1000)
    }
    note = f"result of {size} bytes truncated to its short fields (over {RESULT_LIMIT})"
    return result.model_copy(
        update={
            "data": {**kept, "truncated": True, "result_bytes": size},
            "summary": result.summary[:1000],
            "targets": [t[:300] for t in result.targets[:1000]],
            "note": f"{result.note}; {note}" if result.note else note,
        }
    )


class AttemptCounter(Protocol):
    """Counts earlier failed executions of a run id (the service's own Temporal, through visibility)."""

    async def prior_attempts(self, run_id: str) -> PriorAttempts: ...


class PausePoints:
    """Named points where a worker stops for a while, for crash drills; inert unless REMEDIATE_PAUSE_AT names one.

    The spec is a comma-separated list of `before:<step>` or `after:<step>`, each optionally `=<seconds>`
    (default: until the process is killed). Only a step's first attempt pauses, so a replacement worker with
    the same setting goes on. `after` is the point where a write has been applied and not yet reported.
    """

    def __init__(self, spec: str | None = None) -> None:
        self._points: dict[tuple[str, str], float] = {}
        for part in (spec or "").split(","):
            point, _, seconds = part.strip().partition("=")
            when, _, step = point.partition(":")
            if when in ("before", "after") and step:
                self._points[(when, step)] = float(seconds) if seconds else 1e9

    async def at(self, when: str, request: StepRequest) -> None:
        step = request.step_id.partition("[")[0]
        seconds = self._points.get((when, step))
        if seconds is None or request.attempt > 1:
            return
        log.warning("paused %s:%s of %s (REMEDIATE_PAUSE_AT)", when, step, request.run_id)
        await asyncio.sleep(seconds)


class StepActivities:
    """Holds the registry, the notifier and the attempt counter; one instance per worker."""

    def __init__(
        self,
        registry: Registry,
        notifier: Notifying,
        attempts: AttemptCounter | None = None,
        pauses: PausePoints | None = None,
        observe: Callable[[StepRequest, float, StepResult | None], None] = lambda _r, _s, _o: None,
        admit: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._registry, self._notifier, self._attempts = registry, notifier, attempts
        self._pauses, self._observe = pauses or PausePoints(), observe
        # The kill switch as this worker sees it, asked again just before a real write, and told when it is done.
        self._admit = admit

    @activity.defn(name=RUN_STEP)
    async def run_step(self, request: StepRequest) -> StepResult:
        info = activity.info()
        attempt = info.attempt
        request = request.model_copy(update={"attempt": attempt})
        # A local activity (a read) has no heartbeat: it runs within its workflow task's own deadline.
        beating = asyncio.create_task(_heartbeat() if not info.is_local else asyncio.sleep(0))
        began = time.monotonic()
        try:
            with in_step(request.step_id, request.action):
                await self._pauses.at("before", request)
                async with self._still_allowed(request):
                    result = await self._registry.dispatch(request)
                await self._pauses.at("after", request)
                log.info(
                    "step %s (%s%s) done in %.0f ms: %s",
                    request.step_id,
                    request.action,
                    ", dry-run" if request.dry_run else "",
                    (time.monotonic() - began) * 1000,
                    result.summary[:200] or "ok",
                )
        except ConfigError as exc:
            self._observe(request, time.monotonic() - began, None)
            message = redact(f"configuration: {exc}")
            raise ApplicationError(message, type="ConfigError", non_retryable=True) from exc
        except StepError as exc:
            self._observe(request, time.monotonic() - began, None)
            with in_step(request.step_id, request.action):
                log.warning("step %s (%s) failed on attempt %d: %s", request.step_id, request.action, attempt, exc)
            # A refusal at the last moment is a rail doing its job, not an error: no traceback in the worker's log.
            category = ApplicationErrorCategory.BENIGN if isinstance(exc, WriteRefused) else None
            raise ApplicationError(
                redact(str(exc)),
                type=type(exc).__name__,
                non_retryable=not exc.retryable,
                category=category or ApplicationErrorCategory.UNSPECIFIED,
            ) from exc
        finally:
            beating.cancel()
            with suppress(asyncio.CancelledError):
                await beating
        self._observe(request, time.monotonic() - began, result)
        result = bounded(result)
        if attempt > 1:
            done = result.note or "retried with the same idempotency key"
            result.note = f"attempt {attempt}: an earlier attempt did not finish (worker lost or transient); {done}"
        return result

    def _still_allowed(self, request: StepRequest) -> AbstractAsyncContextManager[None]:
        """The last look before a real write is sent (a switch turned on since its grant stops it here), held until
        the write returns: a flip is confirmed only once no write admitted before it is still on its way."""
        if request.effect != "write" or request.dry_run or self._admit is None:
            return nullcontext()
        return self._admit(request.run_id.partition("/")[0])

    @activity.defn(name=NOTIFY_GATE)
    async def notify_gate(self, notice: Notice) -> MessageRef:
        return await _shown(self._notifier.publish(notice))

    @activity.defn(name=NOTIFY_OUTCOME)
    async def notify_outcome(self, notice: OutcomeNotice) -> MessageRef:
        return await _shown(self._notifier.report(notice))

    @activity.defn(name=PRIOR_ATTEMPTS)
    async def prior_attempts(self, run_id: str) -> PriorAttempts:
        if self._attempts is None:
            return PriorAttempts()
        return await self._attempts.prior_attempts(run_id)

    @activity.defn(name=SETTLE)
    async def settle(self) -> None:
        """Nothing: its completion ends a workflow task (see RemediationWorkflow._settle)."""
        return None

    def all(self) -> list[Callable[..., Any]]:
        return [self.run_step, self.notify_gate, self.notify_outcome, self.prior_attempts, self.settle]


async def _shown(posting: Awaitable[MessageRef]) -> MessageRef:
    """A notifier's answer, its failure as Temporal should retry it (a 429's Retry-After, permanent refusals)."""
    try:
        return await posting
    except NotifyError as exc:
        raise ApplicationError(
            str(exc), type="NotifyError", non_retryable=not exc.retryable, next_retry_delay=exc.retry_after
        ) from exc


async def _heartbeat() -> None:
    """Heartbeat while a step runs, so a worker that dies is noticed within the heartbeat timeout."""
    timeout = activity.info().heartbeat_timeout
    interval = max(timeout.total_seconds() / 3, 0.5) if timeout else 5.0
    while True:
        activity.heartbeat()
        await asyncio.sleep(interval)
