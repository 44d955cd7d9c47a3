"""`remediate replay --file` as a process, with each kind of reads: skipped (the caps bound the writes), the
playbook tests' recordings, and live reads against a real Postgres that replay never writes to."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from service.replay.history import fingerprint
from tests.support.jobs import job_states, seed_jobs
from tests.support.paths import DATA, ROOT
from tests.support.processes import REMEDIATE

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _history(path: Path) -> Path:
    """Three JobsStuck alerts on q1 fifteen minutes apart (each past the 10m cooldown), one message per line."""
    lines = []
    for i in range(3):
        labels = {"alertname": "JobsStuck", "queue": "q1", "severity": "critical", "n": str(i)}
        starts = (T0 + timedelta(minutes=15 * i)).isoformat()
        alert = {"status": "firing", "labels": labels, "startsAt": starts, "fingerprint": fingerprint(labels)}
        lines.append(json.dumps({"version": "4", "status": "firing", "alerts": [alert]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _replay(args: list[str], extra: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    done = subprocess.run(
        [REMEDIATE, "replay", "--format", "json", *args],
        cwd=ROOT,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _stuck_jobs(report: dict[str, object]) -> dict[str, object]:
    playbooks = report["playbooks"]
    assert isinstance(playbooks, list)
    [found] = [p for p in playbooks if p["name"] == "stuck-jobs"]
    return dict(found)


def test_reads_skipped_bound_the_writes_by_their_caps_and_recorded_reads_count_the_recorded_targets(
    tmp_path: Path,
) -> None:
    """With no reads, each requeue is bounded by its max_rows (50); with the tests' recordings, by the two rows
    the first case that writes records. The shipped playbooks, as `remediate dev` has them."""
    history = str(_history(tmp_path / "h.jsonl"))
    skipped = _stuck_jobs(_replay(["--file", history], {}))
    assert skipped["outcomes"] == {"acted": 3} and skipped["targets_bound"] == 150
    recorded = _stuck_jobs(_replay(["--file", history, "--reads", "recorded"], {}))
    assert recorded["outcomes"] == {"acted": 3} and recorded["targets_bound"] == 6


def test_live_reads_find_the_real_targets_and_write_nothing(jobs_db: str, tmp_path: Path) -> None:
    """`--reads live` diagnoses against the real jobs database (the two stuck rows make each run plan its requeue)
    and sends no write, not even its rolled-back dry run: an UPDATE lists no targets, so its cap bounds it (3 x 50,
    where a dry run would have counted 2 rows each), and the rows are still stuck afterwards; with nothing stuck,
    no run would have written."""
    seed_jobs(jobs_db, stuck=[1, 2], fresh=[3])
    before = job_states(jobs_db)
    extra = {
        "REMEDIATE_CONFIG": str(DATA / "jobs-config.yaml"),
        "REMEDIATE_PLAYBOOKS": str(DATA / "playbooks"),
        "JOBS_DB_DSN": jobs_db,
    }
    live = _stuck_jobs(_replay(["--file", str(_history(tmp_path / "h.jsonl")), "--reads", "live"], extra))
    assert live["outcomes"] == {"acted": 3} and live["targets_bound"] == 150
    assert job_states(jobs_db) == before
    with psycopg.connect(jobs_db, autocommit=True) as db:  # nothing stuck now: the live diagnosis finds nothing
        db.execute("update jobs set updated_at = now()")
    idle = _stuck_jobs(_replay(["--file", str(tmp_path / "h.jsonl"), "--reads", "live"], extra))
    assert idle["outcomes"] == {"read_only": 3} and idle["writes_planned"] == 0
