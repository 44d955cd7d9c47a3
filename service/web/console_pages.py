"""What every console page shares: templates with autoescape, hashed assets, strict headers, sessions and forms."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from service.vocabulary.durations import written
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
Endpoint = Callable[[Request], Awaitable[Response]]
SignedIn = Callable[[Request, Session], Awaitable[Response]]
Posted = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


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


def secure(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (directly, or through a proxy that says so)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


class Pages:
    """Renders the console's templates and guards its endpoints: a session for every page, a CSRF token for every
    POST, forms read within their limits."""

    def __init__(self, sessions: Sessions, body_timeout: float = 10.0) -> None:
        self.sessions, self.body_timeout = sessions, body_timeout
        self.assets = _assets()
        self._by_path = {a.path: a for a in self.assets.values()}
        env = Environment(loader=PackageLoader("service.web", "templates"), autoescape=select_autoescape(default=True))
        env.globals["asset"] = lambda name: f"/ui/static/{self.assets[name].path}"
        env.filters["q"] = lambda value: quote(str(value), safe="")  # a run id inside a URL path is one segment
        env.filters["span"] = written
        env.filters["short"] = lambda value, n=300: (str(value)[:n] + "…") if len(str(value)) > n else str(value)
        self._env = env

    def page(self, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(self._env.get_template(template).render(**values), code, headers=HEADERS)

    def refuse(self, code: int, error: str, session: Session | None = None) -> HTMLResponse:
        return self.page("error.html", code, session=session, error=error)

    @staticmethod
    def go(to: str) -> RedirectResponse:
        return RedirectResponse(to, 303, headers=HEADERS)

    def signed_in(self, endpoint: SignedIn) -> Endpoint:
        async def checked(request: Request) -> Response:
            session = self.sessions.read(request)
            if session is None:
                return self.go("/ui/sign-in")
            return await endpoint(request, session)

        return checked

    def posted(self, endpoint: Posted) -> Endpoint:
        """A signed-in POST whose form carries the session's CSRF token; anything else is refused unread."""

        async def checked(request: Request, session: Session) -> Response:
            try:
                fields = await self.form(request)
            except BodyRefused as exc:
                return self.refuse(exc.status, exc.reason, session)
            if not csrf_ok(session, fields.get("csrf")):
                return self.refuse(403, "The form had no valid CSRF token.", session)
            return await endpoint(request, session, fields)

        return self.signed_in(checked)

    async def form(self, request: Request) -> dict[str, str]:
        """A small urlencoded form, read within its limits; a field sent twice keeps its first value."""
        raw = await read_body(request, FORM_LIMIT, self.body_timeout)
        try:
            parsed = parse_qs(raw.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyRefused(400, "not a form") from exc
        return {k: v[0] for k, v in parsed.items()}

    def static_route(self) -> Route:
        async def static(request: Request) -> Response:
            asset = self._by_path.get(request.path_params["name"])
            if asset is None:
                return Response("not found", 404)
            cache = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
            return Response(asset.body, media_type=asset.media_type, headers=cache)

        return Route("/ui/static/{name}", static, methods=["GET"])
