"""Durations as playbooks write them (`30s`, `5m`, `2h`), parsed once for steps, limits and approvals."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match["n"]) * _UNIT_SECONDS[match["unit"]])
    return value  # ISO-8601 (how the model serialises) and numbers go to pydantic's own parsing


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$", "examples": ["30s", "5m"]}),
]
