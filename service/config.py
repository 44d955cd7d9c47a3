"""Settings from REMEDIATE_* variables, and secret references (env:NAME, file:/path) resolved where they are used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.vocabulary.errors import ConfigError
from service.vocabulary.modes import Mode


def resolve_secret(ref: str) -> str:
    """Read a secret reference; only the worker and the web process call this, never a workflow."""
    kind, _, where = ref.partition(":")
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise ConfigError(f"secret {ref} is not set in the environment")
        return value
    if kind == "file":
        try:
            return Path(where).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret {ref} cannot be read: {exc.strerror}") from exc
    raise ConfigError(f"secret reference {ref!r} must start with env: or file:")


class Settings(BaseSettings):
    """Every setting of the service but the notifiers' (each declares its own, in service/notify/); documented one by
    one in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATE_", extra="ignore", populate_by_name=True)

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "remediate"
    playbooks: Path = Path("playbooks")
    mode: Mode = Mode.DRY_RUN
    webhook_token: SecretStr | None = None
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None
    listen: str = "127.0.0.1:8080"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    redis_url: str | None = None
    database_url: SecretStr | None = Field(
        default=None, description="The audit store: postgresql://… or sqlite:///path."
    )
    config: Path | None = None
    dedupe_cache_size: int = Field(default=100_000, ge=0)
    sentry_dsn: str | None = Field(default=None, validation_alias=AliasChoices("SENTRY_DSN"))
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per log line.")
    shutdown_grace: float = Field(default=30.0, ge=0, description="Seconds in-flight work gets after SIGTERM.")
    worker_cached_runs: int = Field(
        default=500, ge=10, le=100_000, description="Open runs a worker keeps in memory (the rest are replayed)."
    )
    worker_concurrent_tasks: int = Field(
        default=50, ge=2, le=1000, description="Workflow tasks of runs a worker works on at once."
    )
    heartbeat_timeout: float = Field(default=10.0, ge=1, description="Seconds without a heartbeat: worker lost.")
    max_attempts_per_occurrence: int = Field(default=3, ge=1, le=20)
    attempt_backoff: float = Field(default=60.0, ge=0, description="Seconds before a failed occurrence's retry.")
    dedupe_ttl: float = Field(default=60.0, ge=0, description="Seconds a known run id answers re-deliveries.")
    pause_at: str | None = Field(default=None, description="Crash drills only: named pause points.")
    intake_concurrency: int = Field(
        default=32, ge=1, le=1000, description="Run starts in flight per worker, over all its deliveries."
    )
    body_timeout: float = Field(default=10.0, gt=0, description="Seconds a client may take to send a body.")
    allow_unauthenticated: bool = Field(default=False, description="Serve an open webhook on a non-loopback address.")
    max_writes_per_hour: int | None = Field(default=None, ge=1, description="Write-runs per hour, all playbooks.")
    alertmanager: str | None = Field(
        default=None, description="Alertmanager connection for effectiveness and silences (default: the only one)."
    )
    effective_within: float = Field(default=600.0, gt=0, le=86_400, description="Seconds a fix has to stop an alert.")
    temporal_ui_url: HttpUrl | None = Field(default=None, description="The Temporal UI, for the console's links.")
    alertmanager_ui_url: HttpUrl | None = Field(default=None, description="Alertmanager, for the console's links.")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"REMEDIATE_LISTEN must be host:port, got {self.listen!r}")
        return host, int(port)

    def playbook_dirs(self) -> list[Path]:
        """REMEDIATE_PLAYBOOKS holds one directory or several, separated like PATH."""
        return [Path(part) for part in str(self.playbooks).split(os.pathsep) if part]
