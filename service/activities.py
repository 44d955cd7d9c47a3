"""The activities: one step runner dispatching through the registry, and the approval notifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.approvals import Notice, Notifier, Posted
from service.errors import ConfigError, NotifyError, StepError
from service.registry import Registry
from service.runs import NOTIFY_GATE, RUN_STEP, StepRequest, StepResult


class StepActivities:
    """Holds the registry and the notifier; one instance per worker."""

    def __init__(self, registry: Registry, notifier: Notifier) -> None:
        self._registry, self._notifier = registry, notifier

    @activity.defn(name=RUN_STEP)
    async def run_step(self, request: StepRequest) -> StepResult:
        try:
            return await self._registry.dispatch(request)
        except ConfigError as exc:
            raise ApplicationError(f"configuration: {exc}", type="ConfigError", non_retryable=True) from exc
        except StepError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable) from exc

    @activity.defn(name=NOTIFY_GATE)
    async def notify_gate(self, notice: Notice) -> Posted:
        try:
            return await self._notifier.publish(notice)
        except NotifyError as exc:
            raise ApplicationError(
                str(exc), type="NotifyError", non_retryable=not exc.retryable, next_retry_delay=exc.retry_after
            ) from exc

    def all(self) -> list[Callable[..., Any]]:
        return [self.run_step, self.notify_gate]
