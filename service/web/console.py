"""The operator console under /ui/: sign in with an approver token, the runs, a run's story, approve or reject."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.playbooks.catalog import Catalog
from service.rails.governance import Governance
from service.replay.promotion import promotion
from service.runs.audit import FINAL
from service.runs.listing import RunQuery, parse_since
from service.runs.state import RunState, run_id_problem
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision, Verdict
from service.vocabulary.errors import RunNotOpen, RunUnknown
from service.vocabulary.modes import Mode
from service.web.bodies import BodyRefused
from service.web.console_pages import Pages, secure
from service.web.console_rails import limit_lines
from service.web.run_filters import FILTERS, STATUSES, page_link, run_query
from service.web.run_links import RunLinks
from service.web.sessions import Session

PAGE = 50  # runs a page lists
LATEST = 5  # runs the playbooks page shows under each playbook
SPANS = ("1h", "24h", "7d", "30d")  # the time filter's choices (the API takes any span or ISO time)
PROMOTION_SPANS = ("1d", "7d", "14d", "30d")
SHADOW_RUNS = 500  # the newest shadow runs a promotion report on the console reads


def console_routes(
    runs: TemporalRuns,
    pages: Pages,
    catalog: Catalog | None = None,
    links: RunLinks | None = None,
    rails: Callable[[], dict[str, Governance]] = dict,
) -> list[Route]:
    """The console's run pages; every one but sign-in needs a session, and every POST its CSRF token."""
    sessions, links = pages.sessions, links or RunLinks()

    async def sign_in(request: Request) -> Response:
        if request.method == "GET":
            return pages.page("sign_in.html")
        if not _same_origin(request):  # login CSRF: another site signing your browser in as someone else
            return pages.page("sign_in.html", 403, error="Sign in from this console's own page.")
        try:
            fields = await pages.form(request)
        except BodyRefused as exc:
            return pages.page("sign_in.html", exc.status, error=exc.reason)
        session = sessions.sign_in(fields.get("token", ""))
        if session is None:
            return pages.page("sign_in.html", 401, error="That token is not an approver's or a viewer's token.")
        response = pages.go("/ui/")
        sessions.write(response, session, secure(request))
        return response

    async def sign_out(request: Request, session: Session, fields: dict[str, str]) -> Response:
        response = pages.go("/ui/sign-in")
        sessions.end(response, secure(request))
        return response

    async def run_list(request: Request, session: Session) -> Response:
        params = request.query_params
        try:
            query = run_query(params, PAGE)
        except ValueError as exc:
            return pages.refuse(400, str(exc), session)
        page = await runs.list(query)
        return pages.page(
            "runs.html",
            session=session,
            runs=page.runs,
            given={name: params.get(name, "") for name in FILTERS},
            filtered=query.filtered(),
            statuses=STATUSES,
            spans=SPANS,
            older=page_link("/ui/", params, page.older) if page.older else None,
            newest=page_link("/ui/", params, None) if query.before else None,
        )

    async def waiting(request: Request, session: Session) -> Response:
        """Runs whose gate is open and lists the signed-in approver, oldest first: what is waiting on you."""
        listed = (await runs.list(RunQuery(limit=PAGE * 2, status="awaiting_approval"))).runs
        states = await asyncio.gather(*(runs.state(r.run_id) for r in reversed(listed)))
        mine = [s for s in states if s is not None and _may(s, session)]
        return pages.page("waiting.html", session=session, runs=mine)

    async def playbooks(request: Request, session: Session) -> Response:
        """Each loaded playbook as on-call reads it: its version, its match, its steps, its limits and approvers."""
        books = catalog.playbooks if catalog else []
        latest = await asyncio.gather(*(runs.list(RunQuery(limit=LATEST, playbook=b.name)) for b in books))
        terms = rails()
        outline = [
            (book, catalog.version(book.name) if catalog else None, book.steps(), page.runs, _limits(terms, book.name))
            for book, page in zip(books, latest, strict=True)
        ]
        return pages.page("playbooks.html", session=session, outline=outline, catalog=catalog)

    async def promotion_page(request: Request, session: Session) -> Response:
        """The promotion report of one playbook over its newest shadow runs (docs/trust.md)."""
        name, since = request.path_params["name"], request.query_params.get("since", "14d")
        book = next((b for b in (catalog.playbooks if catalog else []) if b.name == name), None)
        if book is None:
            return pages.refuse(404, "No such playbook is loaded.", session)
        if since not in PROMOTION_SPANS:
            return pages.refuse(400, f"since: one of {', '.join(PROMOTION_SPANS)}", session)
        start = parse_since(since, datetime.now(UTC))
        listed = (await runs.list(RunQuery(limit=SHADOW_RUNS, playbook=name, since=start))).runs
        states = await asyncio.gather(*(runs.state(r.run_id) for r in listed if r.mode == Mode.SHADOW.value))
        terms = rails()
        governance = terms.get(name) or Governance()
        found = await promotion(book, lambda _: governance, [s for s in states if s is not None], start)
        return pages.page(
            "promotion.html", session=session, report=found, since=since, spans=PROMOTION_SPANS, shown=SHADOW_RUNS
        )

    async def run_page(request: Request, session: Session) -> Response:
        run_id = request.path_params["run_id"]
        if problem := run_id_problem(run_id):
            return pages.refuse(400, problem, session)
        state = await runs.state(run_id)
        if state is None:
            return pages.refuse(404, "No such run.", session)
        template = "story.html" if request.query_params.get("part") == "story" else "run.html"
        said = request.query_params.get("decided", "")
        return pages.page(
            template,
            session=session,
            run=state,
            open=_open(state),
            may=_may(state, session),
            said=said,
            workflow_link=links.workflow(state.run_id),
            alert_link=links.alert(state.labels),
        )

    async def decide(request: Request, session: Session, fields: dict[str, str]) -> Response:
        if session.viewer:
            return pages.refuse(403, "A viewer cannot decide; sign in with an approver token.", session)
        run_id, verdict = request.path_params["run_id"], fields.get("verdict")
        if (problem := run_id_problem(run_id)) or verdict not in ("approve", "reject"):
            return pages.refuse(400, problem or "Approve or reject, nothing else.", session)
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
            return pages.refuse(404, "No such run.", session)
        except RunNotOpen as exc:
            return pages.refuse(409, str(exc), session)
        said = "pending" if record is None else f"{record.outcome}: {record.reason}".rstrip(": ")
        return pages.go(f"/ui/runs/{quote(run_id, safe='')}?decided={quote(said)}")

    return [
        Route("/ui/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/ui/sign-out", pages.posted(sign_out), methods=["POST"]),
        Route("/ui/", pages.signed_in(run_list), methods=["GET"]),
        Route("/ui/waiting", pages.signed_in(waiting), methods=["GET"]),
        Route("/ui/playbooks", pages.signed_in(playbooks), methods=["GET"]),
        Route("/ui/playbooks/{name}/promotion", pages.signed_in(promotion_page), methods=["GET"]),
        pages.static_route(),
        Route("/ui/runs/{run_id:path}/decide", pages.posted(decide), methods=["POST"]),
        Route("/ui/runs/{run_id:path}", pages.signed_in(run_page), methods=["GET"]),
    ]


def _limits(terms: dict[str, Governance], name: str) -> list[str]:
    return limit_lines(terms[name]) if name in terms else []


def _same_origin(request: Request) -> bool:
    """A form posted from another site carries its Origin; a browser posting from this console names this host, as
    the request reached us or as a proxy says it was asked (a client that sends no Origin is no browser on another
    site's page)."""
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
    return origin is None or urlsplit(origin).netloc in hosts


def _open(state: RunState) -> bool:
    return state.status not in FINAL


def _may(state: RunState, session: Session) -> bool:
    """Whether the signed-in person may decide this run's open gate (the gate itself checks again)."""
    gate = state.gate
    if gate is None or gate.status != "open" or session.viewer:
        return False
    return session.identity in gate.request.approvers
