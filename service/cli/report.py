"""Plain-text rendering of runs for the command line: what was read, what is planned, what was done."""

from __future__ import annotations

import json

from pydantic import JsonValue

from service.runs.state import RunState, StepRecord

_MARK = {
    "ok": "✓",
    "failed": "✗",
    "skipped": "-",
    "planned": "•",
    "dry_run": "○",
    "not_run": " ",
    "pending": " ",
    "running": "…",
}


def _short(value: JsonValue, limit: int = 400) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_step(record: StepRecord) -> list[str]:
    lines = [
        f"  {_MARK.get(record.status, '?')} [{record.phase}] {record.id}: {record.action} "
        f"on {record.connection} — {record.status}" + (f" (approval: {record.approval})" if record.approval else "")
    ]
    if record.approval_decided:
        lines.append(f"      approval {record.approval_decided}")
    if record.params:
        lines.append(f"      with: {_short(record.params)}")
    if record.summary:
        lines.append(f"      {record.summary}")
    if record.effect == "write" and record.status in ("dry_run", "ok", "planned") and record.blast_radius:
        lines.append(f"      blast radius: {record.blast_radius}")
    if record.targets:
        shown = ", ".join(record.targets[:20]) + (
            f" … and {len(record.targets) - 20} more" if len(record.targets) > 20 else ""
        )
        lines.append(f"      targets ({len(record.targets)}): {shown}")
    if record.effect == "read" and record.result is not None:
        lines.append(f"      result: {_short(record.result)}")
    if record.error:
        lines.append(f"      error: {record.error}")
    return lines


def format_state(state: RunState) -> str:
    lines = [
        f"run {state.run_id}",
        f"  playbook {state.playbook} · alert {state.alertname} · fingerprint {state.fingerprint} · mode {state.mode}",
        f"  status: {state.status}" + (f" — {state.reason}" if state.reason else ""),
    ]
    if state.version is not None and state.version.sha256:
        lines.append(f"  playbook version: sha256 {state.version.sha256[:12]} from {state.version.file}")
    if state.resolved:
        lines.append("  the alert has resolved")
    if state.limit:
        lines.append(f"  policy: {state.limit}" + (f" — {state.caution}" if state.caution else ""))
    if state.silence:
        lines.append(f"  silence while fixing: {state.silence} (expired when the run ended)")
    if state.effectiveness:
        lines.append(f"  effectiveness: {state.effectiveness}")
    for record in state.steps:
        lines.extend(format_step(record))
    writes = [r for r in state.steps if r.effect == "write" and r.status in ("dry_run", "planned")]
    if state.dry_run and writes:
        lines.append(f"  planned writes (dry-run, nothing written): {len(writes)}")
    return "\n".join(lines)
