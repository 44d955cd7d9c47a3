"""`remediate replay` as a process against a real Prometheus holding `ALERTS` history (promtool's backfill): the
report derived by hand from the history, the same history through two playbook versions, and the HTML page."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.processes import REMEDIATE
from tests.support.servers import Prometheus, need, start_prometheus

EVERY = 15  # seconds between the rule's evaluations (its group's interval)
PLAYBOOK = """
name: requeue
runbook: https://runbooks.example/jobs
match: {alertname: JobsStuck}
act:
  - id: poke
    action: http.request
    connection: remediate
    approval: none
    with: {method: POST, path: "/poke/{{ alert.labels.queue }}"}
limits:
  cooldown: COOLDOWN
  cooldown_key: "{{ alert.labels.queue }}"
  storm: {occurrences: 3, within: 5m}
"""
RULES = f"""
groups:
  - name: history
    interval: {EVERY}s
    rules:
      - alert: JobsStuck
        expr: vector(0) > 1
        annotations: {{runbook_url: "https://runbooks.example/jobs"}}
      - alert: JobsStuckForAnHour
        expr: vector(0) > 1
        annotations: {{runbook_url: "https://runbooks.example/jobs"}}
      - alert: DiskFull
        expr: vector(0) > 1
        annotations: {{runbook_url: "https://runbooks.example/disk", summary: "{{{{ $labels.instance }}}}"}}
"""


@dataclass(frozen=True)
class Fired:
    minute: float
    labels: dict[str, str]


# Minutes from the history's start. The shipped route sends alerts with a `playbook` label to remediate, grouped
# by alertname: the first message 10s after the first alert, later ones on the 1m ticks after it (x:10).
HISTORY = [
    Fired(0, {"queue": "q1", "instance": "a"}),  # delivered 0:10, q1 writes
    Fired(3, {"queue": "q1", "instance": "b"}),  # 3:10, q1 wrote 3m before: cooldown
    Fired(3.5, {"queue": "q2", "instance": "c"}),  # 4:10, q2 writes
    Fired(12, {"queue": "q1", "instance": "d"}),  # 12:10, q1 wrote 12m before: writes
    Fired(14, {"queue": "q1", "instance": "e"}),  # 14:10, q1 wrote 2m before: cooldown
    Fired(30, {"queue": "q3", "instance": "f"}),  # 30:10 writes (one occurrence within 5m)
    Fired(30.25, {"queue": "q4", "instance": "g"}),  # all three at 31:10: the 2nd, 3rd occurrence write …
    Fired(30.5, {"queue": "q5", "instance": "h"}),
    Fired(30.75, {"queue": "q6", "instance": "i"}),  # … the 4th within 5m starts a storm: it writes with a person
]
UNROUTED = Fired(40, {"queue": "q9", "instance": "x"})  # no `playbook` label: the route never sends it
UNHANDLED = Fired(45, {"instance": "disk1"})  # DiskFull reaches remediate; no playbook matches it
MISSED = Fired(50, {"queue": "q1", "instance": "y"})  # its rule names requeue's runbook; requeue's match misses it


def _series(start: datetime) -> str:
    """OpenMetrics for promtool: each alert firing for two minutes, sampled at every evaluation."""
    samples: list[tuple[float, str]] = []
    alerts = [("JobsStuck", {**f.labels, "playbook": "requeue"}, f.minute) for f in HISTORY]
    alerts += [
        ("JobsStuck", UNROUTED.labels, UNROUTED.minute),
        ("DiskFull", {**UNHANDLED.labels, "playbook": "disk"}, UNHANDLED.minute),
        ("JobsStuckForAnHour", {**MISSED.labels, "playbook": "requeue"}, MISSED.minute),
    ]
    for name, labels, minute in alerts:
        shown = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "alertname": name, "alertstate": "firing"}.items()))
        first = start.timestamp() + minute * 60
        samples += [(first + s, f"ALERTS{{{shown}}} 1 {first + s:.0f}") for s in range(0, 121, EVERY)]
    return "# TYPE ALERTS gauge\n" + "\n".join(line for _, line in sorted(samples)) + "\n# EOF\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, datetime]]:
    """A Prometheus whose TSDB holds the history, backfilled before it starts, with the rules that made it."""
    root = tmp_path_factory.mktemp("replay-prometheus")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    (root / "alerts.om").write_text(_series(start))
    (root / "rules.yml").write_text(RULES)
    done = subprocess.run(
        [need("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(root / "alerts.om"), str(root / "data")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    prometheus = start_prometheus(root, rule_files=[root / "rules.yml"])
    yield prometheus, start
    prometheus.process.stop()


def _replay(args: list[str], playbooks: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    env["REMEDIATE_PLAYBOOKS"] = str(playbooks)
    done = subprocess.run(
        [REMEDIATE, "replay", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _playbooks(where: Path, cooldown: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "requeue.yaml").write_text(PLAYBOOK.replace("COOLDOWN", cooldown))
    return where


def test_a_replay_of_prometheus_history_lands_each_refusal_where_the_clock_says(
    history: tuple[Prometheus, datetime], tmp_path: Path
) -> None:
    """Rebuilt from ALERTS and grouped as deploy/alertmanager/alertmanager.yml routes them: 9 occurrences, 7
    writes, the two cooldown refusals and the one storm the comments above derive; the unrouted and the unhandled
    alerts are named, and the one whose rule names the playbook's own runbook is flagged as missed by its match."""
    prometheus, start = history
    out = _replay(["--prometheus", prometheus.url, "--since", "5h", "--format", "json"], _playbooks(tmp_path, "10m"))
    report = json.loads(out)
    [requeue] = report["playbooks"]
    assert requeue["occurrences"] == 9
    assert requeue["outcomes"] == {"acted": 7, "refused": 2}
    assert requeue["refusals"] == {"cooldown": 2} and requeue["storms"] == 1 and requeue["approvals"] == {"storm": 1}
    assert report["not_routed"] == {"requeue": 1}
    disk = {"alertname": "DiskFull", "alerts": 1, "runbook_url": "https://runbooks.example/disk", "automated_by": []}
    missed = {"alertname": "JobsStuckForAnHour", "alerts": 1, "runbook_url": "https://runbooks.example/jobs"}
    assert report["unmatched"] == [disk, {**missed, "automated_by": ["requeue"]}]  # its match misses this one
    first = datetime.fromisoformat(report["first"])
    assert first == start + timedelta(seconds=10)  # group_wait after the first alert


def test_compare_shows_what_a_playbook_change_would_have_changed_and_the_page_draws_it(
    history: tuple[Prometheus, datetime], tmp_path: Path
) -> None:
    """A 1m cooldown instead of 10m: the two refusals become writes; the HTML page holds one timeline per
    playbook."""
    prometheus, _ = history
    old, new = _playbooks(tmp_path / "old", "10m"), _playbooks(tmp_path / "new", "1m")
    out = _replay(["--prometheus", prometheus.url, "--since", "5h", "--compare", str(old), str(new)], old)
    assert "requeue: acted 7 → 9, writes 7 → 9, refused 2 → 0" in out
    _replay(["--prometheus", prometheus.url, "--since", "5h", "--format", "html", "-o", str(tmp_path / "r.html")], old)
    page = (tmp_path / "r.html").read_text()
    assert '<svg viewBox="0 0 720 80" role="img" aria-label="timeline of requeue">' in page
    assert page.count('<rect class="refused"') >= 1
