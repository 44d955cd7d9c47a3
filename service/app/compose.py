"""Explicit composition: adapters, registry, receiver, web app and worker from Settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from service.config import Settings
from service.config_file import ConfigFile, load_config_file
from service.notify.base import ClickRoute, NotifierKind
from service.notify.notifiers import AllNotifiers
from service.notify.slack.kind import SLACK
from service.notify.webhook import WEBHOOK
from service.playbooks.catalog import Catalog
from service.playbooks.loader import load_playbooks, load_versioned
from service.playbooks.playbook import Playbook, PlaybookVersion
from service.playbooks.steps import SYSTEMS
from service.playbooks.systems.postgres import PostgresConnection
from service.rails.governance import Governance, governor_id
from service.runs.registry import Registry
from service.runs.state import Durability
from service.targets.alertmanager import AlertmanagerAdapter
from service.targets.base import Adapter, ConnectionAdapter
from service.targets.http import HttpAdapter
from service.targets.kubernetes.adapter import KubernetesAdapter
from service.targets.postgres.adapter import PostgresAdapter
from service.targets.prometheus import PrometheusAdapter
from service.targets.redis import RedisAdapter
from service.targets.temporal.adapter import TemporalTargetAdapter
from service.vocabulary.approvals import NoNotifier
from service.vocabulary.errors import ConfigError
from service.vocabulary.outcomes import Notifying
from service.web.credentials import WebAuth, is_loopback

log = logging.getLogger("remediate")


# Every target system, once: a new system is its step models, its adapter, and one line here.
# One adapter per system of SYSTEMS (Adapters.build refuses a system left out or served twice).
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
# Every notifier, once: a new one is its module (settings, build, clicks) and one line here.
NOTIFIERS: tuple[NotifierKind[Any], ...] = (SLACK, WEBHOOK)


class Notifiers:
    """Every declared notifier with its settings: read from the environment, unless given by name (tests)."""

    def __init__(self, given: dict[str, Any] | None = None, kinds: Sequence[NotifierKind[Any]] = NOTIFIERS) -> None:
        given = given or {}
        self.kinds = [(kind, given.get(kind.name) or kind.settings()) for kind in kinds]

    @property
    def configured(self) -> bool:
        """Whether any notifier is set up: outcome messages have somewhere to go."""
        return any(kind.set_up(s) for kind, s in self.kinds)

    def notifier(self) -> Notifying:
        """Where approval requests, announcements and run outcomes are shown: every notifier set up, or nowhere
        (then the API and the CLI decide)."""
        found = [kind.build(s) for kind, s in self.kinds if kind.set_up(s)]
        if not found:
            return NoNotifier()
        return found[0] if len(found) == 1 else AllNotifiers(found)

    def secrets(self) -> list[str]:
        return [secret for kind, s in self.kinds for secret in kind.secrets(s)]

    def channel(self) -> str | None:
        """The default channel for approval requests: the first notifier's that names one."""
        return next((c for kind, s in self.kinds if (c := kind.channel(s))), None)

    def clicks(self) -> list[ClickRoute]:
        """Every notifier's click route, set up or not (one not set up refuses every click)."""
        return [kind.clicks(s) for kind, s in self.kinds if kind.clicks is not None]


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
        served = sorted(a.system.name for a in ADAPTERS)
        if served != sorted(s.name for s in SYSTEMS):  # a system declared without its adapter, or twice
            raise ConfigError(f"adapters serve {served}, the declared systems are {[s.name for s in SYSTEMS]}")
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
    config = load_config_file(settings.config)
    playbooks = load_playbooks([playbooks_dir] if playbooks_dir else settings.playbook_dirs(), config.kinds())
    return config, playbooks


def load_catalog(settings: Settings, config: ConfigFile) -> Catalog:
    """The playbooks with their versions, and how to load them again (SIGHUP, POST /api/v1/playbooks/reload)."""
    kinds = config.kinds()

    def load() -> list[tuple[Playbook, PlaybookVersion]]:
        return load_versioned(settings.playbook_dirs(), kinds)

    return Catalog(load(), load)


def durability(settings: Settings, config: ConfigFile, notify: bool) -> Durability:
    """What every run started here carries about retries: which connections keep a ledger, the timeouts."""
    return Durability(
        ledgers=sorted(n for n, c in config.connections.items() if isinstance(c, PostgresConnection) and c.ledger),
        heartbeat_timeout=settings.heartbeat_timeout,
        max_attempts=settings.max_attempts_per_occurrence,
        attempt_backoff=settings.attempt_backoff,
        audit=settings.database_url is not None,
        notify=notify,
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
