"""The rails' command-line verbs: `remediate kill-switch` and `remediate breaker`, straight to the governor."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Any

from service.adapters.governor import GovernorClient
from service.adapters.temporal import connect
from service.config import Settings
from service.governance import GovernorView, SwitchChange
from service.rail_routes import switch_view


def who(args: argparse.Namespace) -> str:
    return args.as_user or os.environ.get("REMEDIATE_APPROVER") or getpass.getuser()


def _switch_line(scope: str, switch: dict[str, Any]) -> str:
    if not switch.get("at"):
        return f"{scope}: off (never set)"
    state = "ON" if switch["on"] else "off"
    why = f": {switch['reason']}" if switch.get("reason") else ""
    return f"{scope}: {state}, set by {switch['by']} at {switch['at']}{why}"


async def kill_switch(args: argparse.Namespace, settings: Settings) -> int:
    governor = GovernorClient(
        await connect(settings.temporal_address, settings.temporal_namespace), settings.task_queue
    )
    if args.state != "status":
        change = SwitchChange(on=args.state == "on", by=who(args), reason=args.reason, playbook=args.playbook)
        await governor.set_switch(change)
    shown = switch_view(await governor.board())
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


def _breaker_lines(views: list[GovernorView], only: str | None) -> list[str]:
    lines = []
    shown = sorted((name, state) for view in views for name, state in view.state.playbooks.items())
    for name, state in shown:
        if only not in (None, name):
            continue
        status = "OPEN: writes need approval" if state.breaker_open else "closed"
        lines.append(f"{name}: breaker {status}; {state.ineffective_in_a_row} ineffective run(s) in a row")
    return lines or [f"{only or 'no playbook'}: breaker closed; no run has reported its effectiveness yet"]


async def breaker(args: argparse.Namespace, settings: Settings) -> int:
    governor = GovernorClient(
        await connect(settings.temporal_address, settings.temporal_namespace), settings.task_queue
    )
    if args.breaker_command == "reset":
        await governor.reset_breaker(args.playbook)
        print(f"breaker of {args.playbook} reset by {who(args)}: its writes no longer need approval for it")
    names = [args.playbook] if args.playbook else await governor.playbooks()
    for line in _breaker_lines([await governor.view(name) for name in names], args.playbook):
        print(line)
    return 0
