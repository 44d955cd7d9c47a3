"""`remediate plan` diagnoses for real, prints every planned write with its blast radius, and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.cli.main import main
from tests.support.jobs import job_states, new_database, seed_jobs, update_counts
from tests.support.paths import DATA, ROOT
from tests.support.pipeline import connections_config
from tests.support.processes import REMEDIATE
from tests.support.servers import Postgres, Redis
from tests.targets import maestro


def test_plan_prints_targets_and_writes_nothing(
    jobs_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan names the matching playbook, the rows found, and the rows the write would change."""
    seed_jobs(jobs_db, stuck=[11, 12], fresh=[13])
    alert = {
        "status": "firing",
        "labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "critical"},
        "startsAt": datetime.now(UTC).isoformat(),
        "fingerprint": "abcd",
    }
    (tmp_path / "alert.json").write_text(json.dumps(alert))
    monkeypatch.setenv("REMEDIATE_CONFIG", str(DATA / "jobs-config.yaml"))
    monkeypatch.setenv("REMEDIATE_PLAYBOOKS", str(DATA / "playbooks"))
    assert main(["plan", "--alert", str(tmp_path / "alert.json")]) == 0
    out = capsys.readouterr().out
    assert "1 matching playbook(s): stuck-jobs" in out
    assert '"rows": [{"id": 11}, {"id": 12}]' in out
    assert "would change 2 row(s) (max_rows 50); rolled back" in out and "targets (2): row 11, row 12" in out
    assert "blast radius: 2 row(s); cap: max_rows 50" in out
    assert job_states(jobs_db) == {11: "running", 12: "running", 13: "running"} and update_counts(jobs_db) == {}


def test_plan_on_the_sample_alert_with_no_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A captured Alertmanager message with no matching playbook says so and exits 0."""
    monkeypatch.setenv("REMEDIATE_CONFIG", str(DATA / "jobs-config.yaml"))
    monkeypatch.setenv("REMEDIATE_PLAYBOOKS", str(DATA / "playbooks"))
    assert main(["plan", "--alert", str(DATA / "alertmanager-0.25-firing.json")]) == 0
    assert "0 matching playbook(s): none" in capsys.readouterr().out


def test_plan_on_a_runbook_example_is_readable(
    postgres: Postgres,
    redis_server: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`remediate plan` on playbooks/examples/maestro-stuck-runs.json names the stalled jobs and stuck runs."""
    dsn = new_database(postgres)
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    maestro.seed(dsn, redis_server.url, stuck=["RUN-1"], healthy=["RUN-3"])
    monkeypatch.setenv("MAESTRO_DSN", dsn)
    monkeypatch.setenv("MAESTRO_REDIS_URL", redis_server.url)
    (tmp_path / "config.yaml").write_text(connections_config())
    monkeypatch.setenv("REMEDIATE_CONFIG", str(tmp_path / "config.yaml"))
    assert (
        main(
            [
                "plan",
                "--alert",
                str(ROOT / "playbooks" / "examples" / "maestro-stuck-runs.json"),
                "--playbooks",
                str(ROOT / "playbooks"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 matching playbook(s): maestro-stuck-runs" in out
    assert "targets (1): job queue/RUN-1" in out and "targets (1): row RUN-1" in out
    assert (
        "blast radius: 1 target(s); cap: max_targets 100" in out and "blast radius: 1 row(s); cap: max_rows 50" in out
    )
    assert maestro.changes(dsn) == [] and maestro.queue(redis_server.url)["active"] == ["RUN-1", "RUN-3"]


def test_every_shipped_example_plans_without_a_config_or_says_what_to_configure(jobs_db: str) -> None:
    """With no REMEDIATE_CONFIG, `remediate plan` (a process) uses the dev connections: the README's stuck-jobs
    example plans for real once JOBS_DB_DSN is set, and every other example names exactly what to set."""
    seed_jobs(jobs_db, stuck=[5])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_") and not k.endswith(("_DSN", "_URL"))}
    for example in sorted((ROOT / "playbooks" / "examples").glob("*.json")):
        env = {**clean, **({"JOBS_DB_DSN": jobs_db} if example.stem == "stuck-jobs" else {})}
        done = subprocess.run(
            [REMEDIATE, "plan", "--alert", str(example)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        out = done.stdout + done.stderr
        assert "unknown connection" not in out and "Traceback" not in out, out
        assert "planning against the dev connections" in done.stderr
        if example.stem == "stuck-jobs":
            assert done.returncode == 0 and "targets (1): row 5" in out, out
        else:
            failed = [line for line in done.stdout.splitlines() if line.strip().startswith("✗")]
            hints = [line for line in done.stdout.splitlines() if "to plan this for real: connection" in line]
            assert failed and hints and all("docs/configuration.md#" in h for h in hints), out
    assert update_counts(jobs_db) == {}
