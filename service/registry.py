"""Action name -> handler, built explicitly from adapter instances; fails on duplicates or gaps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from pydantic import ValidationError

from service.errors import ConfigError, PermanentStepError
from service.runs import StepRequest, StepResult
from service.steps import ACTIONS, Params

Handler = Callable[[StepRequest, Params], Awaitable[StepResult]]


class Registry:
    """Dispatches a rendered step request to the adapter that owns its action."""

    def __init__(self, providers: Iterable[Mapping[str, Handler]], *, require_all: bool = True) -> None:
        handlers: dict[str, Handler] = {}
        for provided in providers:
            for action, handler in provided.items():
                if action not in ACTIONS:
                    raise ConfigError(f"handler for unknown action {action!r}")
                if action in handlers:
                    raise ConfigError(f"two handlers for action {action!r}")
                handlers[action] = handler
        missing = sorted(set(ACTIONS) - set(handlers))
        if require_all and missing:
            raise ConfigError(f"no handler for action(s): {', '.join(missing)}")
        self._handlers = handlers

    @property
    def actions(self) -> list[str]:
        return sorted(self._handlers)

    async def dispatch(self, request: StepRequest) -> StepResult:
        handler = self._handlers.get(request.action)
        if handler is None:
            raise PermanentStepError(f"no handler for action {request.action!r}")
        params_type: type[Params] = ACTIONS[request.action].model_fields["with_"].annotation  # type: ignore[assignment]
        try:
            params = params_type.model_validate(request.params, context={"rendered": True})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PermanentStepError(f"rendered parameters are invalid: {where}: {first['msg']}") from exc
        return await handler(request, params)
