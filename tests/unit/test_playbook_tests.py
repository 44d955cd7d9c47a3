"""`remediate test` as a user runs it: the shipped playbooks' cases pass offline; a wrong expectation or a missing
recording fails with a line saying which case and why."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.processes import REMEDIATE


def remediate_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the console script, with no service settings: it needs none
        [REMEDIATE, "test", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_shipped_playbook_has_cases_and_they_pass_offline() -> None:
    """Each shipped playbook has a test file under playbooks/tests/, and `remediate test` passes them all."""
    tested = {p.stem for p in (ROOT / "playbooks" / "tests").glob("*.yaml")}
    shipped = {p.stem for p in (ROOT / "playbooks").glob("*.yaml")}
    assert shipped <= tested, shipped - tested
    done = remediate_test()
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed, 0 failed in " in done.stdout and "FAIL" not in done.stdout


def test_a_wrong_expectation_and_a_missing_recording_fail_naming_the_case(tmp_path: Path) -> None:
    """Expecting no write where the playbook writes, and leaving a read step unrecorded, both fail with reasons."""
    (tmp_path / "wrong.yaml").write_text(
        """playbook: stuck-jobs
cases:
  - name: claims nothing is written
    labels: {alertname: JobsStuck, queue: q1, severity: warning}
    results:
      stuck: {data: {rows: [{id: 1}]}}
      none-left: {data: {rows: [{n: 0}]}}
    expect: {writes: []}
  - name: forgets the diagnosis
    labels: {alertname: JobsStuck, queue: q1, severity: warning}
    expect: {status: succeeded}
"""
    )
    done = remediate_test(str(tmp_path / "wrong.yaml"))
    assert done.returncode == 1
    assert f"FAIL {tmp_path / 'wrong.yaml'}: stuck-jobs: claims nothing is written" in done.stdout
    assert "writes: expected [], made ['requeue']" in done.stdout
    assert "no recorded result for read step 'stuck'" in done.stdout
    assert "0 passed, 2 failed" in done.stdout


def test_a_playbook_directory_means_its_tests_folder_with_its_own_playbooks(tmp_path: Path) -> None:
    """`remediate test DIR` runs DIR/tests against DIR's playbooks, from anywhere (inside DIR: `remediate test .`);
    the shipped directory works the same; no playbook file is ever read as a test."""
    mine = tmp_path / "mine"
    (mine / "tests").mkdir(parents=True)
    (mine / "my-jobs.yaml").write_text(
        (ROOT / "playbooks" / "stuck-jobs.yaml").read_text().replace("name: stuck-jobs", "name: my-jobs")
    )
    (mine / "tests" / "my-jobs.yaml").write_text(
        (ROOT / "playbooks" / "tests" / "stuck-jobs.yaml")
        .read_text()
        .replace("playbook: stuck-jobs", "playbook: my-jobs")
    )
    for args, cwd, name in (
        ([str(mine)], ROOT, "my-jobs"),
        (["."], mine, "my-jobs"),
        (["tests"], mine, "my-jobs"),
        (["playbooks"], ROOT, "stuck-jobs"),
    ):
        done = subprocess.run(
            [REMEDIATE, "test", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0 and " 0 failed in " in done.stdout, (args, done.stdout + done.stderr)
        assert f": {name}: " in done.stdout and "Field required" not in done.stdout
    empty = subprocess.run([REMEDIATE, "test", str(tmp_path)], capture_output=True, text=True, check=False)
    assert empty.returncode == 1
    assert f"no playbook tests found in {tmp_path / 'tests'} (give a playbook directory" in empty.stderr


IDLE_PLAYBOOK = """
name: idle-sessions
match: {alertname: IdleInTransaction}
diagnose:
  - id: idle
    action: postgres.query
    connection: db
    with: {sql: "select pid, backend_start from pg_stat_activity where state = 'idle in transaction'", max_rows: 10}
act:
  - id: end
    action: postgres.terminate_backends
    connection: db
    approval: {required_if: "targets > 2"}
    with: {backends: "{{ steps.idle.rows }}", max_targets: 5}
"""
IDLE_TESTS = """
playbook: idle-sessions
cases:
  - name: three sessions (the write not recorded) wait for a person, as live
    labels: {alertname: IdleInTransaction}
    results:
      idle: {data: {rows: [{pid: 1, backend_start: a}, {pid: 2, backend_start: b}, {pid: 3, backend_start: c}]}}
    expect: {writes: [end], approval: [end]}
  - name: two sessions end without one
    labels: {alertname: IdleInTransaction}
    results:
      idle: {data: {rows: [{pid: 1, backend_start: a}, {pid: 2, backend_start: b}]}}
    expect: {writes: [end], approval: []}
"""


def test_an_approval_that_counts_targets_is_decided_from_the_rendered_targets_when_the_write_is_unrecorded(
    tmp_path: Path,
) -> None:
    """`required_if: "targets > 2"` counts the sessions the write would end (its rendered `backends`), as the live
    dry-run lists them, when the case records nothing for the write: three wait at the gate, two do not."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "idle-sessions.yaml").write_text(IDLE_PLAYBOOK)
    (tmp_path / "tests" / "idle-sessions.yaml").write_text(IDLE_TESTS)
    done = remediate_test(str(tmp_path))
    assert done.returncode == 0 and "2 passed, 0 failed" in done.stdout, done.stdout + done.stderr
