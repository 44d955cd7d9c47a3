"""Explicit composition: adapters, registry, receiver, web app and worker from Settings."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from temporalio.client import Client

from service.app.error_reporting import ReportingInterceptor
from service.app.lifecycle import QuietServer, WorkerHealth, run_worker
from service.app.watchers import watch_approvals, watch_kill_switch, watch_lines, watch_stuck
from service.app.worker import Workers, create_worker
from service.config import ConfigFile, PostgresConnection, Settings
from service.durable.activities import PausePoints, StepActivities
from service.durable.audit_activities import AuditActivities
from service.durable.delivery_activities import DeliveryActivities
from service.durable.policy_activities import PolicyActivities, PolicyMetrics
from service.notify.notifiers import AllNotifiers
from service.notify.slack import SlackNotifier
from service.notify.webhook import WebhookNotifier
from service.playbooks.catalog import Catalog
from service.playbooks.playbook import Playbook, PlaybookVersion, load_playbooks, load_versioned
from service.rails.governance import Governance, governor_id
from service.runs.audit import AuditStore, Scrubber
from service.runs.delivery import DeliveryCounts
from service.runs.registry import Registry
from service.runs.state import Durability
from service.stores.setup import scrubber
from service.targets.alertmanager import AlertmanagerAdapter
from service.targets.base import Adapter, ConnectionAdapter
from service.targets.http import HttpAdapter
from service.targets.kubernetes.adapter import KubernetesAdapter
from service.targets.postgres.adapter import PostgresAdapter
from service.targets.prometheus import PrometheusAdapter
from service.targets.redis import RedisAdapter
from service.targets.temporal.adapter import TemporalTargetAdapter
from service.temporal.client import TemporalRuns, connect, connect_eager
from service.temporal.governor.client import GovernorClient
from service.temporal.run_records import AuditedRuns
from service.vocabulary.approvals import NoNotifier
from service.vocabulary.errors import ConfigError
from service.vocabulary.outcomes import Notifying
from service.web.app import Metrics, Receiver, SeenRuns, create_app, health_routes
from service.web.credentials import ApproverTokens, WebAuth, is_loopback
from service.web.run_metrics import ApprovalGauges, worker_up

log = logging.getLogger("remediate")


# Every target system, once: a new system is its step models, its adapter, and one line here.
ADAPTERS: tuple[type[ConnectionAdapter[Any, Any]], ...] = (
    PostgresAdapter,
    HttpAdapter,
    PrometheusAdapter,
    KubernetesAdapter,
    TemporalTargetAdapter,
    RedisAdapter,
    AlertmanagerAdapter,
)
A = TypeVar("A", bound=Adapter)


class Adapters:
    """Every adapter instance, built once from the connections in the config file, and closed once."""

    def __init__(self, adapters: Sequence[Adapter], config: ConfigFile) -> None:
        self.all = list(adapters)
        by_type = {a.connection_type: a for a in self.all}
        self.types = {conn.type for conn in config.connections.values()}
        self.pings: dict[str, Callable[[], Awaitable[None]]] = {
            f"connection:{name}": partial(by_type[conn.type].ping, name) for name, conn in config.connections.items()
        }

    @classmethod
    def build(cls, config: ConfigFile) -> Adapters:
        return cls(
            [
                adapter({n: c for n, c in config.connections.items() if c.type == adapter.connection_type})
                for adapter in ADAPTERS
            ],
            config,
        )

    def has(self, connection_type: str) -> bool:
        """Whether any connection of this type is configured."""
        return connection_type in self.types

    def get(self, kind: type[A]) -> A:
        return next(a for a in self.all if isinstance(a, kind))

    def registry(self) -> Registry:
        return Registry([a.actions() for a in self.all])

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self.all))


def load_all(settings: Settings, playbooks_dir: Path | None = None) -> tuple[ConfigFile, list[Playbook]]:
    """Config and playbooks, validated together: an unknown connection stops start-up."""
    config = settings.connections()
    playbooks = load_playbooks([playbooks_dir] if playbooks_dir else settings.playbook_dirs(), config.kinds())
    return config, playbooks


def load_catalog(settings: Settings, config: ConfigFile) -> Catalog:
    """The playbooks with their versions, and how to load them again (SIGHUP, POST /api/v1/playbooks/reload)."""
    kinds = config.kinds()

    def load() -> list[tuple[Playbook, PlaybookVersion]]:
        return load_versioned(settings.playbook_dirs(), kinds)

    return Catalog(load(), load)


def reload_on_sighup(catalog: Catalog) -> None:
    """SIGHUP reloads the playbooks, as a daemon's configuration is; a set with a problem is refused, logged."""
    if threading.current_thread() is not threading.main_thread():
        return

    def reload() -> None:
        problems = catalog.reload()
        if problems:
            log.error("SIGHUP: playbook reload refused, the %d loaded stay: %s", len(catalog.playbooks), problems)
            return
        shown = ", ".join(f"{v.name}@{v.sha256[:12]}" for v in catalog.versions.values())
        log.info("SIGHUP: reloaded %d playbook(s): %s", len(catalog.playbooks), shown)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def durability(settings: Settings, config: ConfigFile) -> Durability:
    """What every run started here carries about retries: which connections keep a ledger, the timeouts."""
    return Durability(
        ledgers=sorted(n for n, c in config.connections.items() if isinstance(c, PostgresConnection) and c.ledger),
        heartbeat_timeout=settings.heartbeat_timeout,
        max_attempts=settings.max_attempts_per_occurrence,
        attempt_backoff=settings.attempt_backoff,
        audit=settings.database_url is not None,
        notify=settings.slack_bot_token is not None or settings.notify_webhook_url is not None,
    )


def governance(settings: Settings, config: ConfigFile) -> Callable[[Playbook], Governance]:
    """What every run of a playbook carries about the rails: its limits over the service defaults."""
    alertmanager = config.alertmanager(settings.alertmanager)
    governor = governor_id(settings.task_queue)

    def of(playbook: Playbook) -> Governance:
        own = playbook.limits
        return Governance(
            governor=governor,
            limits=own.over(config.limits),
            cooldown_key=own.cooldown_key,
            max_writes_per_hour=settings.max_writes_per_hour,
            alertmanager=alertmanager,
            effective_within=own.effective_within or timedelta(seconds=settings.effective_within),
            silence=playbook.silence and alertmanager is not None,
        )

    return of


def web_auth(settings: Settings) -> WebAuth:
    """The webhook's credential; refuses an open one except on loopback or when explicitly allowed."""
    auth = WebAuth(
        token=settings.webhook_token.get_secret_value() if settings.webhook_token else None,
        username=settings.webhook_username,
        password=settings.webhook_password.get_secret_value() if settings.webhook_password else None,
    )
    host, _ = settings.listen_host_port
    if not auth.enabled and not is_loopback(host):
        if not settings.allow_unauthenticated:
            raise ConfigError(
                f"refusing to serve an open webhook and run API on {settings.listen}: set REMEDIATE_WEBHOOK_TOKEN "
                "(or basic credentials), listen on loopback, or set REMEDIATE_ALLOW_UNAUTHENTICATED=true"
            )
        log.warning("REMEDIATE_ALLOW_UNAUTHENTICATED: the webhook and run API on %s accept anyone", settings.listen)
    return auth


def build_app(
    settings: Settings,
    playbooks: list[Playbook] | Catalog,
    client: Client,
    adapters: Adapters,
    worker_problem: Callable[[], str | None] | None = None,
    metrics: Metrics | None = None,
    audit: AuditStore | None = None,
) -> Starlette:
    """The web side. Its readiness is Temporal's, plus this process's worker and its connections when it runs one:
    a web-only replica never talks to the targets."""
    runs = TemporalRuns(client, settings.task_queue)
    auth = web_auth(settings)
    if not auth.enabled:
        log.warning("no REMEDIATE_WEBHOOK_TOKEN or basic credentials: the webhook accepts anyone on loopback")
    config = settings.connections()
    receiver = Receiver(
        playbooks,
        runs,
        settings.mode,
        SeenRuns(settings.dedupe_cache_size, settings.dedupe_ttl),
        approvers=config.resolve_approvers,
        channel=settings.slack_channel,
        durability=durability(settings, config),
        governance=governance(settings, config),
        window=settings.dedupe_ttl,
    )
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    return create_app(
        receiver,
        auth,
        AuditedRuns(client, settings.task_queue, audit) if audit is not None else runs,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        pings={"temporal": runs.ping, **(adapters.pings if worker_problem is not None else {})},
        slack_signing_secret=secret,
        worker_problem=worker_problem,
        approvers=ApproverTokens(config.approver_identities()),
        metrics=metrics,
        governor=GovernorClient(client, settings.task_queue),
    )


def build_health_app(
    settings: Settings, adapters: Adapters, worker_problem: Callable[[], str | None], metrics: Metrics
) -> Starlette:
    """A worker-only process answers probes too: liveness, readiness of its worker and connections, metrics."""
    auth = web_auth(settings)
    tokens = ApproverTokens(settings.connections().approver_identities())

    def authenticated(header: str | None) -> bool:
        return (auth.enabled and auth.allows(header)) or tokens.identity(header) is not None

    return Starlette(
        routes=health_routes(
            dict(adapters.pings), metrics.registry, worker_problem, authenticated, metrics.stuck.advice
        )
    )


def notifier(settings: Settings) -> Notifying:
    """Where approval requests, announcements and run outcomes are shown: Slack when a bot token is set, a generic
    webhook when its URL is set, both, or nowhere (then the API and the CLI decide)."""
    found: list[Notifying] = []
    if settings.slack_bot_token is not None:
        token = settings.slack_bot_token.get_secret_value()
        found.append(SlackNotifier(token, settings.slack_channel, settings.slack_api_url))
    if settings.notify_webhook_url is not None:
        found.append(WebhookNotifier(settings.notify_webhook_url.get_secret_value()))
    if not found:
        return NoNotifier()
    return found[0] if len(found) == 1 else AllNotifiers(found)


def worker_factory(
    settings: Settings,
    adapters: Adapters,
    notifier: Notifying,
    metrics: PolicyMetrics,
    web_metrics: Metrics,
    audit: AuditStore | None = None,
    secrets: Scrubber | None = None,
) -> Callable[[Client], Workers]:
    pauses = PausePoints(settings.pause_at)
    reporting = [ReportingInterceptor()] if settings.sentry_dsn else []
    recorders = AuditActivities(
        audit,
        secrets or scrubber(settings, settings.connections()),
        web_metrics.audit_records.inc,
        web_metrics.run.ended,
        web_metrics.audit_failures.inc,
    ).all()
    alerts = adapters.get(AlertmanagerAdapter) if adapters.has(AlertmanagerAdapter.connection_type) else None

    def build(client: Client) -> Workers:
        runs = TemporalRuns(client, settings.task_queue)
        governor = GovernorClient(client, settings.task_queue)
        rails = PolicyActivities(governor, alerts, notifier, metrics)
        activities = StepActivities(
            adapters.registry(),
            notifier,
            attempts=runs,
            pauses=pauses,
            observe=web_metrics.run.step,
            admit=rails.switch.admitted,
        )
        deliveries = DeliveryActivities(runs, settings.intake_concurrency, partial(delivered, web_metrics))
        return create_worker(
            client,
            settings.task_queue,
            activities,
            rails=[*rails.all(), *deliveries.all(), *recorders],
            governor_activities=[rails.announce],
            graceful_shutdown=timedelta(seconds=settings.shutdown_grace),
            interceptors=reporting,
            cached_runs=settings.worker_cached_runs,
            concurrent_tasks=settings.worker_concurrent_tasks,
            after=governor.settle,
        )

    return build


def delivered(metrics: Metrics, counts: DeliveryCounts) -> None:
    for outcome, n in counts.model_dump().items():
        metrics.delivered.labels(outcome).inc(n)


async def serve(
    settings: Settings,
    playbooks: list[Playbook] | Catalog,
    adapters: Adapters,
    *,
    client: Client | None = None,
    web: bool = True,
    worker: bool = True,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    audit: AuditStore | None = None,
    secrets: Scrubber | None = None,
) -> None:
    """Run the web server and/or the worker until `stop` is set (then drain) or the task is cancelled."""
    stop = stop or asyncio.Event()
    address, namespace = settings.temporal_address, settings.temporal_namespace
    tasks: list[asyncio.Task[None]] = []
    shown = notifier(settings)
    health = WorkerHealth() if worker else None
    metrics = Metrics()
    rails = PolicyMetrics(metrics.registry)
    if worker and health is not None:
        tasks.append(
            asyncio.create_task(
                run_worker(
                    client,
                    lambda: connect_eager(address, namespace),
                    worker_factory(settings, adapters, shown, rails, metrics, audit, secrets),
                    address,
                    stop,
                    health,
                )
            )
        )
    problem = health.problem if health is not None else None
    client = client or await connect(address, namespace)
    if web:
        if isinstance(playbooks, Catalog):
            reload_on_sighup(playbooks)
        app = build_app(settings, playbooks, client, adapters, problem, metrics, audit)
    else:
        assert problem is not None  # noqa: S101 - serve runs the web side, the worker, or both
        app = build_health_app(settings, adapters, problem, metrics)
    governor = GovernorClient(client, settings.task_queue)
    tasks.append(asyncio.create_task(watch_kill_switch(governor, rails, stop)))
    tasks.append(asyncio.create_task(watch_lines(governor, rails, stop)))
    tasks.append(asyncio.create_task(watch_stuck(TemporalRuns(client, settings.task_queue), metrics.stuck, stop)))
    if health is not None:
        worker_up(metrics.registry, health.problem)
    if audit is not None:
        tasks.append(asyncio.create_task(watch_approvals(audit, ApprovalGauges(metrics.registry), stop)))
    host, port = settings.listen_host_port
    server = QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,  # uvicorn's records go through the root handlers, and so through redaction
            timeout_graceful_shutdown=max(int(settings.shutdown_grace), 1),
        )
    )
    web_task = asyncio.create_task(server.serve())

    async def stop_web() -> None:
        await stop.wait()
        server.should_exit = True

    tasks += [web_task, asyncio.create_task(stop_web())]
    try:
        if ready is not None:
            while not server.started and not web_task.done():  # noqa: ASYNC110 - uvicorn has only a flag
                await asyncio.sleep(0.05)
            if web_task.done():
                web_task.result()  # the port was taken, or the like: fail now, loudly
            ready.set()
        await web_task
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await adapters.close()
        await shown.close()
