"""A secret as configuration names it: a reference (env:NAME or file:/path), never the value."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

SecretRef = Annotated[
    str,
    Field(
        pattern=r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$",
        description="A reference, never the secret itself: env:NAME or file:/absolute/path",
    ),
]
