"""Alertmanager v4 webhook models and the occurrence key that names a run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_VALUE = 16 * 1024  # characters in one label or annotation value
MAX_NAME = 1024  # characters in one label or annotation name
MAX_ALERT = 256 * 1024  # characters in all of one alert's labels and annotations


class Alert(BaseModel):
    """One alert of a webhook message; unknown fields from newer Alertmanagers are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z]+$")

    @model_validator(mode="after")
    def _bounded(self) -> Alert:
        # Bigger values would only be carried into every run's history; refuse them with the field named.
        total = len(self.generatorURL)
        for where, values in (("labels", self.labels), ("annotations", self.annotations)):
            for name, value in values.items():
                if len(name) > MAX_NAME:
                    raise ValueError(f"{where}: a name of {len(name)} characters is over {MAX_NAME}")
                if len(value) > MAX_VALUE:
                    raise ValueError(f"{where}.{name[:64]}: {len(value)} characters, over {MAX_VALUE} per value")
                total += len(name) + len(value)
        if total > MAX_ALERT:
            raise ValueError(f"labels and annotations hold {total} characters, over {MAX_ALERT} per alert")
        return self

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def starts_at_unix(self) -> int:
        return int(self.startsAt.timestamp())

    def occurrence_key(self) -> tuple[str, int]:
        """Alertmanager re-sends the same occurrence; (fingerprint, startsAt) identifies it."""
        return (self.fingerprint, self.starts_at_unix)


class WebhookMessage(BaseModel):
    """An Alertmanager webhook message, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[Alert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0


def run_id(playbook: str, alert: Alert) -> str:
    """The deterministic workflow id: duplicate deliveries of one occurrence name the same run."""
    fingerprint, starts_at = alert.occurrence_key()
    return f"{playbook}/{fingerprint}/{starts_at}"


def recorded_alert(run: str, labels: Mapping[str, str]) -> Alert:
    """The firing alert a run id names (the inverse of `run_id`), with the labels its run recorded."""
    _, fingerprint, starts_at = run.rsplit("/", 2)
    return Alert(
        status="firing",
        labels=dict(labels),
        startsAt=datetime.fromtimestamp(int(starts_at), UTC),
        fingerprint=fingerprint,
    )
