"""Which audit store REMEDIATE_DATABASE_URL names, and which secret values it must never hold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from service.config import Settings, resolve_secret
from service.config_file import ConfigFile
from service.runs.audit import AuditStore, Scrubber
from service.stores.postgres import PostgresAuditStore
from service.stores.sqlite import SqliteAuditStore
from service.vocabulary.errors import ConfigError
from service.vocabulary.redact import redact


def audit_store(settings: Settings) -> PostgresAuditStore | SqliteAuditStore | None:
    """The store REMEDIATE_DATABASE_URL names (postgresql://… or sqlite:///absolute/path), or None without one."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if not url:
        return None
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditStore(url)
    if url.startswith("sqlite:///"):
        return SqliteAuditStore(Path(url.removeprefix("sqlite://")))
    raise ConfigError(f"REMEDIATE_DATABASE_URL must be postgresql://… or sqlite:///path, got {redact(url)!r}")


async def ready_store(settings: Settings) -> AuditStore | None:
    """The store, checked: a Postgres store that is down or not migrated stops start-up with the reason."""
    store = audit_store(settings)
    if isinstance(store, PostgresAuditStore):
        try:
            await store.check()
        except BaseException:
            await store.close()
            raise
    return store


def scrubber(settings: Settings, config: ConfigFile, notifier_secrets: Sequence[str] = ()) -> Scrubber:
    """Every secret value this process knows (the notifiers' among them), so none is ever written to the trail
    verbatim."""
    known = [*notifier_secrets] + [
        s.get_secret_value()
        for s in (
            settings.webhook_token,
            settings.webhook_password,
            settings.database_url,
        )
        if s is not None
    ]
    if settings.sentry_dsn:
        known.append(settings.sentry_dsn)
    refs = [*config.approver_tokens.values()]
    for connection in config.connections.values():
        refs += _refs(connection)
    for ref in refs:
        try:
            known.append(resolve_secret(ref))
        except ConfigError:  # not set in this process: it cannot leak from here either
            continue
    return Scrubber(known)


def _refs(model: BaseModel) -> list[str]:
    """Secret references in a connection: its fields typed as references (dsn, url, bearer, password, api_key)."""
    found: list[str] = []
    for name, value in model:
        if isinstance(value, BaseModel):
            found += _refs(value)
        elif name in ("dsn", "url", "bearer", "password", "api_key") and str(value).startswith(("env:", "file:")):
            found.append(str(value))
    return found
