"""The policy seam: asked before a run's first read and before each write; today the mode ladder answers."""

from __future__ import annotations

from typing import Protocol

from service.modes import Mode, effective_mode
from service.runs import RunInput
from service.steps import StepBase

__all__ = ["Mode", "ModeLadder", "Policy", "effective_mode"]


class Policy(Protocol):
    """Whether a run may start, and whether it may make one write now; a reason when not, None when it may.

    Called from the workflow, so an implementation is deterministic or asks through an activity.
    """

    async def before_run(self, run: RunInput) -> str | None: ...

    async def before_write(self, run: RunInput, step: StepBase) -> str | None: ...


class ModeLadder:
    """The trust ladder alone: mode `off` runs nothing; every other mode may write as the engine's gates allow."""

    async def before_run(self, run: RunInput) -> str | None:
        if run.mode == Mode.OFF:
            return "mode is off for this playbook: nothing was read or written"
        return None

    async def before_write(self, run: RunInput, step: StepBase) -> str | None:
        return None
