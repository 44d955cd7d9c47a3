"""Typed action specs (a step model bound to a handler of its own parameters) and the registry built from them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, cast

from pydantic import JsonValue

from service.playbooks.step_base import parse_rendered
from service.playbooks.steps import ACTIONS, Effect, Params
from service.runs.state import StepRequest, StepResult
from service.vocabulary.errors import ConfigError, PermanentStepError

P = TypeVar("P", bound=Params)
P_co = TypeVar("P_co", bound=Params, covariant=True)

Handler = Callable[[StepRequest, P], Awaitable[StepResult]]
"""What an adapter implements for one action: the request's names and flags, and that action's own parameters."""


class Declares(Protocol[P_co]):
    """A step model whose `with` block is P: what ties a handler's parameter type to its action at type-check time."""

    @property
    def with_(self) -> P_co: ...

    @classmethod
    def action_name(cls) -> str: ...

    @classmethod
    def params_model(cls) -> type[Params]: ...

    @classmethod
    def effect_of(cls, params: Params) -> Effect: ...


class Action(Generic[P]):
    """One action: its step model (name, parameters, effect) and the handler that performs it."""

    def __init__(self, step: type[Declares[P]], handler: Handler[P]) -> None:
        self.step, self.handler = step, handler
        self.name = step.action_name()
        # The step model's `with_` field is P (the Declares protocol checks it), so this is P's model.
        self.params = cast("type[P]", step.params_model())

    def parse(self, raw: Mapping[str, JsonValue]) -> P:
        """The request's parameters as the handler's type. The workflow checked them when it rendered them; this is
        the data converter's JSON turned back into that model (no parser runs again)."""
        return parse_rendered(self.params, raw)

    async def __call__(self, request: StepRequest) -> StepResult:
        params = self.parse(request.params)
        result = await self.handler(request, params)
        if self.step.effect_of(params) == "write":
            result.blast_radius = params.blast_radius(result.data, result.targets)
        return result


def specs(*actions: Action[Any]) -> dict[str, Action[Any]]:
    """An adapter's actions by name; a name offered twice is a programming error caught at start-up."""
    named: dict[str, Action[Any]] = {}
    for action in actions:
        if action.name in named:
            raise ConfigError(f"two handlers for action {action.name!r}")
        named[action.name] = action
    return named


class Registry:
    """Dispatches a rendered step request to the adapter that owns its action."""

    def __init__(self, providers: Iterable[Mapping[str, Action[Any]]], *, require_all: bool = True) -> None:
        actions: dict[str, Action[Any]] = {}
        for provided in providers:
            for name, action in provided.items():
                if ACTIONS.get(name) is not cast("type[Any]", action.step):
                    raise ConfigError(f"handler for unknown action {name!r}")
                if name in actions:
                    raise ConfigError(f"two handlers for action {name!r}")
                actions[name] = action
        missing = sorted(set(ACTIONS) - set(actions))
        if require_all and missing:
            raise ConfigError(f"no handler for action(s): {', '.join(missing)}")
        self._actions = actions

    @property
    def actions(self) -> list[str]:
        return sorted(self._actions)

    async def dispatch(self, request: StepRequest) -> StepResult:
        action = self._actions.get(request.action)
        if action is None:
            raise PermanentStepError(f"no handler for action {request.action!r}")
        return await action(request)
