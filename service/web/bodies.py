"""Request bodies read with a size cap and a read timeout, before anything parses them."""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

READ_TIMEOUT = 10.0  # seconds a client may take to send its body


class BodyRefused(Exception):
    """The body was not read: too large (413), too slow (408) or the client went away (no answer needed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


async def read_body(request: Request, limit: int, within: float = READ_TIMEOUT) -> bytes:
    """The whole body, or BodyRefused: a declared or actual size over `limit`, or slower than `within` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"body over {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyRefused(408, f"body not received within {within:.0f}s") from exc
    except ClientDisconnect as exc:
        raise BodyRefused(400, "the client went away") from exc
    return b"".join(chunks)
