"""The kill switch as its own small state: who turned it on or off, for everything or one playbook, and why."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.governance import SwitchChange
from service.governor import Switch

# How long a worker trusts its view of the switch (it polls five times a second): older, its writes wait for a fresh
# view and are refused if none comes. A flip that turns a switch on returns only after this long, so no write it
# forbids can start once the command has returned.
CONFIRM_WITHIN = 2.0
POLL_EVERY = 0.2


def kill_switch_id(task_queue: str) -> str:
    """One switch board per task queue, beside the governor but not behind its asks."""
    return f"remediate-kill-switch:{task_queue}"


def switch_queue(task_queue: str) -> str:
    """The board's own task queue: a worker's read of the switch never waits behind the governor's tasks."""
    return f"{task_queue}-switch"


class SwitchBoard(BaseModel):
    """Every switch, and a version that grows with each flip (a worker's view names the version it saw)."""

    everything: Switch = Field(default_factory=Switch)
    playbooks: dict[str, Switch] = Field(default_factory=dict)
    version: int = 0

    def flipped(self, change: SwitchChange, now: datetime) -> SwitchBoard:
        switch = Switch(on=change.on, by=change.by, at=now, reason=change.reason)
        if change.playbook is None:
            return self.model_copy(update={"everything": switch, "version": self.version + 1})
        playbooks = {**self.playbooks, change.playbook: switch}
        return self.model_copy(update={"playbooks": playbooks, "version": self.version + 1})

    def refusal(self, playbook: str) -> str | None:
        """Why a write of this playbook may not start now; None when no switch stops it."""
        for switch, scope in ((self.everything, "everything"), (self.playbooks.get(playbook), f"playbook {playbook}")):
            if switch is not None and switch.on:
                return f"the kill switch is on for {scope} (set by {switch.by}: {switch.reason or 'no reason'})"
        return None

    def any_on(self) -> bool:
        return self.everything.on or any(s.on for s in self.playbooks.values())


def switch_view(board: SwitchBoard) -> dict[str, object]:
    """The switch for everything and every playbook that has one set, as the API and the CLI show them."""
    playbooks = {name: switch.model_dump(mode="json") for name, switch in board.playbooks.items() if switch.at}
    return {"everything": board.everything.model_dump(mode="json"), "playbooks": playbooks}
