"""Lists of runs: which ones (filters), newest first, and where the next older page starts (keyset, never offset)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from service.runs.state import RunState, short_id

# The time a list sorts by: when the run started, or its last record for one that never did.
LISTED_AT = "COALESCE(started_at, updated_at)"
# Newest first, ties broken by id and attempt: the order of every list, and of every index that serves one.
LIST_ORDER = f"({LISTED_AT}) DESC, run_id DESC, attempt DESC"
ORDER_BY = f" ORDER BY {LIST_ORDER}"
T = TypeVar("T")
_TOKEN_LIMIT = 2000  # a cursor is a time, a run id and a number: anything longer was not made here


def parse_since(text: str, now: datetime, name: str = "since") -> datetime:
    """`2h` / `30m` / `7d` before `now`, or an ISO date or time (UTC if no zone); ValueError says which to give,
    naming the parameter `name`."""
    unit = {"m": 60, "h": 3600, "d": 86400}.get(text[-1:])
    try:
        if unit and text[:-1].isascii() and text[:-1].isdigit():
            return now - timedelta(seconds=int(text[:-1]) * unit)
        when = datetime.fromisoformat(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{name} {text!r}: give a span (30m, 2h, 7d) or an ISO date/time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunCursor:
    """The last run of a page; the next page holds the runs strictly older than it, so paging costs one index seek
    however deep it goes, and a run recorded meanwhile never shifts a page."""

    at: datetime
    run_id: str
    attempt: int = 0

    def token(self) -> str:
        text = json.dumps([self.at.isoformat(), self.run_id, self.attempt], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> RunCursor:
        """The cursor a page link carries; ValueError with a reason for anything this code did not make."""
        if len(token) > _TOKEN_LIMIT:
            raise ValueError("the page link is too long")
        try:
            at, run_id, attempt = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            when = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise ValueError("the page link is not one this console made") from exc
        if not isinstance(run_id, str) or type(attempt) is not int or when.tzinfo is None:
            raise ValueError("the page link is not one this console made")
        return cls(when, run_id, attempt)


@dataclass(frozen=True)
class RunColumns:
    """How one store spells what a list filters on: its parameter mark, its alert name, its time values."""

    mark: str
    alertname: str
    time: Callable[[datetime], object] = field(default=lambda t: t)


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list, newest first; every filter is bound as a parameter, never written into the SQL."""

    limit: int = 50
    playbook: str | None = None
    status: str | None = None
    alertname: str | None = None
    since: datetime | None = None
    before: RunCursor | None = None

    def where(self, columns: RunColumns) -> tuple[str, list[object]]:
        """The filters as ` AND …` SQL in the store's spelling, and their parameters in order."""
        mark, parts, params = columns.mark, list[str](), list[object]()
        for column, value in (
            ("playbook", self.playbook),
            ("status", self.status),
            (columns.alertname, self.alertname),
        ):
            if value:
                parts, params = [*parts, f"{column} = {mark}"], [*params, value]
        if self.since:
            parts, params = [*parts, f"{LISTED_AT} >= {mark}"], [*params, columns.time(self.since)]
        if self.before:
            cursor = self.before
            parts = [*parts, f"({LISTED_AT}, run_id, attempt) < ({mark}, {mark}, {mark})"]
            params = [*params, columns.time(cursor.at), cursor.run_id, cursor.attempt]
        return "".join(f" AND {p}" for p in parts), params

    def filtered(self) -> bool:
        return bool(self.playbook or self.status or self.alertname or self.since)


@dataclass(frozen=True)
class ListedRun:
    """A run as a store lists it: its last recorded state, and the cursor that starts the page after it."""

    state: RunState
    cursor: RunCursor


@dataclass(frozen=True)
class RunSummary:
    """One line of `remediate runs list`: `status` is the run's own outcome (succeeded, blocked_by_policy, …) once
    it has ended, `running` before; `execution` is what Temporal says of the workflow."""

    run_id: str
    status: str
    playbook: str
    alertname: str
    mode: str
    started: datetime | None
    closed: datetime | None
    execution: str = ""
    place: int = 0  # while waiting_for_slot: its place in line

    @property
    def shown_status(self) -> str:
        return f"{self.status} #{self.place}" if self.place else self.status

    @property
    def short_id(self) -> str:
        return short_id(self.run_id)


@dataclass(frozen=True)
class RunsPage:
    """A page of runs, and the cursor of the next older page when there is one."""

    runs: list[RunSummary]
    older: RunCursor | None = None


def one_page(fetched: list[T], limit: int) -> tuple[list[T], bool]:
    """A page's rows from a fetch of one more than the page holds, and whether an older page follows."""
    return fetched[:limit], len(fetched) > limit
