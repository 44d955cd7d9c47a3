"""`--since` and `--until` as every command takes them: a span back from now (30m, 2h, 14d) or an ISO date/time."""

from __future__ import annotations

from datetime import UTC, datetime

from service.runs.listing import parse_since
from service.vocabulary.errors import ConfigError


def option_time(text: str | None, flag: str = "since", now: datetime | None = None) -> datetime | None:
    """The time `--<flag> TEXT` names (None when not given); a bad one is a ConfigError naming the flag."""
    try:
        return parse_since(text, now or datetime.now(UTC), flag) if text else None
    except ValueError as exc:
        raise ConfigError(f"--{exc}") from exc
