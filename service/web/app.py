"""Starlette app: the Alertmanager webhook, health, metrics and the run API; no remediation work here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.alerts.webhook import WebhookMessage
from service.notify.base import ClickRoute
from service.runs.intake import Receiver, SeenRuns
from service.runs.state import run_id_problem
from service.temporal.client import TemporalRuns
from service.vocabulary.errors import AuditUnavailable, RemediateError, TemporalUnavailable
from service.vocabulary.redact import redact
from service.web.bodies import BodyRefused, read_body
from service.web.catalog_routes import catalog_routes
from service.web.console import console_routes
from service.web.console_pages import Pages
from service.web.console_rails import Rails, rail_console_routes
from service.web.credentials import ApproverTokens, WebAuth
from service.web.decisions import decision_routes
from service.web.guards import guarded
from service.web.rail_routes import rail_routes
from service.web.run_filters import page_link, run_query
from service.web.run_links import RunLinks
from service.web.run_metrics import RunMetrics, StuckRuns
from service.web.sessions import Sessions

__all__ = ["Metrics", "Receiver", "SeenRuns", "create_app", "health_routes"]

log = logging.getLogger("remediate.web")
Ping = Callable[[], Awaitable[None]]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.alerts = Counter(
            "remediate_webhook_alerts", "Alerts received by outcome", ["outcome"], registry=self.registry
        )
        self.requests = Counter(
            "remediate_webhook_requests", "Webhook requests by HTTP status", ["code"], registry=self.registry
        )
        self.delivered = Counter(
            "remediate_delivered_runs",
            "What delivery workflows did with the runs they carried (started, duplicates, resolved, not_open)",
            ["outcome"],
            registry=self.registry,
        )
        self.run = RunMetrics(self.registry)
        self.stuck = StuckRuns(self.registry)
        self.audit_records = Counter(
            "remediate_audit_records",
            "Records appended to the audit store (a repeated snapshot adds none)",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "remediate_audit_failures",
            "Audit writes the store did not take (a store that is down is retried; a record it refuses is not)",
            registry=self.registry,
        )
        self.latency = Histogram(
            "remediate_webhook_seconds",
            "Webhook handling time",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "not an Alertmanager v4 webhook message: " + "; ".join(parts)


def health_routes(
    pings: dict[str, Ping],
    registry: CollectorRegistry,
    worker_problem: Callable[[], str | None] | None = None,
    authenticated: Callable[[str | None], bool] = lambda _: True,
    advice: Callable[[], str | None] = lambda: None,
) -> list[Route]:
    """Liveness, readiness (Temporal, this process's worker, every connection) and metrics.

    Readiness details (connection names, error text) go only to an authenticated caller; probes get 200 or 503.
    `advice` (stuck runs) is shown beside the checks but never fails readiness: taking a replica out of rotation
    would stop the webhook, and so lose alerts, because of runs it cannot help.
    """

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        if worker_problem is not None:
            checks["worker"] = worker_problem() or "ok"

        async def check(name: str, ping: Ping) -> None:
            try:
                await asyncio.wait_for(ping(), timeout=5)
                checks[name] = "ok"
            except (RemediateError, OSError, TimeoutError) as exc:
                checks[name] = redact(f"failed: {str(exc) or type(exc).__name__}")

        await asyncio.gather(*(check(name, ping) for name, ping in pings.items()))
        ready = all(v == "ok" for v in checks.values())
        notes = {"runs": advice() or "ok"}
        shown = (
            {"ready": ready, "checks": checks, "advice": notes}
            if authenticated(request.headers.get("authorization"))
            else {}
        )
        return JSONResponse({"ready": ready, **shown}, 200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


def unavailable(request: Request, exc: Exception) -> Response:
    """The one place Temporal or audit-store trouble becomes a 503: Alertmanager retries only 5xx, and sends the
    message again; a reader tries again later."""
    log.warning("%s %s: answering 503 so the caller retries: %s", request.method, request.url.path, exc)
    return JSONResponse({"error": redact(str(exc))}, 503, headers={"Retry-After": "5"})


def create_app(
    receiver: Receiver,
    auth: WebAuth,
    runs: TemporalRuns,
    *,
    max_body_bytes: int = 1_048_576,
    body_timeout: float = 10.0,
    pings: dict[str, Ping] | None = None,
    metrics: Metrics | None = None,
    clicks: Sequence[ClickRoute] = (),
    worker_problem: Callable[[], str | None] | None = None,
    approvers: ApproverTokens | None = None,
    viewers: ApproverTokens | None = None,
    governor: Rails | None = None,
    links: RunLinks | None = None,
) -> Starlette:
    """Compose the web app from its parts; nothing global, nothing at import time."""
    metrics = metrics or Metrics()
    pings = pings or {}
    approvers = approvers or ApproverTokens()
    pages = Pages(Sessions(approvers, viewers), body_timeout)

    def reader(header: str | None) -> bool:
        # Readiness details: Alertmanager's credential (when one is set) or any approver's token.
        return (auth.enabled and auth.allows(header)) or approvers.identity(header) is not None

    def operator(header: str | None) -> bool:
        # Playbooks: an approver, or anyone where the service runs open (loopback without a credential).
        return not auth.enabled or approvers.identity(header) is not None

    def run_reader(header: str | None) -> bool:
        # The run API: as the webhook (open on loopback when no credential is set), or any approver's token.
        return auth.allows(header) or reader(header)

    async def alertmanager(request: Request) -> Response:
        with metrics.latency.time():
            try:
                response = await _alertmanager(request)
            except TemporalUnavailable:
                metrics.requests.labels("503").inc()
                raise  # answered by `unavailable`
        metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _alertmanager(request: Request) -> Response:
        try:
            body = await read_body(request, max_body_bytes, body_timeout)
        except BodyRefused as exc:
            return JSONResponse({"error": exc.reason}, exc.status)
        try:
            message = WebhookMessage.model_validate_json(body)
        except ValidationError as exc:
            return JSONResponse({"error": _reason(exc)}, 400)
        counts = await receiver.receive(message)
        for outcome, n in counts.items():
            metrics.alerts.labels(outcome).inc(n)
        return JSONResponse(counts)

    async def runs_list(request: Request) -> Response:
        raw = request.query_params.get("limit", "50")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= 1000):
            return JSONResponse({"error": "limit must be a whole number from 1 to 1000"}, 400)
        try:
            query = run_query(request.query_params, int(raw))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        page = await runs.list(query)
        # The body stays a list; the next older page is a Link header, as GitHub's API pages.
        headers = {"Link": f'<{page_link("/api/v1/runs", request.query_params, page.older)}>; rel="next"'}
        return JSONResponse(
            [
                {
                    **r.__dict__,
                    "started": r.started.isoformat() if r.started else None,
                    "closed": r.closed.isoformat() if r.closed else None,
                }
                for r in page.runs
            ],
            headers=headers if page.older else None,
        )

    async def run_show(request: Request) -> Response:
        problem = run_id_problem(request.path_params["run_id"])
        if problem:
            return JSONResponse({"error": problem}, 400)
        state = await runs.state(request.path_params["run_id"])
        if state is None:
            return JSONResponse({"error": "no such run"}, 404)
        return Response(state.model_dump_json(), media_type="application/json")

    return Starlette(
        routes=[
            Route("/alertmanager", guarded(alertmanager, auth.allows, "Bearer"), methods=["POST"]),
            *health_routes(pings, metrics.registry, worker_problem, reader, metrics.stuck.advice),
            Route("/api/v1/runs", guarded(runs_list, run_reader), methods=["GET"]),
            *decision_routes(runs, auth, approvers, clicks, body_timeout),
            Route("/api/v1/runs/{run_id:path}", guarded(run_show, run_reader), methods=["GET"]),
            *(
                rail_routes(governor, auth, approvers, run_reader, body_timeout, receiver.playbook_names)
                if governor
                else []
            ),
            *catalog_routes(receiver.catalog, operator, auth.allows),
            *console_routes(runs, pages, receiver.catalog, links, receiver.rails),
            *(rail_console_routes(governor, pages, receiver.rails) if governor else []),
        ],
        exception_handlers={TemporalUnavailable: unavailable, AuditUnavailable: unavailable},
    )
