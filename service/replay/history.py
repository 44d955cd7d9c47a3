"""Alert history as webhook messages in time order: from a JSON Lines file, with Alertmanager's fingerprints."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from service.alerts.webhook import WebhookMessage
from service.vocabulary.errors import ConfigError

_FNV_OFFSET, _FNV_PRIME, _MASK = 14695981039346656037, 1099511628211, (1 << 64) - 1
_TIME = TypeAdapter(datetime)
_SEPARATOR = 0xFF  # Prometheus' model.SeparatorByte: never valid UTF-8, so no label can forge it


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (prometheus/common model.LabelSet.Fingerprint): FNV-1a 64 over the
    sorted names and values, each followed by the separator byte, as 16 hex digits."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in (*part.encode(), _SEPARATOR):
                digest = ((digest ^ byte) * _FNV_PRIME) & _MASK
    return f"{digest:016x}"


@dataclass(frozen=True)
class Delivered:
    """One webhook message as the receiver got it, at `at` on the replay's clock."""

    at: datetime
    message: WebhookMessage


def sent_at(message: WebhookMessage) -> datetime:
    """When Alertmanager sent a message that says nothing of it: its newest change (a start, or an end)."""
    return max(a.endsAt if a.status == "resolved" and a.endsAt else a.startsAt for a in message.alerts)


def from_lines(lines: Iterable[str], source: str) -> Iterator[Delivered]:
    """Webhook messages, one JSON object per line, oldest first; `receivedAt` on a line says when it arrived (else
    its newest start or end). A line out of order or not a webhook message stops the replay with its number."""
    last: datetime | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            message = WebhookMessage.model_validate(raw)
            received = raw.get("receivedAt") if isinstance(raw, dict) else None
            at = _TIME.validate_python(received) if received else sent_at(message)
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(f"{source}:{number}: not an Alertmanager webhook message: {_first(exc)}") from exc
        if last is not None and at < last:
            raise ConfigError(
                f"{source}:{number}: at {at.isoformat()}, before the line above; lines must be in time order"
            )
        last = at
        yield Delivered(at, message)


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc)
