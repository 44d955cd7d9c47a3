"""One `remediate serve` process: the web app, the worker or both, reloading on SIGHUP, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import uvicorn
from starlette.applications import Starlette
from temporalio.client import Client

from service.app.compose import Adapters, Notifiers, durability, governance, web_auth
from service.app.error_reporting import ReportingInterceptor
from service.app.lifecycle import QuietServer, WorkerHealth, run_worker
from service.app.watchers import watch_approvals, watch_kill_switch, watch_lines, watch_stuck
from service.app.worker import Workers, create_worker
from service.config import Settings
from service.config_file import load_config_file
from service.durable.activities import PausePoints, StepActivities
from service.durable.audit_activities import AuditActivities
from service.durable.delivery_activities import DeliveryActivities
from service.durable.policy_activities import PolicyActivities, PolicyMetrics
from service.playbooks.catalog import Catalog
from service.playbooks.playbook import Playbook
from service.runs.audit import AuditStore, Scrubber
from service.runs.delivery import DeliveryCounts
from service.stores.setup import scrubber
from service.targets.alertmanager import AlertmanagerAdapter
from service.temporal.client import TemporalRuns, connect, connect_eager
from service.temporal.governor.client import GovernorClient
from service.temporal.run_records import AuditedRuns
from service.vocabulary.outcomes import Notifying
from service.web.app import Metrics, Receiver, SeenRuns, create_app, health_routes
from service.web.credentials import ApproverTokens
from service.web.run_links import RunLinks
from service.web.run_metrics import ApprovalGauges, worker_up

log = logging.getLogger("remediate")


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


def build_app(
    settings: Settings,
    playbooks: list[Playbook] | Catalog,
    client: Client,
    adapters: Adapters,
    worker_problem: Callable[[], str | None] | None = None,
    metrics: Metrics | None = None,
    audit: AuditStore | None = None,
    notifiers: Notifiers | None = None,
) -> Starlette:
    """The web side. Its readiness is Temporal's, plus this process's worker and its connections when it runs one:
    a web-only replica never talks to the targets."""
    runs = TemporalRuns(client, settings.task_queue)
    auth = web_auth(settings)
    if not auth.enabled:
        log.warning("no REMEDIATE_WEBHOOK_TOKEN or basic credentials: the webhook accepts anyone on loopback")
    config = load_config_file(settings.config)
    notifiers = notifiers or Notifiers()
    receiver = Receiver(
        playbooks,
        runs,
        settings.mode,
        SeenRuns(settings.dedupe_cache_size, settings.dedupe_ttl),
        approvers=config.resolve_approvers,
        channel=notifiers.channel(),
        durability=durability(settings, config, notifiers.configured),
        governance=governance(settings, config),
        window=settings.dedupe_ttl,
    )
    return create_app(
        receiver,
        auth,
        AuditedRuns(client, settings.task_queue, audit) if audit is not None else runs,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        pings={"temporal": runs.ping, **(adapters.pings if worker_problem is not None else {})},
        clicks=notifiers.clicks(),
        worker_problem=worker_problem,
        approvers=ApproverTokens(config.approver_identities()),
        viewers=ApproverTokens(config.viewer_identities()),
        metrics=metrics,
        governor=GovernorClient(client, settings.task_queue),
        links=RunLinks(
            str(settings.temporal_ui_url) if settings.temporal_ui_url else None,
            settings.temporal_namespace,
            str(settings.alertmanager_ui_url) if settings.alertmanager_ui_url else None,
        ),
    )


def build_health_app(
    settings: Settings, adapters: Adapters, worker_problem: Callable[[], str | None], metrics: Metrics
) -> Starlette:
    """A worker-only process answers probes too: liveness, readiness of its worker and connections, metrics."""
    auth = web_auth(settings)
    tokens = ApproverTokens(load_config_file(settings.config).approver_identities())

    def authenticated(header: str | None) -> bool:
        return (auth.enabled and auth.allows(header)) or tokens.identity(header) is not None

    return Starlette(
        routes=health_routes(
            dict(adapters.pings), metrics.registry, worker_problem, authenticated, metrics.stuck.advice
        )
    )


def worker_factory(
    settings: Settings,
    adapters: Adapters,
    notifier: Notifying,
    metrics: PolicyMetrics,
    web_metrics: Metrics,
    audit: AuditStore | None,
    secrets: Scrubber,
) -> Callable[[Client], Workers]:
    pauses = PausePoints(settings.pause_at)
    reporting = [ReportingInterceptor()] if settings.sentry_dsn else []
    recorders = AuditActivities(
        audit,
        secrets,
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
    notifiers: Notifiers | None = None,
) -> None:
    """Run the web server and/or the worker until `stop` is set (then drain) or the task is cancelled."""
    stop = stop or asyncio.Event()
    address, namespace = settings.temporal_address, settings.temporal_namespace
    tasks: list[asyncio.Task[None]] = []
    notifiers = notifiers or Notifiers()  # each notifier's settings, from the environment
    shown = notifiers.notifier()
    health = WorkerHealth() if worker else None
    metrics = Metrics()
    rails = PolicyMetrics(metrics.registry)
    if worker and health is not None:
        tasks.append(
            asyncio.create_task(
                run_worker(
                    client,
                    lambda: connect_eager(address, namespace),
                    worker_factory(
                        settings,
                        adapters,
                        shown,
                        rails,
                        metrics,
                        audit,
                        secrets or scrubber(settings, load_config_file(settings.config), notifiers.secrets()),
                    ),
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
        app = build_app(settings, playbooks, client, adapters, problem, metrics, audit, notifiers)
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
