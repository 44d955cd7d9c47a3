"""A replay's report as a table, JSON or a small HTML page with a timeline per playbook; and two replays compared."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from service.replay.tally import PlaybookReport, ReplayReport
from service.vocabulary.durations import written
from service.vocabulary.errors import ConfigError

WIDTH, HEIGHT = 720, 80  # the timeline's drawing box, in SVG units (it scales to the page)


def _when(report: ReplayReport) -> str:
    if report.first is None or report.last is None:
        return "no messages"
    return f"{report.first:%Y-%m-%d %H:%M} → {report.last:%Y-%m-%d %H:%M} UTC"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"


def heading(report: ReplayReport) -> str:
    acting = written_seconds(report.acting_for_seconds)
    return (
        f"replay of {report.source}: {_when(report)}\n"
        f"mode {report.mode} (each playbook's own mode set aside, except off); reads {report.reads}; "
        f"a run that writes is taken to hold its slot for {acting}\n"
        f"{report.alerts} alert(s) in {report.messages} message(s)"
    )


def written_seconds(seconds: float) -> str:
    return written(timedelta(seconds=seconds))


def table(report: ReplayReport) -> str:
    lines = [heading(report), ""]
    columns = (
        "playbook",
        "occurrences",
        "duplicates",
        "acted",
        "refused",
        "writes",
        "targets≤",
        "approvals",
        "storms",
        "breaker",
        "busiest hour",
    )
    rows = [columns]
    for p in report.playbooks:
        busiest = f"{p.busiest_hour.start:%m-%d %H:00} ({p.busiest_hour.occurrences})" if p.busiest_hour else "-"
        rows.append(
            (
                p.name,
                str(p.occurrences),
                str(p.duplicates),
                str(p.outcomes.get("acted", 0)),
                str(sum(p.refusals.values())),
                str(p.writes_planned),
                str(p.targets_bound),
                str(sum(p.approvals.values())),
                str(p.storms),
                str(p.breaker_trips),
                busiest,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        playbook = report.playbooks[index - 1] if index else None
        if playbook is not None:
            lines.extend(_details(playbook))
    lines.extend(_fell_through(report))
    return "\n".join(lines) + "\n"


def _details(p: PlaybookReport) -> list[str]:
    found = []
    if p.refusals:
        found.append(f"    refused by: {_counts(p.refusals)}")
    if p.approvals:
        found.append(f"    a person asked ({_counts(p.approvals)})")
    others = {k: v for k, v in p.outcomes.items() if k not in ("acted", "refused")}
    if others:
        found.append(f"    other runs: {_counts(others)}")
    if p.waited_seconds:
        found.append(f"    waited for a turn: {p.waited_seconds / 3600:.1f} h in all")
    return found


def _fell_through(report: ReplayReport) -> list[str]:
    lines = []
    if report.unmatched:
        lines += ["", "reached remediate, matched by no playbook:"]
        lines += [
            f"  {u.alertname}: {u.alerts} alert(s)"
            + (f" — its runbook: {u.runbook_url}" if u.runbook_url else "")
            + (f", which {', '.join(u.automated_by)} automates: check its match" if u.automated_by else "")
            for u in report.unmatched
        ]
    if report.overlaps:
        lines += ["", "matched by two or more playbooks (each starts its own run):"]
        lines += [f"  {o.alertname}: {', '.join(o.playbooks)} — {o.alerts} alert(s)" for o in report.overlaps]
    if report.not_routed:
        lines += ["", "matched by a playbook but never routed to remediate:"]
        lines += [f"  {name}: {count} alert(s)" for name, count in sorted(report.not_routed.items())]
    return lines


@dataclass(frozen=True)
class _Bar:
    x: float
    width: float
    acted: float
    refused: float
    title: str


def _bars(p: PlaybookReport, report: ReplayReport) -> list[_Bar]:
    if report.first is None or report.last is None or not p.timeline:
        return []
    first = int(report.first.timestamp()) // 3600
    hours = max(1, int(report.last.timestamp()) // 3600 - first + 1)
    tallest = max(max(h.acted + h.refused for h in p.timeline), 1)
    width = WIDTH / hours
    return [
        _Bar(
            x=(int(h.start.timestamp()) // 3600 - first) * width,
            width=max(width * 0.9, 0.5),
            acted=HEIGHT * h.acted / tallest,
            refused=HEIGHT * h.refused / tallest,
            title=f"{h.start:%Y-%m-%d %H:00}: {h.occurrences} occurrence(s), {h.acted} acted, {h.refused} refused",
        )
        for h in p.timeline
    ]


def page(report: ReplayReport) -> str:
    env = Environment(loader=PackageLoader("service.cli", "templates"), autoescape=select_autoescape(default=True))
    return env.get_template("replay.html").render(
        report=report,
        heading=heading(report),
        table=table(report),
        timelines=[(p, _bars(p, report)) for p in report.playbooks],
        width=WIDTH,
        height=HEIGHT,
    )


def rendered(report: ReplayReport, form: str) -> str:
    if form == "json":
        return report.model_dump_json(indent=2) + "\n"
    if form == "html":
        return page(report)
    return table(report)


def _totals(p: PlaybookReport | None) -> dict[str, int]:
    if p is None:
        return {"occurrences": 0, "acted": 0, "writes": 0, "refused": 0, "approvals": 0}
    return {
        "occurrences": p.occurrences,
        "acted": p.outcomes.get("acted", 0),
        "writes": p.writes_planned,
        "refused": sum(p.refusals.values()),
        "approvals": sum(p.approvals.values()),
    }


def compared(before: ReplayReport, after: ReplayReport, form: str) -> str:
    """The same history through two versions of the playbooks: what changed, per playbook."""
    old = {p.name: p for p in before.playbooks}
    new = {p.name: p for p in after.playbooks}
    changes = [
        (name, was, now)
        for name in sorted(old.keys() | new.keys())
        if (was := _totals(old.get(name))) != (now := _totals(new.get(name)))
    ]
    if form == "json":
        listed = [{"playbook": name, "before": was, "after": now} for name, was, now in changes]
        both = {"before": before.model_dump(mode="json"), "after": after.model_dump(mode="json")}
        return json.dumps({"changes": listed, **both}, indent=2) + "\n"
    lines = [heading(after), ""]
    if not changes:
        return "\n".join([*lines, "no difference: both versions would have done the same"]) + "\n"
    for name, was, now in changes:
        parts = [f"{key} {was[key]} → {now[key]}" for key in was if was[key] != now[key]]
        lines.append(f"{name}: {', '.join(parts)}")
    return "\n".join(lines) + "\n"


def write(text: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {output}: {exc}") from exc
