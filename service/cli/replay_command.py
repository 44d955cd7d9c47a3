"""`remediate replay`: history from a file, Prometheus or the audit trail, through the playbooks, offline."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.alerts.webhook import Alert, WebhookMessage, recorded_alert
from service.app import compose
from service.cli import dev as dev_stack
from service.cli import playbook_tests, replay_output
from service.cli.planning import local_executor
from service.cli.times import option_time
from service.config import Settings
from service.config_file import ConfigFile
from service.playbooks.loader import load_playbooks
from service.playbooks.playbook import Playbook
from service.replay.events import Assumptions
from service.replay.history import Delivered, from_lines
from service.replay.planning import CapsPlanner, EnginePlanner, Planner, reads_only
from service.replay.routing import Dispatcher, Route, flat_route, prometheus_duration, route_tree
from service.replay.runner import Replay
from service.replay.series import Intervals, Rule
from service.replay.tally import ReplayReport
from service.runs.audit import AuditQuery
from service.runs.state import Executor, RunInput
from service.stores.setup import ready_store
from service.targets.alert_history import AlertHistory
from service.vocabulary.errors import ConfigError
from service.vocabulary.modes import Mode

ROUTE_FILE = Path("deploy/alertmanager/alertmanager.yml")


def _route(args: argparse.Namespace) -> tuple[Route, str]:
    path = Path(args.alertmanager_config) if args.alertmanager_config else ROUTE_FILE
    if not path.is_file():
        if args.alertmanager_config:
            raise ConfigError(f"--alertmanager-config {path}: no such file")
        return flat_route(args.receiver), "no route file: every alert reaches the receiver, grouped by alertname"
    try:
        config = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return route_tree(config, str(path)), f"grouped as {path} routes to receiver {args.receiver!r}"


async def _file(path: Path) -> AsyncIterator[Delivered]:
    with path.open(encoding="utf-8") as lines:
        for delivered in from_lines(lines, str(path)):
            yield delivered


async def _prometheus(url: str, start: datetime, end: datetime) -> AsyncIterator[tuple[datetime, Alert]]:
    history = AlertHistory(url)
    try:
        rules = await history.rules()
        intervals = Intervals(
            lambda name: Rule(rules[name].interval, rules[name].annotations) if name in rules else Rule(),
            generator_url=url,
        )
        async for chunk in history.chunks(start, end):
            for change in intervals.feed(chunk.series, chunk.until.timestamp()):
                yield change
        for change in intervals.finish():
            yield change
    finally:
        await history.close()


async def _audit(settings: Settings, since: datetime | None) -> AsyncIterator[Delivered]:
    """Every occurrence the audit trail received, once (two playbooks' runs of one alert are one alert)."""
    store = await ready_store(settings)
    if store is None:
        raise ConfigError("--audit: REMEDIATE_DATABASE_URL is not set (and no `remediate dev` trail is attached)")
    seen: set[tuple[str, int]] = set()
    try:
        async for event in store.events(AuditQuery(since=since)):
            if event.key != "run/received" or event.at is None:
                continue
            labels = event.record.get("labels")
            named = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
            alert = recorded_alert(event.run_id, named)
            if alert.occurrence_key() in seen:
                continue
            seen.add(alert.occurrence_key())
            yield Delivered(event.at, WebhookMessage(version="4", status="firing", alerts=[alert]))
    finally:
        await store.close()


def _planner(args: argparse.Namespace, dirs: Iterable[Path], adapters: compose.Adapters | None) -> Planner:
    if adapters is not None:  # --reads live: read steps only; no write is sent, not even in its dry-run form
        execute = reads_only(local_executor(adapters.registry()))
        return EnginePlanner(lambda run: execute)
    if args.reads == "recorded":
        cases = playbook_tests.recorded_cases(list(dirs))

        def recorded(run: RunInput) -> Executor | None:
            case = cases.get(run.playbook.name)
            return playbook_tests.recording(case) if case is not None else None

        return EnginePlanner(recorded)
    return CapsPlanner()


async def _one(
    args: argparse.Namespace, settings: Settings, config: ConfigFile, dirs: list[Path], now: datetime
) -> ReplayReport:
    adapters = compose.Adapters.build(config) if args.reads == "live" else None
    try:
        return await _replayed(args, settings, config, dirs, now, adapters)
    finally:
        if adapters is not None:
            await adapters.close()


async def _replayed(
    args: argparse.Namespace,
    settings: Settings,
    config: ConfigFile,
    dirs: list[Path],
    now: datetime,
    adapters: compose.Adapters | None,
) -> ReplayReport:
    playbooks: list[Playbook] = load_playbooks(dirs, config.kinds())
    start = option_time(args.since, "since", now)
    end = option_time(args.until, "until", now) or (now if args.prometheus else None)
    assumptions = Assumptions(
        mode=Mode(args.mode),
        acting_for=prometheus_duration(args.acting_for, "--acting-for"),
        resolves_known=not args.audit,
    )
    source = args.file or args.prometheus or "the audit trail (which keeps no resolve times: the breaker is not fed)"
    heading = ReplayReport(
        source=source, mode=args.mode, reads=args.reads, acting_for_seconds=assumptions.acting_for.total_seconds()
    )
    planner = _planner(args, dirs, adapters)
    replay = Replay(playbooks, compose.governance(settings, config), planner, assumptions, heading)
    if args.prometheus:
        route, said = _route(args)
        print(
            f"replay: {source} from {(start or now).isoformat()} to {(end or now).isoformat()}; {said}", file=sys.stderr
        )
        return await replay.changes(
            _prometheus(args.prometheus, start or now, end or now), Dispatcher(route, args.receiver), end
        )
    history = _file(Path(args.file)) if args.file else _audit(settings, start)
    return await replay.messages(history, end)


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per Prometheus query would bury the report
    # As `remediate plan` chooses them (only `--reads live` reaches the connections).
    dirs, config = dev_stack.local_set(settings, list(args.playbooks or []))
    now = datetime.now(UTC)
    if args.compare:
        old, new = ([Path(d)] for d in args.compare)
        before = await _one(args, settings, config, old, now)
        after = await _one(args, settings, config, new, now)
        replay_output.write(replay_output.compared(before, after, args.format), args.output)
        return 0
    report = await _one(args, settings, config, dirs, now)
    replay_output.write(replay_output.rendered(report, args.format), args.output)
    if args.output:
        print(
            f"replay: {report.alerts} alert(s) in {report.messages} message(s); report in {args.output}",
            file=sys.stderr,
        )
    return 0
