"""`remediate kill-switch`: straight to the switch board, importing nothing that loads playbooks or adapters."""

from __future__ import annotations

import argparse
import json
from typing import Any

from service.config import Settings
from service.rails.governance import SwitchChange
from service.rails.kill_switch import switch_view
from service.temporal.governor.board import Board
from service.temporal.rpc import connect
from service.vocabulary.operator import who


def _switch_line(scope: str, switch: dict[str, Any]) -> str:
    if not switch.get("at"):
        return f"{scope}: off (never set)"
    state = "ON" if switch["on"] else "off"
    why = f": {switch['reason']}" if switch.get("reason") else ""
    return f"{scope}: {state}, set by {switch['by']} at {switch['at']}{why}"


async def kill_switch(args: argparse.Namespace, settings: Settings) -> int:
    board = Board(await connect(settings.temporal_address, settings.temporal_namespace), settings.task_queue)
    if args.state == "status":
        shown = switch_view(await board.read())
    else:
        change = SwitchChange(on=args.state == "on", by=who(args.as_user), reason=args.reason, playbook=args.playbook)
        shown = switch_view(await board.flip(change))
    everything: dict[str, Any] = shown["everything"]  # type: ignore[assignment]
    playbooks: dict[str, dict[str, Any]] = shown["playbooks"]  # type: ignore[assignment]
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(_switch_line("kill switch for everything", everything))
    for name, switch in sorted(playbooks.items()):
        if args.playbook in (None, name):
            print(_switch_line(f"kill switch for playbook {name}", switch))
    if everything["on"] or any(s["on"] for s in playbooks.values()):
        print("writes that have not started are refused (blocked_by_policy); reads and dry-runs go on")
    return 0
