"""`remediate breaker`: each playbook's breaker, read from and reset at its governor shard."""

from __future__ import annotations

import argparse

from service.config import Settings
from service.rails.governance import GovernorView
from service.temporal.governor.client import GovernorClient
from service.temporal.rpc import connect
from service.vocabulary.operator import who


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
        print(f"breaker of {args.playbook} reset by {who(args.as_user)}: its writes no longer need approval for it")
    names = [args.playbook] if args.playbook else await governor.playbooks()
    for line in _breaker_lines([await governor.view(name) for name in names], args.playbook):
        print(line)
    return 0
