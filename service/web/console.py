"""The operator console under /ui/: sign in with an approver token, the runs, a run's story, approve or reject."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from service.runs.audit import FINAL
from service.runs.state import RunState, run_id_problem
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision, Verdict
from service.vocabulary.errors import RunNotOpen, RunUnknown
from service.web.bodies import BodyRefused, read_body
from service.web.sessions import Session, Sessions, csrf_ok

FORM_LIMIT = 8 * 1024
# No inline script or style anywhere: what a label smuggles into a page cannot run, and nothing frames the console.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Page = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Asset:
    """A static file served under its content hash, so a browser may keep it for ever."""

    name: str
    body: bytes
    media_type: str

    @property
    def path(self) -> str:
        stem, _, ext = self.name.rpartition(".")
        return f"{stem}.{hashlib.sha256(self.body).hexdigest()[:12]}.{ext}"


def _assets() -> dict[str, Asset]:
    folder = files("service.web").joinpath("static")
    kinds = {"css": "text/css", "js": "text/javascript"}
    found = [Asset(f.name, f.read_bytes(), kinds[f.name.rpartition(".")[2]]) for f in folder.iterdir() if f.is_file()]
    return {a.name: a for a in found}


def _environment(assets: dict[str, Asset]) -> Environment:
    env = Environment(loader=PackageLoader("service.web", "templates"), autoescape=select_autoescape(default=True))
    env.globals["asset"] = lambda name: f"/ui/static/{assets[name].path}"
    env.filters["q"] = lambda value: quote(str(value), safe="")  # a run id inside a URL path is one segment
    env.filters["short"] = lambda value, n=300: (str(value)[:n] + "…") if len(str(value)) > n else str(value)
    return env


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def console_routes(runs: TemporalRuns, sessions: Sessions, body_timeout: float = 10.0) -> list[Route]:
    """The console's pages; every one but sign-in needs a session, and every POST its CSRF token."""
    assets = _assets()
    by_path = {a.path: a for a in assets.values()}
    env = _environment(assets)

    def page(template: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(**values)
        return HTMLResponse(html, code, headers=HEADERS)

    def signed_in(endpoint: Callable[[Request, Session], Awaitable[Response]]) -> Page:
        async def checked(request: Request) -> Response:
            session = sessions.read(request)
            if session is None:
                return RedirectResponse("/ui/sign-in", 303, headers=HEADERS)
            return await endpoint(request, session)

        return checked

    async def form(request: Request) -> dict[str, str]:
        """A small urlencoded form, read within its limits; a field sent twice keeps its first value."""
        raw = await read_body(request, FORM_LIMIT, body_timeout)
        try:
            parsed = parse_qs(raw.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyRefused(400, "not a form") from exc
        return {k: v[0] for k, v in parsed.items()}

    async def sign_in(request: Request) -> Response:
        if request.method == "GET":
            return page("sign_in.html")
        try:
            fields = await form(request)
        except BodyRefused as exc:
            return page("sign_in.html", exc.status, error=exc.reason)
        session = sessions.sign_in(fields.get("token", ""))
        if session is None:
            return page("sign_in.html", 401, error="That token is not an approver's token.")
        response = RedirectResponse("/ui/", 303, headers=HEADERS)
        sessions.write(response, session, _secure(request))
        return response

    async def sign_out(request: Request, session: Session) -> Response:
        try:
            fields = await form(request)
        except BodyRefused as exc:
            return page("error.html", exc.status, session=session, error=exc.reason)
        if not csrf_ok(session, fields.get("csrf")):
            return page("error.html", 403, session=session, error="The form had no valid CSRF token.")
        response = RedirectResponse("/ui/sign-in", 303, headers=HEADERS)
        sessions.end(response, _secure(request))
        return response

    async def run_list(request: Request, session: Session) -> Response:
        playbook = request.query_params.get("playbook") or None
        status = request.query_params.get("status") or None
        listed = await runs.list(limit=100, playbook=playbook)
        shown = [r for r in listed if status is None or r.status == status]
        return page("runs.html", session=session, runs=shown, playbook=playbook or "", status=status or "")

    async def run_page(request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        if problem := run_id_problem(run_id):
            return page("error.html", 400, session=session, error=problem)
        state = await runs.state(run_id)
        if state is None:
            return page("error.html", 404, session=session, error="No such run.")
        template = "story.html" if request.query_params.get("part") == "story" else "run.html"
        decided = request.query_params.get("decided", "")
        return page(template, session=session, run=state, open=_open(state), may=_may(state, session), said=decided)

    async def decide(request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        try:
            fields = await form(request)
        except BodyRefused as exc:
            return page("error.html", exc.status, session=session, error=exc.reason)
        if not csrf_ok(session, fields.get("csrf")):
            return page("error.html", 403, session=session, error="The form had no valid CSRF token.")
        verdict = fields.get("verdict")
        if (problem := run_id_problem(run_id)) or verdict not in ("approve", "reject"):
            return page("error.html", 400, session=session, error=problem or "Approve or reject, nothing else.")
        chosen: Verdict = "approve" if verdict == "approve" else "reject"
        decision = Decision(
            verdict=chosen,
            user=session.identity,
            source="console",
            comment=fields.get("comment", "")[:1000],
            decision_id=f"console:{uuid.uuid4()}",
        )
        try:
            await runs.decide(run_id, decision)
            record = await runs.decision(run_id, decision.decision_id)
        except RunUnknown:
            return page("error.html", 404, session=session, error="No such run.")
        except RunNotOpen as exc:
            return page("error.html", 409, session=session, error=str(exc))
        said = "pending" if record is None else f"{record.outcome}: {record.reason}".rstrip(": ")
        return RedirectResponse(f"/ui/runs/{quote(run_id, safe='')}?decided={quote(said)}", 303, headers=HEADERS)

    async def static(request: Request) -> Response:
        asset = by_path.get(request.path_params["name"])
        if asset is None:
            return Response("not found", 404)
        cache = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
        return Response(asset.body, media_type=asset.media_type, headers=cache)

    return [
        Route("/ui/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/ui/sign-out", signed_in(sign_out), methods=["POST"]),
        Route("/ui/", signed_in(run_list), methods=["GET"]),
        Route("/ui/static/{name}", static, methods=["GET"]),
        Route("/ui/runs/{run_id:path}/decide", signed_in(decide), methods=["POST"]),
        Route("/ui/runs/{run_id:path}", signed_in(run_page), methods=["GET"]),
    ]


def _open(state: RunState) -> bool:
    return state.status not in FINAL


def _may(state: RunState, session: Session) -> bool:
    """Whether the signed-in person may decide this run's open gate (the gate itself checks again)."""
    gate = state.gate
    return gate is not None and gate.status == "open" and session.identity in gate.request.approvers
