"""Explicit composition: adapters, registry, receiver, web app and worker from Settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from temporalio.client import Client

from service.activities import StepActivities
from service.adapters.http import HttpAdapter
from service.adapters.kubernetes import KubernetesAdapter
from service.adapters.postgres import PostgresAdapter
from service.adapters.prometheus import PrometheusAdapter
from service.adapters.redis import RedisAdapter
from service.adapters.slack import SlackNotifier
from service.adapters.temporal import TemporalRuns
from service.adapters.temporal_target import TemporalTargetAdapter
from service.config import (
    ConfigFile,
    HttpConnection,
    KubernetesConnection,
    PostgresConnection,
    PrometheusConnection,
    RedisConnection,
    Settings,
    TemporalConnection,
)
from service.playbook import Playbook, load_playbooks
from service.registry import Registry
from service.web import Receiver, SeenRuns, WebAuth, create_app
from service.worker import create_worker

log = logging.getLogger("remediate")


@dataclass
class Adapters:
    """Every adapter instance, built once from the connections in the config file."""

    postgres: PostgresAdapter
    http: HttpAdapter
    prometheus: PrometheusAdapter
    kubernetes: KubernetesAdapter
    temporal: TemporalTargetAdapter
    redis: RedisAdapter
    pings: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    @classmethod
    def build(cls, config: ConfigFile) -> Adapters:
        conns = config.connections
        adapters = cls(
            postgres=PostgresAdapter({n: c for n, c in conns.items() if isinstance(c, PostgresConnection)}),
            http=HttpAdapter({n: c for n, c in conns.items() if isinstance(c, HttpConnection)}),
            prometheus=PrometheusAdapter({n: c for n, c in conns.items() if isinstance(c, PrometheusConnection)}),
            kubernetes=KubernetesAdapter({n: c for n, c in conns.items() if isinstance(c, KubernetesConnection)}),
            temporal=TemporalTargetAdapter({n: c for n, c in conns.items() if isinstance(c, TemporalConnection)}),
            redis=RedisAdapter({n: c for n, c in conns.items() if isinstance(c, RedisConnection)}),
        )
        for name, conn in conns.items():
            pingers: dict[str, Callable[[str], Awaitable[None]]] = {
                "postgres": adapters.postgres.ping,
                "http": adapters.http.ping,
                "prometheus": adapters.prometheus.ping,
                "kubernetes": adapters.kubernetes.ping,
                "temporal": adapters.temporal.ping,
                "redis": adapters.redis.ping,
            }
            adapters.pings[f"connection:{name}"] = _bind(pingers[conn.type], name)
        return adapters

    def registry(self) -> Registry:
        return Registry([a.actions() for a in self._all()])

    def _all(
        self,
    ) -> tuple[
        PostgresAdapter | HttpAdapter | PrometheusAdapter | KubernetesAdapter | TemporalTargetAdapter | RedisAdapter,
        ...,
    ]:
        return (self.postgres, self.http, self.prometheus, self.kubernetes, self.temporal, self.redis)

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._all()))


def _bind(ping: Callable[[str], Awaitable[None]], name: str) -> Callable[[], Awaitable[None]]:
    async def bound() -> None:
        await ping(name)

    return bound


def load_all(settings: Settings, playbooks_dir: Path | None = None) -> tuple[ConfigFile, list[Playbook]]:
    """Config and playbooks, validated together: an unknown connection stops start-up."""
    config = settings.connections()
    playbooks = load_playbooks([playbooks_dir or settings.playbooks], config.kinds())
    return config, playbooks


def build_app(settings: Settings, playbooks: list[Playbook], client: Client, adapters: Adapters) -> Starlette:
    runs = TemporalRuns(client, settings.task_queue)
    auth = WebAuth(
        token=settings.webhook_token.get_secret_value() if settings.webhook_token else None,
        username=settings.webhook_username,
        password=settings.webhook_password.get_secret_value() if settings.webhook_password else None,
    )
    if not auth.enabled:
        log.warning("no REMEDIATE_WEBHOOK_TOKEN or basic credentials: the webhook accepts anyone")
    config = settings.connections()
    receiver = Receiver(
        playbooks,
        runs,
        settings.mode,
        SeenRuns(settings.dedupe_cache_size),
        approvers=config.resolve_approvers,
        channel=settings.slack_channel,
    )
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    return create_app(
        receiver,
        auth,
        max_body_bytes=settings.max_body_bytes,
        pings={"temporal": runs.ping, **adapters.pings},
        slack_signing_secret=secret,
    )


async def serve(
    settings: Settings,
    client: Client,
    playbooks: list[Playbook],
    adapters: Adapters,
    *,
    web: bool = True,
    worker: bool = True,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the web server and/or the worker until cancelled."""
    tasks: list[asyncio.Task[None]] = []
    if worker:
        notifier = SlackNotifier(
            settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None,
            settings.slack_channel,
            settings.slack_api_url,
        )
        temporal_worker = create_worker(client, settings.task_queue, StepActivities(adapters.registry(), notifier))
        tasks.append(asyncio.create_task(temporal_worker.run()))
    server: uvicorn.Server | None = None
    if web:
        host, port = settings.listen_host_port
        app = build_app(settings, playbooks, client, adapters)
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        )
        tasks.append(asyncio.create_task(server.serve()))
    try:
        if ready is not None:
            while server is not None and not server.started:  # noqa: ASYNC110 - uvicorn has only a flag
                await asyncio.sleep(0.05)
            ready.set()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await adapters.close()
