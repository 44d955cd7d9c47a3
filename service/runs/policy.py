"""The policy seam: asked before a run's first read, before each write, and told when the run ends."""

from __future__ import annotations

from typing import Protocol

from service.playbooks.steps import StepBase
from service.rails.governor_state import Answer
from service.runs.state import RunInput
from service.vocabulary.modes import Mode, effective_mode

__all__ = ["Answer", "Mode", "ModeLadder", "Policy", "effective_mode"]


class Policy(Protocol):
    """Whether a run may start (a reason when not), and whether it may make one write now (an Answer).

    Called from the workflow, so an implementation is deterministic or asks through an activity. `key` is the run's
    cooldown key, rendered from its playbook's `limits.cooldown_key`.
    """

    async def before_run(self, run: RunInput) -> str | None: ...

    async def before_write(self, run: RunInput, step: StepBase, key: str) -> Answer: ...

    async def acting(self, run: RunInput) -> None:
        """The run's first write is about to start (after any approval)."""
        ...

    async def paused(self, run: RunInput) -> None:
        """The run is about to wait for a person: it gives its slot back (it keeps its place in the hourly count)."""
        ...

    async def after_run(self, run: RunInput, wrote: bool, status: str) -> None: ...


class ModeLadder:
    """The trust ladder alone: mode `off` runs nothing; every other mode may write as the engine's gates allow."""

    async def before_run(self, run: RunInput) -> str | None:
        if run.mode == Mode.OFF:
            return "mode is off for this playbook: nothing was read or written"
        return None

    async def before_write(self, run: RunInput, step: StepBase, key: str) -> Answer:
        return Answer(verdict="grant")

    async def acting(self, run: RunInput) -> None:
        return None

    async def paused(self, run: RunInput) -> None:
        return None

    async def after_run(self, run: RunInput, wrote: bool, status: str) -> None:
        return None
