"""`remediate report promotion`: a playbook's shadow runs from the audit trail, and the verdict they support."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from service.app import compose
from service.cli import dev as dev_stack
from service.cli.times import option_time
from service.config import Settings
from service.playbooks.loader import load_playbooks
from service.replay.promotion import Promotion, promotion
from service.runs.listing import RunQuery
from service.runs.state import RunState
from service.stores.setup import ready_store
from service.vocabulary.errors import ConfigError

PAGE = 500


def text(p: Promotion) -> str:
    lines = [f"promotion report for {p.playbook}", f"verdict: {p.verdict}", ""]
    lines += [f"  - {reason}" for reason in p.reasons]
    if p.verdicts:
        lines.append("  watches: " + ", ".join(f"{k} {v}" for k, v in sorted(p.verdicts.items())))
    if p.cleared_median_seconds is not None:
        lines.append(f"  median time until the alert cleared: {p.cleared_median_seconds:.0f}s")
    lines += ["", "remediate never promotes by itself: a reviewed change to the playbook's `mode:` does."]
    return "\n".join(lines)


async def report(args: argparse.Namespace, settings: Settings) -> int:
    since = option_time(args.since) or datetime.now(UTC)
    dirs, config = dev_stack.local_set(settings, [])
    playbook = next((p for p in load_playbooks(dirs, config.kinds()) if p.name == args.playbook), None)
    if playbook is None:
        raise ConfigError(f"no playbook named {args.playbook!r} in {', '.join(str(d) for d in dirs)}")
    store = await ready_store(settings)
    if store is None:
        raise ConfigError("REMEDIATE_DATABASE_URL is not set: the report reads the audit trail's shadow runs")
    states: list[RunState] = []
    try:
        query = RunQuery(limit=PAGE, playbook=playbook.name, since=since)
        while True:
            page = await store.runs(query)
            states += [listed.state for listed in page]
            if len(page) < PAGE:
                break
            query = RunQuery(limit=PAGE, playbook=playbook.name, since=since, before=page[-1].cursor)
    finally:
        await store.close()
    found = await promotion(playbook, compose.governance(settings, config), states, since)
    print(found.model_dump_json(indent=2) if args.json else text(found))
    return 0
