"""What a notifier declares once, in its own module: its settings, how it is built, its secrets and its clicks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic_settings import BaseSettings

from service.vocabulary.approvals import Decision
from service.vocabulary.outcomes import Notifying

S = TypeVar("S", bound=BaseSettings)

Decide = Callable[[str, Decision], Awaitable[None]]
"""Send one decision to its run; a run no longer open ignores it (a click on an old message)."""

Headers = Callable[[str], list[str]]
"""Every value of one request header (a header sent twice is two values, which a signature check refuses)."""


@dataclass(frozen=True)
class ClickAnswer:
    """What a click route answers: a status, and the reason when it refuses."""

    status: int
    error: str = ""


@dataclass(frozen=True)
class ClickRoute:
    """Where a notifier's buttons post back: a path, a body limit, and what turns the raw body into decisions (the
    web app reads the body within its limits and time, and serves the route whether the notifier is set up or not:
    an unconfigured one refuses every click)."""

    path: str
    body_limit: int
    answer: Callable[[bytes, Headers, Decide, float], Awaitable[ClickAnswer]]


def _nothing(_: BaseSettings) -> list[str]:
    return []


@dataclass(frozen=True)
class NotifierKind(Generic[S]):
    """One notifier: `settings` reads its own variables from the environment; `set_up` says whether they set it up,
    and `build` gives the notifier when they do; `secrets` are the values the audit trail must never show; `channel` is
    the default place for approval requests; `clicks`, the route its buttons post back to, if it has buttons."""

    name: str
    settings: type[S]
    set_up: Callable[[S], bool]
    build: Callable[[S], Notifying]
    secrets: Callable[[S], list[str]] = field(default=_nothing)
    channel: Callable[[S], str | None] = field(default=lambda _: None)
    clicks: Callable[[S], ClickRoute] | None = None
