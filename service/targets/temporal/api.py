"""What the Temporal target adapter's modules share: the one error map, and plain data for run records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import JsonValue
from temporalio.service import RPCError, RPCStatusCode

from service.vocabulary.errors import PermanentStepError, RetryableStepError

_RETRYABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}


def plain(value: Any) -> JsonValue:
    plain: JsonValue = json.loads(json.dumps(value, default=str))
    return plain


@contextmanager
def errors(what: str) -> Iterator[None]:
    """The one place Temporal client errors become step errors, keeping the gRPC status code."""
    try:
        yield
    except RPCError as exc:
        error = RetryableStepError if exc.status in _RETRYABLE else PermanentStepError
        raise error(f"{what}: {exc.status.name}: {exc.message}", status=exc.status.value) from exc
    except RuntimeError as exc:  # the client could not connect, or lost its connection
        raise RetryableStepError(f"{what}: {exc}") from exc


def read_file(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
