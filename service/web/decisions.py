"""HTTP routes for approval decisions: each notifier's click route and the authenticated run API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.notify.base import ClickRoute
from service.runs.state import run_id_problem
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision, Verdict
from service.vocabulary.errors import RunNotOpen, RunUnknown
from service.web.bodies import BodyRefused, read_body
from service.web.credentials import ApproverTokens, WebAuth

API_BODY_LIMIT = 16 * 1024


class ApiDecision(BaseModel):
    """Body of POST /api/v1/runs/{id}/approve|reject: who decides, and optionally for which gate."""

    approver: str | None = Field(
        default=None, min_length=1, max_length=200, description="Optional: must be the token's own identity."
    )
    gate: str = Field(default="act", min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    comment: str = Field(default="", max_length=1000)
    decision_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Retries with the same id count once."
    )


def _refused(exc: BodyRefused) -> Response:
    return JSONResponse({"error": exc.reason}, exc.status)


def decision_routes(
    runs: TemporalRuns,
    webhook: WebAuth,
    approvers: ApproverTokens,
    clicks: Sequence[ClickRoute],
    body_timeout: float = 10.0,
) -> list[Route]:
    """The routes the notifiers' buttons post back to and the run API's approve/reject; Temporal trouble
    propagates as TemporalUnavailable, answered 503 by the app's exception handler."""

    async def decide(run_id: str, decision: Decision) -> None:
        try:
            await runs.decide(run_id, decision)
        except RunNotOpen:
            return  # a click on an old message: the run's own message already says how it ended

    def click_route(click: ClickRoute) -> Route:
        async def clicked(request: Request) -> Response:
            try:
                body = await read_body(request, click.body_limit, body_timeout)
            except BodyRefused as exc:
                return _refused(exc)
            # The clock is looked up per request, so a frozen clock in tests applies.
            answer = await click.answer(body, request.headers.getlist, decide, time.time())
            return (
                JSONResponse({"error": answer.error}, answer.status) if answer.error else Response(None, answer.status)
            )

        return Route(click.path, clicked, methods=["POST"])

    async def api_decision(request: Request, verdict: Verdict) -> Response:
        header = request.headers.get("authorization")
        identity = approvers.identity(header)
        if identity is None:
            if webhook.enabled and webhook.allows(header):
                return JSONResponse({"error": "the webhook's credential cannot decide; use an approver token"}, 403)
            return JSONResponse({"error": "an approver token is needed to decide"}, 401)
        try:
            raw = await read_body(request, API_BODY_LIMIT, body_timeout)
            body = ApiDecision.model_validate_json(raw) if raw.strip() else ApiDecision()  # no body: just decide
        except BodyRefused as exc:
            return _refused(exc)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return JSONResponse({"error": f"bad decision: {where}: {first['msg']}"}, 400)
        if body.approver is not None and body.approver != identity:
            return JSONResponse({"error": f"this token decides as {identity}, not as {body.approver}"}, 403)
        run_id = request.path_params["run_id"]
        if problem := run_id_problem(run_id):
            return JSONResponse({"error": problem}, 400)
        decision = Decision(
            gate=body.gate,
            verdict=verdict,
            user=identity,
            source="api",
            comment=body.comment,
            decision_id=body.decision_id or f"api:{uuid.uuid4()}",
        )
        try:
            await runs.decide(run_id, decision)
            record = await runs.decision(run_id, decision.decision_id)
        except RunUnknown as exc:
            return JSONResponse({"error": str(exc)}, 404)
        except RunNotOpen as exc:
            return JSONResponse({"error": str(exc)}, 409)
        if record is None:
            return JSONResponse({"decision_id": decision.decision_id, "outcome": "pending"}, 202)
        code = {"counted": 200, "duplicate": 200, "refused": 403, "ignored": 409}[record.outcome]
        return Response(record.model_dump_json(), code, media_type="application/json")

    async def approve(request: Request) -> Response:
        return await api_decision(request, "approve")

    async def reject(request: Request) -> Response:
        return await api_decision(request, "reject")

    return [
        *(click_route(click) for click in clicks),
        Route("/api/v1/runs/{run_id:path}/approve", approve, methods=["POST"]),
        Route("/api/v1/runs/{run_id:path}/reject", reject, methods=["POST"]),
    ]
