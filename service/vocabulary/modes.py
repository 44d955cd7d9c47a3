"""Modes form a trust ladder; the service setting is a ceiling that a playbook can only lower."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How far a run may go: off < dry-run < approve < auto."""

    OFF = "off"
    DRY_RUN = "dry-run"
    APPROVE = "approve"
    AUTO = "auto"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = [Mode.OFF, Mode.DRY_RUN, Mode.APPROVE, Mode.AUTO]


def effective_mode(ceiling: Mode, playbook_mode: Mode | None) -> Mode:
    """The lower of the service ceiling and the playbook's own mode."""
    if playbook_mode is None:
        return ceiling
    return playbook_mode if playbook_mode.rank < ceiling.rank else ceiling
