"""Settings from REMEDIATE_* variables, connections from the YAML config file, and secret references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.rails.governor_state import Limits
from service.vocabulary.errors import ConfigError
from service.vocabulary.modes import Mode

SecretRef = Annotated[
    str,
    Field(
        pattern=r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$",
        description="A reference, never the secret itself: env:NAME or file:/absolute/path",
    ),
]


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


class _Connection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresConnection(_Connection):
    """A Postgres database reached by DSN."""

    type: Literal["postgres"]
    dsn: SecretRef
    statement_timeout: float = Field(default=30.0, gt=0, description="Seconds; applied to every statement.")
    pool_size: int = Field(default=4, ge=1, le=50)
    ledger: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$",
        description="schema.table of the idempotency ledger; unset means writes are sent at most once.",
    )


class HttpAuth(_Connection):
    """Bearer token or basic credentials, as references."""

    bearer: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None


class HttpConnection(_Connection):
    """An HTTP API under one base URL; paths in playbooks are relative to it."""

    type: Literal["http"]
    base_url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    max_response_bytes: int = Field(default=1_048_576, ge=1024)


class PrometheusConnection(_Connection):
    """A Prometheus-compatible query API."""

    type: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None


class AlertmanagerConnection(_Connection):
    """An Alertmanager (API v2): whether a fixed alert stopped firing, and silences while a run acts."""

    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None
    timeout: float = Field(default=5.0, gt=0)


class KubernetesConnection(_Connection):
    """A Kubernetes API: a kubeconfig file (and context), or the pod's service account."""

    type: Literal["kubernetes"]
    kubeconfig: str | None = Field(default=None, description="Path of a kubeconfig file; unset means in-cluster.")
    context: str | None = None
    timeout: float = Field(default=10.0, gt=0)


class TemporalConnection(_Connection):
    """A Temporal cluster and namespace that playbooks act on (not the service's own)."""

    type: Literal["temporal"]
    address: str = Field(pattern=r"^[^\s/]+:\d+$")
    namespace: str = "default"
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    api_key: SecretRef | None = Field(default=None, description="Temporal Cloud API key (implies TLS).")


class RedisConnection(_Connection):
    """A Redis server; the URL is a secret reference because it may carry a password."""

    type: Literal["redis"]
    url: SecretRef
    socket_timeout: float = Field(default=5.0, gt=0)


Connection = Annotated[
    PostgresConnection
    | HttpConnection
    | PrometheusConnection
    | AlertmanagerConnection
    | KubernetesConnection
    | TemporalConnection
    | RedisConnection,
    Field(discriminator="type"),
]


class ConfigFile(BaseModel):
    """The optional YAML file named by REMEDIATE_CONFIG."""

    model_config = ConfigDict(extra="forbid")

    connections: dict[str, Connection] = Field(default_factory=dict)
    approvers: list[str] = Field(default_factory=list, description="Default approvers: user ids or group names.")
    approver_groups: dict[str, list[str]] = Field(default_factory=dict, description="Group name -> user ids.")
    limits: Limits = Field(
        default_factory=Limits, description="Service-wide defaults for every playbook's `limits` (each field)."
    )
    approver_tokens: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="User id or group name -> a reference to the bearer token that decides as them in the API.",
    )

    @field_validator("connections")
    @classmethod
    def _names(cls, value: dict[str, Connection]) -> dict[str, Connection]:
        for name in value:
            if not name or len(name) > 63 or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"connection name {name!r}: use letters, digits, '-' and '_'")
            if name == "audit":  # `remediate migrate audit` means the audit store
                raise ValueError("connection name 'audit' is reserved for the audit store; choose another")
        return value

    def alertmanager(self, named: str | None) -> str | None:
        """The Alertmanager connection the rails use: the one named, else the only one configured."""
        found = [n for n, c in self.connections.items() if c.type == "alertmanager"]
        if named is not None:
            if named not in found:
                raise ConfigError(f"REMEDIATE_ALERTMANAGER={named}: no alertmanager connection of that name")
            return named
        return found[0] if len(found) == 1 else None

    def kinds(self) -> dict[str, str]:
        return {name: conn.type for name, conn in self.connections.items()}

    def resolve_approvers(self, names: list[str]) -> list[str]:
        """User ids allowed to decide: the playbook's list (or the default), with group names expanded."""
        resolved: list[str] = []
        for name in names or self.approvers:
            members = self.approver_groups.get(name, [name])
            if name in self.approver_groups and name in self.approver_tokens:
                members = [*members, f"group:{name}"]  # the group's own token decides as the group
            for user in members:
                if user not in resolved:
                    resolved.append(user)
        return resolved

    def approver_identities(self) -> dict[str, str]:
        """Resolved token -> identity (`group:<name>` for a group's token); refuses short or shared tokens."""
        found: dict[str, str] = {}
        for who, ref in self.approver_tokens.items():
            token = resolve_secret(ref)
            if len(token) < 16:
                raise ConfigError(f"approver token for {who} is shorter than 16 characters")
            if token in found:
                raise ConfigError(f"approver tokens for {found[token]} and {who} are the same")
            found[token] = f"group:{who}" if who in self.approver_groups else who
        return found


def load_config_file(path: Path | None) -> ConfigFile:
    if path is None:
        return ConfigFile()
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


class Settings(BaseSettings):
    """Every setting of the service; documented one by one in docs/configuration.md."""

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
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET"))
    slack_channel: str | None = Field(default=None, description="Channel id for approval requests.")
    slack_api_url: str = "https://slack.com/api"
    notify_webhook_url: SecretStr | None = Field(
        default=None, description="Also POST approval requests, announcements and run outcomes here as JSON."
    )
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

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"REMEDIATE_LISTEN must be host:port, got {self.listen!r}")
        return host, int(port)

    def connections(self) -> ConfigFile:
        return load_config_file(self.config)

    def playbook_dirs(self) -> list[Path]:
        """REMEDIATE_PLAYBOOKS holds one directory or several, separated like PATH."""
        return [Path(part) for part in str(self.playbooks).split(os.pathsep) if part]
