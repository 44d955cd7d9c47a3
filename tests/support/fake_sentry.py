"""A local stand-in for Sentry's ingest endpoint: records every envelope item the SDK sends."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeSentry:
    raw: list[bytes] = field(default_factory=list)  # each envelope as sent, decompressed
    items: list[dict[str, Any]] = field(default_factory=list)  # event payloads (type "event")

    def dsn(self, url: str) -> str:
        host = url.removeprefix("http://")
        return f"http://publickey@{host}/1"

    def app(self) -> Starlette:
        async def envelope(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.raw.append(body)
            lines = body.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event" and payload:
                    self.items.append(json.loads(payload))
            return JSONResponse({"id": "0" * 32})

        return Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])])
