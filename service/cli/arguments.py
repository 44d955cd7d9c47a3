"""The `remediate` command line's arguments: every verb and flag, with no import beyond argparse."""

from __future__ import annotations

import argparse
from importlib.metadata import version as package_version

DESCRIPTION = "The `remediate` command line: the composition root of the service."


def _adds_playbooks(command: argparse.ArgumentParser, to: str) -> None:
    """`--playbooks DIR`, repeatable, means the same in every command: a directory added to `to`."""
    command.add_argument("--playbooks", action="append", metavar="DIR", help=f"a playbook directory to add to {to}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediate", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"remediate {package_version('remediate')}")
    sub = parser.add_subparsers(dest="command", required=True)
    dev_p = sub.add_parser("dev", help="local Temporal dev server + worker + web, shipped playbooks, dry-run")
    _adds_playbooks(dev_p, "the shipped ones (repeat)")
    dev_p.add_argument(
        "--ephemeral",
        action="store_true",
        help="keep the dev server's history in memory (default: a file under $XDG_STATE_HOME/remediate)",
    )
    serve_p = sub.add_parser("serve", help="web + worker against configured services")
    only = serve_p.add_mutually_exclusive_group()
    only.add_argument("--web-only", action="store_true", help="only the webhook and the API (no worker)")
    only.add_argument("--worker-only", action="store_true", help="only the worker (and its health endpoints)")
    lint = sub.add_parser("lint", help="validate playbooks; file:line:col: message per problem")
    lint.add_argument("paths", nargs="*", help="playbook files or directories (default: REMEDIATE_PLAYBOOKS)")
    plan = sub.add_parser("plan", help="diagnose for real and print every planned write; never writes")
    plan.add_argument("--alert", required=True, help="a webhook message or a single alert (JSON)")
    _adds_playbooks(plan, "REMEDIATE_PLAYBOOKS (repeat)")
    test = sub.add_parser("test", help="run playbook tests offline: recorded reads in, the plan checked")
    test.add_argument(
        "paths",
        nargs="*",
        help="playbook directories (their tests/), tests/ directories or test files (default: REMEDIATE_PLAYBOOKS)",
    )
    _adds_playbooks(test, "each test file's own (the one holding its tests/); repeat")
    schema = sub.add_parser("schema", help="JSON Schema of the playbook format")
    schema.add_argument(
        "--actions-doc",
        metavar="FILE",
        help="instead, print FILE (docs/actions.md) with its action tables regenerated from the step models",
    )
    migrate = sub.add_parser(
        "migrate", help="create the idempotency ledger on a Postgres connection, or the audit store's tables"
    )
    migrate.add_argument(
        "connection", help="a postgres connection that sets `ledger:`, or `audit` for REMEDIATE_DATABASE_URL"
    )
    migrate.add_argument("--print-sql", action="store_true", help="print the SQL for a DBA instead of running it")
    for verdict in ("approve", "reject"):
        decide = sub.add_parser(verdict, help=f"{verdict} a run waiting at an approval gate")
        decide.add_argument("run_id", help="the run id, or its 8-hex-digit short id from `runs list`")
        decide.add_argument("--gate", default="act", help="which gate (default: act, the only one today)")
        decide.add_argument("--as", dest="as_user", help="approver id (default: $REMEDIATE_APPROVER, then $USER)")
        decide.add_argument("--comment", default="", help="a note kept with the decision")
    kill = sub.add_parser("kill-switch", help="stop every write that has not started, on every replica")
    kill.add_argument("state", choices=["on", "off", "status"], help="turn it on, off, or show who set it and why")
    kill.add_argument("--reason", default="", help="why; shown with the switch and in every refusal")
    kill.add_argument("--playbook", help="only this playbook (default: everything)")
    kill.add_argument("--as", dest="as_user", help="who flips it (default: $REMEDIATE_APPROVER, then $USER)")
    kill.add_argument("--json", action="store_true", help="print the switches as JSON")
    breaker = sub.add_parser("breaker", help="show or reset the breaker that ineffective runs open")
    breaker_sub = breaker.add_subparsers(dest="breaker_command", required=True)
    breaker_status = breaker_sub.add_parser("status", help="each playbook's breaker and its ineffective streak")
    breaker_status.add_argument("playbook", nargs="?", help="only this playbook")
    breaker_reset = breaker_sub.add_parser("reset", help="close the breaker: writes no longer need approval")
    breaker_reset.add_argument("playbook", help="the playbook whose breaker to close")
    breaker_reset.add_argument("--as", dest="as_user", help="who resets it (default: $REMEDIATE_APPROVER, $USER)")
    audit = sub.add_parser("audit", help="the audit trail: what runs did, beyond Temporal's retention")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    exported = audit_sub.add_parser("export", help="records as JSON Lines, oldest first")
    exported.add_argument("--since", help="from this time: a span (30m, 2h, 7d) or an ISO date/time")
    exported.add_argument("--playbook", help="only this playbook's runs")
    exported.add_argument("--output", "-o", help="write to this file (default: standard output)")
    _replay_arguments(sub)
    report = sub.add_parser("report", help="reports built from the audit trail")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    promotion = report_sub.add_parser(
        "promotion", help="a playbook's shadow runs as evidence: is it ready for the next mode (never promotes)"
    )
    promotion.add_argument("playbook", help="the playbook to report on")
    promotion.add_argument(
        "--since", default="14d", help="from this time: a span (7d, 14d) or an ISO date (default 14d)"
    )
    promotion.add_argument("--json", action="store_true", help="print the report as JSON")
    runs = sub.add_parser("runs", help="list and show runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list", help="the newest runs first, with their final status")
    runs_list.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    runs_list.add_argument("--playbook", help="only runs of this playbook")
    runs_list.add_argument(
        "--status", help="only runs that ended so (succeeded, failed, blocked_by_policy, …) or are running"
    )
    runs_list.add_argument("--alert", help="only runs for this alertname")
    runs_list.add_argument("--since", help="only runs started since: a span (30m, 2h, 7d) or an ISO date/time")
    runs_list.add_argument(
        "--stuck",
        action="store_true",
        help="only open runs whose workflow tasks keep failing or timing out, with what Temporal reports",
    )
    show = runs_sub.add_parser("show", help="the full record of one run")
    show.add_argument("run_id", help="the run id, or its 8-hex-digit short id from `runs list`, or a unique prefix")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    return parser


def _replay_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="feed alert history through the playbooks and rails offline: what would they have done"
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="webhook messages as JSON Lines, oldest first (`receivedAt` per line, optional)")
    source.add_argument("--prometheus", metavar="URL", help="rebuild firing intervals from this Prometheus' ALERTS")
    source.add_argument("--audit", action="store_true", help="the alerts the audit trail received")
    replay.add_argument("--since", help="from this time: a span (2h, 14d) or an ISO date/time (default: all it has)")
    replay.add_argument("--until", help="up to this time (default: now for Prometheus, the last message otherwise)")
    replay.add_argument(
        "--alertmanager-config",
        metavar="FILE",
        help="group --prometheus alerts as this file routes them (default: deploy/alertmanager/alertmanager.yml)",
    )
    replay.add_argument("--receiver", default="remediate", help="remediate's receiver in that file (default remediate)")
    replay.add_argument(
        "--mode",
        choices=["dry-run", "shadow", "approve", "auto"],
        default="auto",
        help="the mode every playbook is replayed in, its own set aside unless off (default auto)",
    )
    replay.add_argument(
        "--reads",
        choices=["skip", "recorded", "live"],
        default="skip",
        help="skip: writes bounded by their caps (default); recorded: each playbook's test recordings; "
        "live: read steps only, against the configured connections (no write is sent, not even as a dry run)",
    )
    replay.add_argument("--acting-for", default="1m", help="how long a run that writes holds its slot (default 1m)")
    replay.add_argument("--format", choices=["table", "json", "html"], default="table", help="default: table")
    replay.add_argument("--output", "-o", help="write the report to this file (default: standard output)")
    replay.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD_DIR", "NEW_DIR"),
        help="replay the same history through two playbook directories and print what changed",
    )
    _adds_playbooks(replay, "the shipped ones, or REMEDIATE_PLAYBOOKS (repeat)")
