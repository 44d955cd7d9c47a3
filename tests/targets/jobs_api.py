"""A jobs API that honours Idempotency-Key, as a well-behaved HTTP target does; records what it applied."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class JobsApi:
    """Jobs by id; `POST /jobs/{id}/cancel` applies once per key. Ids starting with `slow` answer after 3 s."""

    jobs: dict[str, str] = field(default_factory=dict)
    applied: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    keys: dict[str, Response] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def ping(request: Request) -> Response:
            return Response(status_code=200)

        async def get(request: Request) -> Response:
            job = request.path_params["job"]
            if job not in self.jobs:
                return JSONResponse({"error": "no such job"}, 404)
            return JSONResponse({"id": job, "status": self.jobs[job]})

        async def cancel(request: Request) -> Response:
            job, key = request.path_params["job"], request.headers.get("idempotency-key", "")
            self.received[job] += 1
            if key and key in self.keys:
                return self.keys[key]  # the same answer again, nothing applied twice
            if job not in self.jobs:
                return JSONResponse({"error": "no such job"}, 404)
            self.jobs[job] = "cancelled"
            self.applied[job] += 1
            answer = JSONResponse({"id": job, "status": "cancelled"})
            if key:
                self.keys[key] = answer
            if job.startswith("slow"):
                await asyncio.sleep(3)  # applied, and the answer still on its way: a write in flight
            return answer

        return Starlette(
            routes=[
                Route("/", ping, methods=["HEAD", "GET"]),
                Route("/jobs/{job}", get, methods=["GET"]),
                Route("/jobs/{job}/cancel", cancel, methods=["POST"]),
            ]
        )
