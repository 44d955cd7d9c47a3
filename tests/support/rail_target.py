"""A target for the rails drills: diagnose reads that can be held, writes that are counted (and can fail)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PLAYBOOK = """
name: {name}
match: {{alertname: {alertname}}}
inputs: {{key: "{{{{ alert.labels.key }}}}"}}
{extra}
diagnose:
  - id: check
    action: http.request
    connection: target
    timeout: 60s
    with: {{path: "/check/{{{{ inputs.key }}}}"}}
act:
  - id: fix
    action: http.request
    connection: target
    approval: none
    with: {{method: POST, path: "/fix/{{{{ inputs.key }}}}"}}
verify:
  - id: fixed
    action: http.request
    connection: target
    timeout: 60s
    with: {{path: "/fixed/{{{{ inputs.key }}}}"}}
"""


def playbook(name: str, alertname: str, extra: str = "") -> str:
    """A one-read, one-write, one-verify playbook against the rail target."""
    return PLAYBOOK.format(name=name, alertname=alertname, extra=extra)


@dataclass
class RailTarget:
    """Records who read and wrote what; `hold_checks`/`hold_verify` park requests until released."""

    checks: dict[str, str] = field(default_factory=dict)  # key -> the replica that read it (X-Replica)
    writes: Counter[str] = field(default_factory=Counter)
    failing: set[str] = field(default_factory=set)
    header_names: set[str] = field(default_factory=set)  # every header any request carried, lowercased
    write_log: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic time, key, replica) per write
    write_seconds: float = 0.0  # how long each write takes at the target
    in_flight: int = 0
    most_in_flight: int = 0  # the most writes the target saw at once: what max_concurrent must bound
    checks_open: asyncio.Event = field(default_factory=asyncio.Event)
    verify_open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.checks_open.set()
        self.verify_open.set()

    def app(self) -> Starlette:
        async def check(request: Request) -> Response:
            key = request.path_params["key"]
            self.checks[key] = request.headers.get("x-replica", "")
            await self.checks_open.wait()
            return JSONResponse({"key": key, "stuck": True})

        async def fix(request: Request) -> Response:
            key = request.path_params["key"]
            if key in self.failing:
                return JSONResponse({"error": "refused"}, 409)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.write_seconds)
            finally:
                self.in_flight -= 1
            self.writes[key] += 1
            self.write_log.append((time.monotonic(), key, request.headers.get("x-replica", "")))
            return JSONResponse({"fixed": key})

        async def fixed(request: Request) -> Response:
            await self.verify_open.wait()
            return JSONResponse({"fixed": True})

        async def record_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
            self.header_names.update(request.headers.keys())
            return await call_next(request)

        app = Starlette(
            routes=[
                Route("/check/{key}", check, methods=["GET"]),
                Route("/fix/{key}", fix, methods=["POST"]),
                Route("/fixed/{key}", fixed, methods=["GET"]),
            ]
        )
        app.add_middleware(BaseHTTPMiddleware, dispatch=record_headers)
        return app
