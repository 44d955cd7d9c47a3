"""How a target is named for people: by what identifies it (a key, a pid, a name), never by a bare True."""

from __future__ import annotations

from pydantic import JsonValue

IDENTIFYING = ("id", "pid", "key", "name", "uuid", "workflow_id", "run_id", "pod", "job_id")


def name_of(value: JsonValue) -> str | None:
    """`id=4`, `pid=812`, `name=web-1`; a row with no such column: its scalar columns (up to three); None when
    nothing in it tells one target from another (only booleans, or empty)."""
    if isinstance(value, dict):
        for column in (*IDENTIFYING, *(k for k in value if k.endswith("_id"))):
            found = value.get(column)
            if found is not None and not isinstance(found, bool | dict | list):
                return f"{column}={found}"
        scalars = [(k, v) for k, v in value.items() if v is not None and not isinstance(v, bool | dict | list)]
        return ", ".join(f"{k}={v}" for k, v in scalars[:3]) or None
    if value is None or isinstance(value, bool | dict | list):
        return None
    return str(value)
