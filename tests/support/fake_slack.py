"""A local stand-in for Slack's Web API: records every call and can answer 429 or 500 on demand."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeSlack:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to answer next, in order
    always: int | None = None  # answer every call with this status
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def messages(self, method: str | None = None) -> list[dict[str, Any]]:
        return [body for name, body in self.calls if method is None or name == method]

    def app(self) -> Starlette:
        async def method(request: Request) -> Response:
            name = request.path_params["method"]
            body = json.loads(await request.body())
            status = self.always or (self.answers.pop(0) if self.answers else 200)
            self.calls.append((f"{name}:{status}" if status != 200 else name, body))
            if status == 429:
                return JSONResponse({"ok": False, "error": "ratelimited"}, 429, headers={"Retry-After": "1"})
            if status != 200:
                return JSONResponse({"ok": False, "error": "internal_error"}, status)
            assert request.headers["authorization"] == "Bearer xoxb-test"
            ts = body.get("ts") or f"1795400000.{next(self._ts):06d}"
            return JSONResponse({"ok": True, "channel": body["channel"], "ts": ts})

        return Starlette(routes=[Route("/api/{method}", method, methods=["POST"])])
