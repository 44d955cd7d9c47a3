"""The runs list's filters from a query string (the console's Runs page and the API): hostile text in, a query out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import get_args
from urllib.parse import urlencode

from service.runs.listing import RunCursor, RunQuery, parse_since
from service.runs.state import RunStatus

STATUSES: tuple[str, ...] = get_args(RunStatus)
FILTERS = ("playbook", "status", "alert", "since")  # the names in the query string, in the order links repeat them
_LONGEST = 200  # a playbook or alert name is at most 63 characters: anything this long is not one


def run_query(params: Mapping[str, str], limit: int) -> RunQuery:
    """The query these parameters ask for; ValueError with the reason the answer's 400 gives."""
    given = {name: params.get(name, "").strip() for name in FILTERS}
    for name, value in given.items():
        if len(value) > _LONGEST:
            raise ValueError(f"{name} is longer than {_LONGEST} characters")
        if not value.isprintable():
            raise ValueError(f"{name} holds control characters")
    if given["status"] and given["status"] not in STATUSES:
        raise ValueError(f"status must be one of: {', '.join(STATUSES)}")
    before = params.get("before", "")
    return RunQuery(
        limit=limit,
        playbook=given["playbook"] or None,
        status=given["status"] or None,
        alertname=given["alert"] or None,
        since=parse_since(given["since"], datetime.now(UTC)) if given["since"] else None,
        before=RunCursor.parse(before) if before else None,
    )


def page_link(path: str, params: Mapping[str, str], cursor: RunCursor | None) -> str:
    """The same list with the same filters, from `cursor` on (None: the newest page)."""
    kept = [(name, params[name]) for name in (*FILTERS, "limit") if params.get(name)]
    if cursor is not None:
        kept.append(("before", cursor.token()))
    return f"{path}?{urlencode(kept)}" if kept else path
