"""What every adapter shares: the adapter protocol, lazy per-connection clients closed once, and HTTP auth."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx2
from pydantic import BaseModel

from service.config import resolve_secret
from service.playbooks.system import HttpAuth, System
from service.runs.registry import Action, Handler, P
from service.runs.state import StepRequest, StepResult
from service.vocabulary.errors import ConfigError, PermanentStepError, RetryableStepError

C = TypeVar("C", bound=BaseModel)
K = TypeVar("K")


class Adapter(Protocol):
    """One target system: the connection type it serves, its actions, a readiness ping, and close."""

    connection_type: ClassVar[str]

    def actions(self) -> Mapping[str, Action[Any]]: ...

    async def ping(self, connection: str) -> None: ...

    async def close(self) -> None: ...


class ConnectionAdapter(ABC, Generic[C, K]):
    """Base of the adapters: one client per configured connection, opened on first use and closed once."""

    system: ClassVar[System]  # the system it serves, as playbooks declare it
    connection_type: ClassVar[str]  # derived from `system`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "system" in cls.__dict__:
            cls.connection_type = cls.system.name

    def __init__(self, connections: Mapping[str, C]) -> None:
        self._connections = dict(connections)
        self._clients: dict[str, K] = {}
        self._opening = asyncio.Lock()

    def connection(self, name: str) -> C:
        conn = self._connections.get(name)
        if conn is None:
            raise ConfigError(f"no {self.connection_type} connection named {name!r}")
        return conn

    async def client(self, name: str) -> K:
        client = self._clients.get(name)
        if client is None:
            async with self._opening:  # two first uses at once open one client, not two
                client = self._clients.get(name)
                if client is None:
                    client = await self._open(name, self.connection(name))
                    self._clients[name] = client
        return client

    def with_client(self, call: Callable[[K, StepRequest, P], Awaitable[StepResult]]) -> Handler[P]:
        """A handler for an action written as a function of the connection's client (kept in its own module)."""

        async def handle(request: StepRequest, params: P) -> StepResult:
            return await call(await self.client(request.connection), request, params)

        return handle

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await self._close(client)

    @abstractmethod
    def actions(self) -> Mapping[str, Action[Any]]: ...

    @abstractmethod
    async def ping(self, connection: str) -> None: ...

    @abstractmethod
    async def _open(self, name: str, conn: C) -> K: ...

    @abstractmethod
    async def _close(self, client: K) -> None: ...


def auth_headers(auth: HttpAuth | None, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Configured headers plus a bearer token, resolved from its reference inside the worker."""
    merged = dict(headers or {})
    if auth and auth.bearer:
        merged["Authorization"] = f"Bearer {resolve_secret(auth.bearer)}"
    return merged


def basic_auth(auth: HttpAuth | None) -> httpx2.BasicAuth | None:
    if auth and auth.username and auth.password:
        return httpx2.BasicAuth(auth.username, resolve_secret(auth.password))
    return None


def http_client(base_url: str, auth: HttpAuth | None, timeout: float = 5.0) -> httpx2.AsyncClient:
    """A client for one HTTP-based connection: its base URL and credentials, never following redirects."""
    return httpx2.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=auth_headers(auth),
        auth=basic_auth(auth),
        follow_redirects=False,
        timeout=timeout,  # the library's own default, unless the connection sets one
    )


@contextmanager
def http_errors(what: str, *, may_repeat: bool = True) -> Iterator[None]:
    """The one place httpx errors become step errors, for every HTTP adapter. A request that may not be repeated (a
    write without an idempotency guarantee) that timed out may have been applied: it is not retried."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        if not may_repeat:
            raise PermanentStepError(f"{what}: timed out; the request may have been applied") from exc
        raise RetryableStepError(f"{what}: timed out") from exc
    except httpx2.ConnectError as exc:
        raise RetryableStepError(f"{what}: cannot connect: {exc}") from exc
    except httpx2.HTTPStatusError as exc:
        retry = exc.response.status_code >= 500 and may_repeat
        kind = RetryableStepError if retry else PermanentStepError
        raise kind(f"{what}: answered {exc.response.status_code}: {exc.response.text[:300]}") from exc
    except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:  # ValueError: a body that is not JSON
        raise PermanentStepError(f"{what}: {exc}") from exc
