"""The kill switch as its own small state: who turned it on or off, for everything or one playbook, and why."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from service.rails.governance import SwitchChange
from service.rails.governor_state import Switch

# How long a worker trusts its view of the switch (it polls five times a second): older, its writes wait for a fresh
# view and are refused if none comes. A flip that turns a switch on returns once every live worker holds it, and at
# the latest after this long, so no write it forbids can start once the command has returned.
CONFIRM_WITHIN = 2.0
POLL_EVERY = 0.2
# A worker tells the board which version it holds (an Update, sent after adopting it) when it adopts a new one and
# every SEEN_EVERY seconds. A flip waits for every worker heard from within LIVE_FOR to hold it (at most
# CONFIRM_WITHIN), so a worker trusts its view only while its last word is younger than half that: then a flip
# surely waits for it.
SEEN_EVERY = 5.0
LIVE_FOR = timedelta(seconds=30)


def kill_switch_id(task_queue: str) -> str:
    """One switch board per task queue, beside the governor but not behind its asks."""
    return f"remediate-kill-switch:{task_queue}"


def switch_queue(task_queue: str) -> str:
    """The board's own task queue: a worker's read of the switch never waits behind the governor's tasks."""
    return f"{task_queue}-switch"


class Seen(BaseModel):
    """A worker's word to the board: the version it holds now."""

    worker: str
    version: int


class Sighting(BaseModel):
    """The board's version a worker last said it holds, and when the board heard it."""

    version: int
    at: datetime


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
