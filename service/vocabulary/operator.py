"""Who is at the keyboard: the name a CLI decision or flip is recorded under."""

from __future__ import annotations

import getpass
import os


def who(as_user: str | None) -> str:
    """`--as`, else $REMEDIATE_APPROVER, else the login name."""
    return as_user or os.environ.get("REMEDIATE_APPROVER") or getpass.getuser()
