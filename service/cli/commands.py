"""The `remediate` verbs that load playbooks or reach the service's stores: imported only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC
from pathlib import Path

from pydantic import SecretStr

from service.app import compose, process
from service.app.error_reporting import guard_secrets
from service.cli import audit_commands, planning, playbook_tests, test_files
from service.cli import dev as dev_stack
from service.cli.report import format_state
from service.cli.times import option_time
from service.config import Settings
from service.config_file import load_config_file
from service.playbooks import action_docs
from service.playbooks.loader import load_playbooks
from service.playbooks.playbook import Playbook, playbook_schema
from service.playbooks.systems.postgres import PostgresConnection
from service.runs.listing import RunQuery
from service.stores.setup import ready_store
from service.targets.postgres.adapter import PostgresAdapter
from service.targets.postgres.ledger import ledger_sql
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision
from service.vocabulary.errors import ConfigError, PlaybookError
from service.vocabulary.operator import who


async def lint(args: argparse.Namespace, settings: Settings) -> int:
    config = load_config_file(settings.config)
    kinds = config.kinds() if settings.config is not None else None
    if kinds is None:
        print("note: no REMEDIATE_CONFIG, so connection names are not checked", file=sys.stderr)
    try:
        playbooks = load_playbooks([Path(p) for p in args.paths] or settings.playbook_dirs(), kinds)
    except PlaybookError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    if kinds is not None:
        ledgers = [n for n, c in config.connections.items() if isinstance(c, PostgresConnection) and c.ledger]
        for playbook in playbooks:
            for phase, step in playbook.steps():
                if phase == "act" and not step.retries_safely(ledgers):
                    why = (
                        f"connection {step.connection} has no ledger (set `ledger:`, then `remediate migrate "
                        f"{step.connection}`)"
                        if step.connection_type == "postgres"
                        else "the request is not marked `idempotent: true`"
                    )
                    print(f"note: {playbook.name}: step {step.id} is sent at most once after a lost worker: {why}")
    print(f"{len(playbooks)} playbook(s) OK")
    return 0


async def test(args: argparse.Namespace, settings: Settings) -> int:
    extra = [Path(p) for p in args.playbooks or []]  # added to each test file's own playbook directory
    given = [Path(p) for p in args.paths] or settings.playbook_dirs()
    found = [f for p in given for f in test_files.tests_in(p)]
    if not found:
        where = ", ".join(str(test_files.where_tests_are(p)) for p in given)
        print(f"no playbook tests found in {where} (give a playbook directory: remediate test DIR)", file=sys.stderr)
        return 1
    loaded: dict[tuple[Path, ...], list[Playbook]] = {}
    failed = passed = 0
    began = time.perf_counter()
    for path in found:
        own = test_files.playbooks_of(path)  # a file outside a tests/ folder: the configured playbooks
        dirs = tuple(dict.fromkeys(d.resolve() for d in ([own] if own else settings.playbook_dirs()) + extra))
        if dirs not in loaded:
            loaded[dirs] = load_playbooks(list(dirs))
        try:
            outcomes = await playbook_tests.run_file(path, loaded[dirs])
        except ValueError as exc:
            print(f"ERROR {exc}")
            failed += 1
            continue
        for outcome in outcomes:
            if outcome.failures:
                failed += 1
                print(f"FAIL {path}: {outcome.playbook}: {outcome.case}")
                for failure in outcome.failures:
                    print(f"     {failure}")
            else:
                passed += 1
                print(f"ok   {path}: {outcome.playbook}: {outcome.case}")
    print(f"{passed} passed, {failed} failed in {(time.perf_counter() - began) * 1000:.0f} ms")
    return 1 if failed else 0


async def schema(args: argparse.Namespace, settings: Settings) -> int:
    if args.actions_doc:
        try:
            text = await asyncio.to_thread(Path(args.actions_doc).read_text, encoding="utf-8")
            print(action_docs.refresh(text), end="")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.actions_doc}: {exc}") from exc
        return 0
    print(json.dumps(playbook_schema(), indent=2, sort_keys=True))
    return 0


async def plan(args: argparse.Namespace, settings: Settings) -> int:
    if settings.config is None:
        # As `remediate dev` does: the embedded connections the shipped playbooks name, so a plan always runs.
        print("note: no REMEDIATE_CONFIG: planning against the dev connections (`remediate dev`)", file=sys.stderr)
    dirs, config = dev_stack.local_set(settings, list(args.playbooks or []))  # --playbooks adds, as everywhere
    playbooks = load_playbooks(dirs, config.kinds())
    return await planning.plan(Path(args.alert), playbooks, compose.Adapters.build(config), config)


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.connection == "audit":
        return await audit_commands.migrate(args, settings)
    config = load_config_file(settings.config)
    conn = config.connections.get(args.connection)
    if not isinstance(conn, PostgresConnection):
        raise ConfigError(f"{args.connection!r} is not a postgres connection in {settings.config or 'no config file'}")
    if conn.ledger is None:
        raise ConfigError(f"connection {args.connection!r} sets no `ledger:` (for example ledger: remediate.ledger)")
    if args.print_sql:
        print(ledger_sql(conn.ledger), end="")
        return 0
    adapters = compose.Adapters.build(config)
    try:
        await adapters.get(PostgresAdapter).migrate(args.connection)
    finally:
        await adapters.close()
    print(f"ledger {conn.ledger} is ready on {args.connection}: its writes are now retried safely after a lost worker")
    return 0


def _with_dev_trail(settings: Settings) -> Settings:
    """No audit store configured, and `remediate dev` runs on this Temporal address: read the trail it keeps, so
    `runs list` and `audit export` after `remediate dev` need nothing set."""
    trail = None if settings.database_url is not None else dev_stack.attached_trail(settings.temporal_address)
    if trail is None:
        return settings
    print(f"note: no REMEDIATE_DATABASE_URL: reading the audit trail of `remediate dev` ({trail})", file=sys.stderr)
    return settings.model_copy(update={"database_url": SecretStr(trail)})


async def runs(args: argparse.Namespace, settings: Settings) -> int:
    async with audit_commands.runs_reader(_with_dev_trail(settings)) as runs:
        return await _show_runs(args, runs)


async def audit(args: argparse.Namespace, settings: Settings) -> int:
    return await audit_commands.export(args, _with_dev_trail(settings), option_time(args.since))


async def _show_runs(args: argparse.Namespace, runs: TemporalRuns) -> int:
    if args.runs_command == "list":
        if args.stuck:
            listed = await runs.stuck(args.limit)
        else:
            query = RunQuery(args.limit, args.playbook, args.status, args.alert, option_time(args.since))
            listed = (await runs.list(query)).runs
        if not listed:
            filtered = args.playbook or args.status or args.alert or args.since
            print("no stuck runs" if args.stuck else "no runs match" if filtered else "no runs")
            return 0
        # Columns as wide as their longest value (playbook names go up to 63 characters), so rows stay aligned.
        pw = max(len("PLAYBOOK"), *(len(r.playbook) for r in listed))
        aw = max(len("ALERT"), *(len(r.alertname) for r in listed))
        print(f"{'STARTED (UTC)':<19}  {'ID':<8}  {'STATUS':<22} {'PLAYBOOK':<{pw}} {'ALERT':<{aw}} {'MODE':<8} RUN")
        for r in listed:
            started = r.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
            columns = f"{started:<19}  {r.short_id:<8}  {r.shown_status:<22} {r.playbook:<{pw}} {r.alertname:<{aw}}"
            print(f"{columns} {r.mode:<8} {r.run_id}" + (f"  ({r.execution})" if args.stuck else ""))
        return 0
    run_id = await runs.resolve_id(args.run_id)
    state = await runs.state(run_id)
    if state is None:
        print(f"no run {run_id} (or it did not complete normally)", file=sys.stderr)
        return 1
    print(state.model_dump_json(indent=2) if args.json else format_state(state))
    return 0


async def decide(args: argparse.Namespace, settings: Settings) -> int:
    async with audit_commands.runs_reader(_with_dev_trail(settings)) as runs:
        return await _send_decision(args, runs)


async def _send_decision(args: argparse.Namespace, runs: TemporalRuns) -> int:
    user = who(args.as_user)
    decision = Decision(
        gate=args.gate,
        verdict="approve" if args.command == "approve" else "reject",
        user=user,
        source="cli",
        comment=args.comment,
        decision_id=f"cli:{uuid.uuid4()}",
    )
    run_id = await runs.resolve_id(args.run_id)
    await runs.decide(run_id, decision)
    record = await runs.decision(run_id, decision.decision_id, within=5.0)
    if record is None:
        print(f"{args.command} sent for {run_id}; the run has not processed it yet")
        return 0
    print(f"{args.command} by {user}: {record.outcome}" + (f" ({record.reason})" if record.reason else ""))
    return 0 if record.outcome in ("counted", "duplicate") else 1


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    config = load_config_file(settings.config)
    playbooks = compose.load_catalog(settings, config)
    host, port = settings.listen_host_port
    shape = "web only" if args.web_only else "worker only" if args.worker_only else "web + worker"
    _say(
        settings,
        f"remediate serve ({shape}): {len(playbooks.playbooks)} playbook(s), mode ceiling {settings.mode}, "
        f"Temporal {settings.temporal_address}/{settings.temporal_namespace}, listening on {host}:{port}",
    )
    notifiers = compose.Notifiers()  # each notifier's own settings, from the environment
    secrets = guard_secrets(settings, config, notifiers.secrets())
    audit = await ready_store(settings)  # a store that is down or not migrated stops start-up, with the reason
    try:
        await process.serve(
            settings,
            playbooks,
            compose.Adapters.build(config),
            web=not args.worker_only,
            worker=not args.web_only,
            stop=_stop_on_signals(settings.shutdown_grace),
            audit=audit,
            secrets=secrets,
            notifiers=notifiers,
        )
    finally:
        if audit is not None:
            await audit.close()
    _say(settings, "remediate serve: stopped")
    return 0


def _say(settings: Settings, line: str) -> None:
    """A lifecycle line: printed for people, or one more JSON log line when the log is for machines."""
    if settings.log_format == "json":
        logging.getLogger("remediate").info(line)
    else:
        print(line, flush=True)


STOP_MARGIN = 15.0  # after the run worker's grace: the budget handed back (5 s) and the rails workers' stop (5 s)


def _exit_after_drain(bound: float) -> None:
    logging.getLogger("remediate").warning(
        "stopping: not drained within %.0fs (is Temporal reachable?); exiting, in-flight work is retried elsewhere",
        bound,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stop_on_signals(grace: float) -> asyncio.Event:
    """SIGTERM or SIGINT asks for a graceful stop; a second one stops at once."""
    stop = asyncio.Event()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
            return
        logging.getLogger("remediate").info("stopping: draining work in flight (up to %.0fs)", grace)
        stop.set()
        # Outside the event loop, so nothing in it can hold the exit: with Temporal gone too, the SDK's own
        # shutdown never returns, and a stop must still end the process (what was in flight is retried elsewhere).
        watchdog = threading.Timer(grace + STOP_MARGIN, _exit_after_drain, args=(grace + STOP_MARGIN,))
        watchdog.daemon = True
        watchdog.start()

    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
    return stop


async def dev(args: argparse.Namespace, settings: Settings) -> int:
    return await dev_stack.run(args, settings, _stop_on_signals(settings.shutdown_grace))
