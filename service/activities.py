"""The single step activity: dispatch through the registry and translate errors for Temporal."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.engine import RUN_STEP, StepRequest, StepResult
from service.errors import ConfigError, StepError
from service.registry import Registry


class StepActivities:
    """Holds the registry; one instance per worker."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @activity.defn(name=RUN_STEP)
    async def run_step(self, request: StepRequest) -> StepResult:
        try:
            return await self._registry.dispatch(request)
        except ConfigError as exc:
            raise ApplicationError(f"configuration: {exc}", type="ConfigError", non_retryable=True) from exc
        except StepError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable) from exc
