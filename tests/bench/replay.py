"""`remediate replay` over a fortnight of 50,000 alerts, against reading the same history alone, and its memory.

Writes two weeks of Alertmanager webhook messages as JSON Lines: 50,000 alerts over the shipped playbooks' alerts
(and some no playbook handles), each delivered by its group and sent again on the next tick as Alertmanager does,
each resolving 2 to 60 minutes later; a storm of 2,000 JobsStuck alerts in ten minutes on the second day. Then, each
as its own process on the same machine:

  baseline   reading and validating every line as a webhook message (the least any replay must do)
  replay     `remediate replay --file … --format json` in auto mode with the shipped playbooks: their cooldowns,
             hourly limits, storms and breakers, every write planned and counted

and prints the wall time of each, the ratio, alerts per second, and the peak memory (max RSS) of the replay of the
whole history against a replay of its first fifth: memory bounded means the two are close. Targets: under 60 s for
the fortnight; peak memory not growing with the history.

    .venv/bin/python -m tests.bench.replay [--alerts 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.replay.history import fingerprint
from tests.support.paths import ROOT
from tests.support.processes import REMEDIATE

KINDS = [  # alertname, the labels that vary, how often
    ("JobsStuck", {"queue": 40, "severity": 0}, 30),
    ("WorkflowStuck", {"namespace": 20}, 15),
    ("OrchestratorExecutionTimeout", {"execution_id": 5000, "dag_id": 30}, 15),
    ("WmsWorkflowStuck", {"workflow_id": 5000, "workflow_type": 12}, 10),
    ("FlovynWorkerHeartbeatStale", {"worker_name": 200}, 10),
    ("MaestroRunsStuck", {"cluster": 4}, 5),
    ("DiskFull", {"instance": 300}, 15),  # no playbook: listed as unhandled
]
BASELINE = """
import sys
from service.alerts.webhook import WebhookMessage
n = 0
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        n += len(WebhookMessage.model_validate_json(line).alerts)
print(n)
"""


def _labels(rng: random.Random, name: str, varying: dict[str, int]) -> dict[str, str]:
    labels = {"alertname": name, "severity": "critical", "playbook": name.lower()}
    for key, spread in varying.items():
        if spread:
            labels[key] = f"{key}-{rng.randrange(spread)}"
    labels["instance"] = f"i-{rng.randrange(10**9)}"
    return labels


def write_history(path: Path, alerts: int, seed: int = 7) -> int:
    """The history, streamed to disk in time order; returns how many lines (messages) it wrote."""
    rng, start = random.Random(seed), datetime(2026, 11, 1, tzinfo=UTC)
    weights = [k[2] for k in KINDS]
    span = timedelta(days=14).total_seconds()
    storm_at = 86_400 + 3_600.0
    starts = sorted(
        [rng.uniform(0, span) for _ in range(alerts - 2_000)] + [storm_at + rng.uniform(0, 600) for _ in range(2_000)]
    )
    events: list[tuple[float, str, dict[str, object]]] = []  # (sent at, status, alert)
    for at in starts:
        name, varying, _ = rng.choices(KINDS, weights)[0] if at < storm_at or at > storm_at + 600 else KINDS[0]
        labels = _labels(rng, name, varying)
        alert: dict[str, object] = {
            "labels": labels,
            "startsAt": (start + timedelta(seconds=at)).isoformat(),
            "fingerprint": fingerprint(labels),
        }
        ends = at + rng.uniform(120, 3_600)
        events += [(at + 10, "firing", alert), (at + 70, "firing", alert)]  # group_wait, then the next tick
        events.append((ends + 30, "resolved", {**alert, "endsAt": (start + timedelta(seconds=ends)).isoformat()}))
    events.sort(key=lambda e: e[0])
    with path.open("w", encoding="utf-8") as out:
        for sent, status, alert in events:
            received = (start + timedelta(seconds=sent)).isoformat()
            message = {
                "version": "4",
                "status": status,
                "alerts": [{**alert, "status": status}],
                "receivedAt": received,
            }
            out.write(json.dumps(message) + "\n")
    return len(events)


def timed(argv: list[str], out: Path) -> tuple[float, int, str]:
    """Wall seconds, this child's own peak RSS (kB, from wait4), and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    began = time.perf_counter()
    with out.open("w") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{argv[:3]} failed with {proc.returncode}")
    return elapsed, usage.ru_maxrss, out.read_text()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        small, whole = Path(tmp) / "fifth.jsonl", Path(tmp) / "whole.jsonl"
        write_history(small, args.alerts // 5)
        lines = write_history(whole, args.alerts)
        size = whole.stat().st_size / 1e6
        print(f"history: {args.alerts} alerts in {lines} messages over 14 days ({size:.0f} MB of JSON Lines)")
        output = Path(tmp) / "out"
        _, small_peak, _ = timed([REMEDIATE, "replay", "--file", str(small), "--format", "json"], output)
        base, _, counted = timed([sys.executable, "-c", BASELINE, str(whole)], output)
        took, peak, out = timed([REMEDIATE, "replay", "--file", str(whole), "--format", "json"], output)
    report = json.loads(out)
    acted = sum(p["outcomes"].get("acted", 0) for p in report["playbooks"])
    refused = sum(sum(p["refusals"].values()) for p in report["playbooks"])
    storms = sum(p["storms"] for p in report["playbooks"])
    print(f"baseline (read and validate every message): {base:.1f} s for {counted.strip()} alert deliveries")
    print(
        f"replay (auto, shipped playbooks, every rail): {took:.1f} s = {took / base:.1f}x the baseline, "
        f"{args.alerts / took:,.0f} alerts/s"
    )
    print(f"  {report['alerts']} alerts, {acted} runs would have acted, {refused} refused, {storms} storm(s)")
    print(f"peak memory: {small_peak / 1024:.0f} MB for the first fifth, {peak / 1024:.0f} MB for the whole history")
    print(f"target under 60 s: {'met' if took < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
