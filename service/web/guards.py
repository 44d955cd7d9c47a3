"""Route guards: the one place a credential check becomes a 401 before an endpoint runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint, allows: Callable[[str | None], bool], challenge: str | None = None) -> Endpoint:
    """The endpoint, answered only for a caller whose Authorization header `allows` accepts; else 401."""

    async def checked(request: Request) -> Response:
        if not allows(request.headers.get("authorization")):
            headers = {"WWW-Authenticate": challenge} if challenge else None
            return JSONResponse({"error": "unauthorized"}, 401, headers=headers)
        return await endpoint(request)

    return checked
