"""Durations as playbooks write them (`30s`, `5m`, `2h`), parsed once for steps, limits and approvals."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, int | float):  # bool too: it is an int
        raise ValueError(f"{value} has no unit: write it as {value}s, {value}m or {value}h")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match["n"]) * _UNIT_SECONDS[match["unit"]])
    return value  # ISO-8601 strings go to pydantic's own parsing


def written(span: timedelta) -> str:
    """The shortest way a playbook would write it: 30s, 5m, 2h, 1.5s, 250ms."""
    seconds = span.total_seconds()
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    # Serialised the way it is written, so the schema's defaults satisfy its own pattern and records read well.
    PlainSerializer(written, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$", "examples": ["30s", "5m"]}),
]


class PlaybookJsonSchema(GenerateJsonSchema):
    """The JSON Schema generator for playbooks: duration defaults written as playbooks write them."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return written(dft)
        return super().encode_default(dft)
