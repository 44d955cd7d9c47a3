"""Starlette app: the Alertmanager webhook, health, metrics and the run API; no remediation work here."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.adapters.temporal import TemporalRuns
from service.alerts import Alert, WebhookMessage, run_id
from service.bodies import BodyRefused, read_body
from service.credentials import ApproverTokens, WebAuth
from service.decisions import decision_routes
from service.errors import IntakeIncomplete, RemediateError, TemporalUnavailable
from service.playbook import Playbook
from service.policy import Mode, effective_mode
from service.redact import redact
from service.runs import Durability, RunInput

log = logging.getLogger("remediate.web")
Ping = Callable[[], Awaitable[None]]


class SeenRuns:
    """A bounded, short memory of run ids known to exist, so re-deliveries skip the Temporal round trip.

    Entries expire after `ttl` seconds: a run that failed meanwhile may then be started again by a later
    delivery (Temporal's id policy and the workflow's attempt limit decide).
    """

    def __init__(self, size: int, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl, self._clock = size, ttl, clock
        self._ids = OrderedDict[str, float]()

    def __contains__(self, key: str) -> bool:
        expires = self._ids.get(key)
        if expires is None:
            return False
        if expires < self._clock():
            del self._ids[key]
            return False
        return True

    def add(self, key: str) -> None:
        if self._size <= 0 or self._ttl <= 0:
            return
        self._ids[key] = self._clock() + self._ttl
        self._ids.move_to_end(key)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


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
        self.latency = Histogram(
            "remediate_webhook_seconds",
            "Webhook handling time",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )


class Receiver:
    """Turns one webhook message into run starts and `resolved` signals."""

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        runs: TemporalRuns,
        ceiling: Mode,
        seen: SeenRuns,
        approvers: Callable[[list[str]], list[str]] = list,
        channel: str | None = None,
        durability: Durability | None = None,
        concurrency: int = 32,
        answer_within: float = 8.0,
    ) -> None:
        self.playbooks, self.runs, self.ceiling, self.seen = list(playbooks), runs, ceiling, seen
        self.approvers, self.channel = approvers, channel
        self.durability = durability or Durability()
        # Alertmanager gives a webhook at least 10 s (notify.MinTimeout) before it retries the whole message.
        self.concurrency, self.answer_within = concurrency, answer_within

    async def _start(self, playbook: Playbook, alert: Alert) -> str:
        key = run_id(playbook.name, alert)
        if key in self.seen:
            return "duplicates"
        run = RunInput(
            run_id=key,
            playbook=playbook,
            alert=alert,
            mode=effective_mode(self.ceiling, playbook.mode),
            approvers=self.approvers(playbook.approvers),
            approval_channel=playbook.approval_channel or self.channel,
            durability=self.durability,
        )
        started = await self.runs.start(run)
        self.seen.add(key)
        return "started" if started else "duplicates"

    async def _resolve(self, playbook: Playbook, alert: Alert) -> str:
        await self.runs.resolve(run_id(playbook.name, alert))
        return "resolved"

    async def receive(self, message: WebhookMessage) -> dict[str, int]:
        """Start or resolve every matching run, a bounded number at a time, within `answer_within` seconds.

        Runs started stay started; if time runs out, IntakeIncomplete (503) makes Alertmanager send the message
        again, and the second delivery adds only duplicates and the rest.
        """
        counts = {"started": 0, "duplicates": 0, "resolved": 0, "unmatched": 0}
        jobs: list[Callable[[], Awaitable[str]]] = []
        for alert in message.alerts:
            before = len(jobs)
            for playbook in self.playbooks:
                if playbook.match.matches(alert):
                    jobs.append(partial(self._start, playbook, alert))
                elif (
                    alert.status == "resolved"
                    and playbook.match.status == "firing"
                    and playbook.match.matches_labels(alert)
                ):
                    jobs.append(partial(self._resolve, playbook, alert))
            if len(jobs) == before:
                counts["unmatched"] += 1
        # A resend that also runs out of time then covers other alerts first, so every resend makes progress.
        secrets.SystemRandom().shuffle(jobs)
        loop = asyncio.get_running_loop()
        deadline, pending = loop.time() + self.answer_within, iter(jobs)

        async def lane() -> None:
            for job in pending:
                if loop.time() > deadline:
                    return
                counts[await job()] += 1

        await asyncio.gather(*(lane() for _ in range(min(self.concurrency, len(jobs)))))
        done = sum(counts[k] for k in ("started", "duplicates", "resolved"))
        if done < len(jobs):
            raise IntakeIncomplete(
                f"{len(jobs) - done} of {len(jobs)} run(s) not started within {self.answer_within:.0f}s; retry", counts
            )
        return counts


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
) -> list[Route]:
    """Liveness, readiness (Temporal, this process's worker, every connection) and metrics.

    Readiness details (connection names, error text) go only to an authenticated caller; probes get 200 or 503.
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
                checks[name] = redact(f"failed: {exc}")

        await asyncio.gather(*(check(name, ping) for name, ping in pings.items()))
        ready = all(v == "ok" for v in checks.values())
        shown = {"ready": ready, "checks": checks} if authenticated(request.headers.get("authorization")) else {}
        return JSONResponse({"ready": ready, **shown}, 200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


def create_app(
    receiver: Receiver,
    auth: WebAuth,
    *,
    max_body_bytes: int = 1_048_576,
    body_timeout: float = 10.0,
    pings: dict[str, Ping] | None = None,
    metrics: Metrics | None = None,
    slack_signing_secret: str | None = None,
    worker_problem: Callable[[], str | None] | None = None,
    approvers: ApproverTokens | None = None,
) -> Starlette:
    """Compose the web app from its parts; nothing global, nothing at import time."""
    metrics = metrics or Metrics()
    pings = pings or {}
    approvers = approvers or ApproverTokens()

    def reader(header: str | None) -> bool:
        # The run API and readiness details: Alertmanager's credential or any approver's token.
        return (auth.enabled and auth.allows(header)) or approvers.identity(header) is not None

    async def alertmanager(request: Request) -> Response:
        with metrics.latency.time():
            response = await _alertmanager(request)
        metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _alertmanager(request: Request) -> Response:
        if not auth.allows(request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await read_body(request, max_body_bytes, body_timeout)
        except BodyRefused as exc:
            return JSONResponse({"error": exc.reason}, exc.status)
        try:
            message = WebhookMessage.model_validate_json(body)
        except ValidationError as exc:
            return JSONResponse({"error": _reason(exc)}, 400)
        try:
            counts = await receiver.receive(message)
        except IntakeIncomplete as exc:
            log.warning("answering 503 so Alertmanager sends the rest again: %s", exc)
            return JSONResponse({"error": str(exc), **exc.counts}, 503, headers={"Retry-After": "5"})
        except TemporalUnavailable as exc:
            log.warning("answering 503 so Alertmanager retries: %s", exc)
            return JSONResponse({"error": "Temporal is unavailable; retry later"}, 503, headers={"Retry-After": "5"})
        for outcome, n in counts.items():
            metrics.alerts.labels(outcome).inc(n)
        return JSONResponse(counts)

    async def runs_list(request: Request) -> Response:
        if not auth.allows(request.headers.get("authorization")) and not reader(request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized"}, 401)
        raw = request.query_params.get("limit", "50")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= 1000):
            return JSONResponse({"error": "limit must be a whole number from 1 to 1000"}, 400)
        limit = int(raw)
        try:
            runs = await receiver.runs.list(limit)
        except TemporalUnavailable as exc:
            return JSONResponse({"error": str(exc)}, 503)
        return JSONResponse(
            [
                {
                    **r.__dict__,
                    "started": r.started.isoformat() if r.started else None,
                    "closed": r.closed.isoformat() if r.closed else None,
                }
                for r in runs
            ]
        )

    async def run_show(request: Request) -> Response:
        if not auth.allows(request.headers.get("authorization")) and not reader(request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized"}, 401)
        try:
            state = await receiver.runs.state(request.path_params["run_id"])
        except TemporalUnavailable as exc:
            return JSONResponse({"error": str(exc)}, 503)
        if state is None:
            return JSONResponse({"error": "no such run"}, 404)
        return Response(state.model_dump_json(), media_type="application/json")

    return Starlette(
        routes=[
            Route("/alertmanager", alertmanager, methods=["POST"]),
            *health_routes(pings, metrics.registry, worker_problem, reader),
            Route("/api/v1/runs", runs_list, methods=["GET"]),
            *decision_routes(receiver.runs, auth, approvers, slack_signing_secret, body_timeout),
            Route("/api/v1/runs/{run_id:path}", run_show, methods=["GET"]),
        ]
    )
