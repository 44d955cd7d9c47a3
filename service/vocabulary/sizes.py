"""Size bounds that keep every run far from Temporal's payload limits (2 MiB a payload, 4 MiB a workflow task)."""

from __future__ import annotations

import json

from pydantic import JsonValue

REQUEST_LIMIT = 64 * 1024  # bytes of one step's rendered parameters: what a step may send is also what history holds
SHOWN_CHARS = 2048  # characters of one string kept in a run's record (the step itself got the whole value)
SHOWN_ITEMS = 200  # items of one list kept in a run's record


def json_size(value: JsonValue) -> int:
    """Bytes of a value as Temporal's JSON converter would carry it."""
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


def shown(value: JsonValue) -> JsonValue:
    """A copy for the run's record: long strings and lists are cut, with a note that says how much was left out."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return value
        return f"{value[:SHOWN_CHARS]}… ({len(value) - SHOWN_CHARS} more characters not kept in the record)"
    if isinstance(value, list):
        kept = [shown(v) for v in value[:SHOWN_ITEMS]]
        if len(value) > SHOWN_ITEMS:
            kept.append(f"… ({len(value) - SHOWN_ITEMS} more items not kept in the record)")
        return kept
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    return value


def shown_dict(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    return {k: shown(v) for k, v in value.items()}
