"""Validation contexts: a value decoded again after its playbook was loaded skips the parsers that loading ran."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo

# A playbook (or a step's parameters) decoded from a document that was checked when it was loaded: SQL, matchers
# and patterns were parsed then, and are not parsed again on a decode.
CHECKED: dict[str, Any] = {"checked": True}
# A step's parameters once rendered: checked like the above, and a typed field must now hold a typed value.
RENDERED: dict[str, Any] = {"checked": True, "rendered": True}


def checked_before(info: ValidationInfo) -> bool:
    """Whether this validation decodes a checked document again (so a parser need not run)."""
    return bool(info.context and info.context.get("checked"))
