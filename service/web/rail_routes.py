"""HTTP routes for the rails: read and flip the kill switch; who flipped it comes from the approver token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.rails.governance import Switch, SwitchChange
from service.rails.kill_switch import SwitchBoard, switch_view
from service.web.bodies import BodyRefused, read_body
from service.web.credentials import ApproverTokens, WebAuth
from service.web.guards import guarded

BODY_LIMIT = 16 * 1024
ANONYMOUS = "anonymous (open API on loopback)"


class Switching(Protocol):
    async def set_switch(self, change: SwitchChange) -> Switch: ...

    async def board(self) -> SwitchBoard: ...


class SwitchBody(BaseModel):
    """Body of PUT /api/v1/kill-switch."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    reason: str = Field(default="", max_length=1000)
    playbook: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


def rail_routes(
    governor: Switching,
    webhook: WebAuth,
    approvers: ApproverTokens,
    reader: Callable[[str | None], bool],
    body_timeout: float = 10.0,
    playbooks: Callable[[], frozenset[str]] | None = None,
) -> list[Route]:
    """GET (anyone who may read runs) and PUT (an approver) /api/v1/kill-switch."""

    async def read(request: Request) -> Response:
        return JSONResponse(switch_view(await governor.board()))

    async def put(request: Request) -> Response:
        header = request.headers.get("authorization")
        identity = approvers.identity(header)
        if identity is None and not approvers.identities and not webhook.enabled:
            identity = ANONYMOUS  # `remediate dev`: no credentials anywhere, loopback only
        if identity is None:
            if webhook.enabled and webhook.allows(header):
                refused = "the webhook's credential cannot flip the switch; use an approver token"
                return JSONResponse({"error": refused}, 403)
            return JSONResponse({"error": "an approver token is needed to flip the kill switch"}, 401)
        try:
            body = SwitchBody.model_validate_json(await read_body(request, BODY_LIMIT, body_timeout))
        except BodyRefused as exc:
            return JSONResponse({"error": exc.reason}, exc.status)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return JSONResponse({"error": f"bad kill switch body: {where}: {first['msg']}"}, 400)
        if body.playbook is not None and playbooks is not None and body.playbook not in playbooks():
            return JSONResponse({"error": f"no playbook named {body.playbook!r} is loaded here"}, 400)
        change = SwitchChange(on=body.on, by=identity, reason=body.reason, playbook=body.playbook)
        switch = await governor.set_switch(change)
        return JSONResponse({"playbook": body.playbook, **switch.model_dump(mode="json")})

    return [
        Route("/api/v1/kill-switch", guarded(read, reader), methods=["GET"]),
        Route("/api/v1/kill-switch", put, methods=["PUT"]),
    ]
