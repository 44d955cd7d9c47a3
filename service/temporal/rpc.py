"""The service's own Temporal: connecting, and the one place its client errors become ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio.client import Client, RPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from service.vocabulary.errors import RunNotOpen, RunUnknown, TemporalUnavailable

RPC_TIMEOUT = timedelta(seconds=5)  # well inside Alertmanager's webhook timeout, so it sees our 503
QUERY_TIMEOUT = timedelta(seconds=3)  # a query needs a worker: without one, say so instead of hanging
_UNAVAILABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}


@contextmanager
def rpc(what: str) -> Iterator[None]:
    """The one place Temporal client errors are translated: a run that is not there (or closed) is RunNotOpen,
    anything else TemporalUnavailable (a 503, so callers retry)."""
    try:
        yield
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunUnknown(f"not found while {what}") from exc
        if exc.status == RPCStatusCode.FAILED_PRECONDITION:
            raise RunNotOpen(f"closed while {what}") from exc
        raise TemporalUnavailable(f"Temporal unavailable while {what}: {exc}") from exc
    except RPCTimeoutOrCancelledError as exc:  # an Update that no worker answered in time
        raise TemporalUnavailable(f"no answer in time while {what}") from exc
    except RuntimeError as exc:  # the client cannot connect, or lost its connection
        raise TemporalUnavailable(f"Temporal unavailable while {what}: {exc}") from exc


async def connect(address: str, namespace: str) -> Client:
    """A lazy client: the web server starts even while Temporal is down, and answers 503 until it is back."""
    with rpc(f"connecting to {address}"):
        return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter, lazy=True)


async def connect_eager(address: str, namespace: str) -> Client:
    """A connected client, as a worker needs; raises TemporalUnavailable while Temporal cannot be reached."""
    with rpc(f"connecting to {address}"):
        return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter)
