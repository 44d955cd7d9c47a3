"""Modes form a trust ladder; the service setting is a ceiling that a playbook can only lower."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How far a run may go: off < dry-run < shadow < approve < auto.

    `shadow` plans exactly as dry-run does and then watches what happens without it (docs/trust.md)."""

    OFF = "off"
    DRY_RUN = "dry-run"
    SHADOW = "shadow"
    APPROVE = "approve"
    AUTO = "auto"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def plans_only(self) -> bool:
        """Writes run only in their dry-run form: nothing is changed."""
        return self in (Mode.DRY_RUN, Mode.SHADOW)


_ORDER = [Mode.OFF, Mode.DRY_RUN, Mode.SHADOW, Mode.APPROVE, Mode.AUTO]


def effective_mode(ceiling: Mode, playbook_mode: Mode | None) -> Mode:
    """The lower of the service ceiling and the playbook's own mode."""
    if playbook_mode is None:
        return ceiling
    return playbook_mode if playbook_mode.rank < ceiling.rank else ceiling
