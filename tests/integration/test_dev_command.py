"""`remediate dev` as a new user runs it: dev server, worker and web on defaults; the printed curl makes a run."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx2

from service.cli.dev import port_free
from tests.support.jobs import seed_jobs, update_counts
from tests.support.paths import ROOT
from tests.support.servers import free_port, wait_http


def test_dev_prints_a_curl_whose_alert_becomes_a_listed_dry_run(tmp_path: Path) -> None:
    """The banner's curl, pasted into a shell twice, makes two dry-run runs that `remediate runs list/show` print;
    `audit export` after it needs nothing set, and a run shows one start time from the trail and from Temporal;
    stopped and started again at once, dev comes up on the same ports."""
    web, temporal = free_port(), free_port()
    while not port_free("127.0.0.1", temporal + 1000):  # where dev puts the Temporal UI
        temporal = free_port()
    env = {**os.environ, "REMEDIATE_LISTEN": f"127.0.0.1:{web}", "REMEDIATE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # this test's own history file
    env.pop("REMEDIATE_CONFIG", None)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "service", "dev"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://127.0.0.1:{web}/healthz", timeout=60)
        text = log.read_text()
        for _ in range(50):
            if "-d '" in text:
                break
            time.sleep(0.1)
            text = log.read_text()
        curl = re.search(r"^(curl .*\\\n.*-d '.+')$", text, re.MULTILINE)
        assert curl is not None, text
        assert "Then: python -m service runs list" in text  # the next command as this one was started
        for _ in range(2):  # pasted twice, a moment apart: two occurrences, two runs
            pasted = subprocess.run(["bash", "-c", curl.group(1)], capture_output=True, text=True, check=True)
            assert json.loads(pasted.stdout) == {"started": 1, "duplicates": 0, "resolved": 0, "unmatched": 0}
            time.sleep(1.1)
        listed = ""
        for _ in range(60):
            listed = subprocess.run(
                [sys.executable, "-m", "service", "runs", "list"], env=env, capture_output=True, text=True, check=True
            ).stdout
            if "succeeded" in listed:
                break
            time.sleep(0.5)
        assert "succeeded" in listed and "dry-run" in listed and "RemediateSelfTest" in listed, listed
        row = listed.splitlines()[-1].split()
        run_id, short = row[-1], row[2]
        shown = subprocess.run(
            [sys.executable, "-m", "service", "runs", "show", short],  # the short id, found in the audit trail
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "status: succeeded — dry-run: 1 write(s) planned, none made" in shown
        assert "not sent (dry-run)" in shown
        # With nothing set, the CLI reads the audit trail dev keeps; a run starts at one time in both sources.
        cli = [sys.executable, "-m", "service"]
        exported = subprocess.run([*cli, "audit", "export"], env=env, capture_output=True, text=True, check=True)
        assert run_id in exported.stdout and "audit trail of `remediate dev`" in exported.stderr
        elsewhere = {**env, "XDG_STATE_HOME": str(tmp_path / "elsewhere")}  # no trail there: Temporal alone
        from_temporal = subprocess.run(
            [*cli, "runs", "list"], env=elsewhere, capture_output=True, text=True, check=True
        ).stdout
        started = [line[:19] for line in listed.splitlines() if run_id in line]
        assert started and started == [line[:19] for line in from_temporal.splitlines() if run_id in line]
        by_short = subprocess.run([*cli, "runs", "show", short], env=elsewhere, capture_output=True, text=True)
        assert by_short.returncode == 0 and f"run {run_id}" in by_short.stdout, by_short.stderr  # found in Temporal
        # The banner names the console and where dev's own approver token is: signing in with it lists the run.
        console = re.search(r"console:  (http://\S+/ui/)   \(sign in as dev with the token in (\S+)\)", text)
        assert console is not None, text
        token = Path(console.group(2)).read_text().strip()
        with httpx2.Client(base_url=console.group(1).removesuffix("/ui/"), timeout=30) as http:
            signed = http.post("/ui/sign-in", data={"token": token})
            assert signed.status_code == 303 and "remediate_console" in signed.cookies
            page = http.get("/ui/")
            story = http.get(f"/ui/runs/{quote(run_id, safe='')}").text
        assert page.status_code == 200 and "selftest" in page.text and "succeeded" in page.text, page.text[:2000]
        # The Temporal UI runs beside the dev server (Temporal's own port + 1000), and a run's page links to it.
        ui = re.search(r"temporal: (http://127\.0\.0\.1:(\d+)/)   \(the Temporal UI", text)
        assert ui is not None and int(ui.group(2)) == temporal + 1000, text
        assert httpx2.get(ui.group(1), timeout=30).status_code == 200
        workflow = f"{ui.group(1)}namespaces/default/workflows?query=WorkflowId%3D%22{quote(run_id, safe='')}%22"
        assert f'href="{workflow}"' in story, story[:3000]
    finally:
        dev.terminate()
        dev.wait(20)
    # Started again at once on the same ports, whose closed connections are still in TIME-WAIT: it comes up.
    with log.open("ab") as out:
        again = subprocess.Popen(
            [sys.executable, "-m", "service", "dev"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://127.0.0.1:{web}/healthz", timeout=60)
    finally:
        again.terminate()
        assert again.wait(20) == 0, log.read_text()[-2000:]


def test_dev_refuses_ports_that_are_taken(tmp_path: Path) -> None:
    """`remediate dev` never attaches to whatever already listens on its Temporal or web port: it says so, exit 2."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        for variable, value in (
            ("REMEDIATE_TEMPORAL_ADDRESS", f"127.0.0.1:{taken}"),
            ("REMEDIATE_LISTEN", f"127.0.0.1:{taken}"),
        ):
            env = {**os.environ, "REMEDIATE_LISTEN": f"127.0.0.1:{free_port()}", "XDG_STATE_HOME": str(tmp_path)}
            env["REMEDIATE_TEMPORAL_ADDRESS"] = f"127.0.0.1:{free_port()}"
            env[variable] = value
            done = subprocess.run(
                [sys.executable, "-m", "service", "dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 2, done.stdout + done.stderr
            assert f"port {taken}" in done.stderr and "already in use" in done.stderr and variable in done.stderr


USER_PLAYBOOK = """
name: my-jobs
match: {alertname: MyJobsStuck}
diagnose:
  - id: stuck
    action: postgres.query
    connection: my-db
    with: {sql: "select id from jobs where status = 'running' order by id"}
act:
  - id: requeue
    action: postgres.execute
    connection: my-db
    when: "steps.stuck.rows | length > 0"
    approval: none
    with:
      sql: update jobs set status = 'pending' where id = any(%(ids)s)
      params: {ids: "{{ steps.stuck.rows | map(attribute='id') | list }}"}
      max_rows: 5
"""


def test_dev_takes_a_users_playbooks_and_connections_and_honours_mode_auto(tmp_path: Path, jobs_db: str) -> None:
    """A playbook directory (--playbooks) and a config that adds its connection join the shipped defaults; with
    REMEDIATE_MODE=auto the banner says loudly that writes will be made, and the user's playbook writes."""
    seed_jobs(jobs_db, stuck=[1])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my-jobs.yaml").write_text(USER_PLAYBOOK)
    (tmp_path / "config.yaml").write_text('connections:\n  my-db: {type: postgres, dsn: "env:MY_DB_DSN"}\n')
    web, temporal = free_port(), free_port()
    env = {
        **os.environ,
        "REMEDIATE_LISTEN": f"127.0.0.1:{web}",
        "REMEDIATE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "REMEDIATE_CONFIG": str(tmp_path / "config.yaml"),
        "REMEDIATE_MODE": "auto",
        "MY_DB_DSN": jobs_db,
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "service", "dev", "--playbooks", str(tmp_path / "mine")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{web}/healthz", timeout=60)
        for _ in range(50):
            if "Send a sample alert" in log.read_text():
                break
            time.sleep(0.1)
        banner = log.read_text()
        assert "my-jobs" in banner and "selftest" in banner and "writes WILL be made" in banner, banner
        message = {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "MyJobsStuck"},
                    "startsAt": "2026-11-23T10:00:00Z",
                    "fingerprint": "abc123",
                }
            ],
        }
        assert httpx2.post(f"http://127.0.0.1:{web}/alertmanager", json=message).json()["started"] == 1
        for _ in range(100):
            if update_counts(jobs_db) == {1: 1}:
                break
            time.sleep(0.2)
        assert update_counts(jobs_db) == {1: 1}
    finally:
        dev.terminate()
        assert dev.wait(30) == 0, log.read_text()[-2000:]


def _dev_once(env: dict[str, str], log: Path, *extra: str) -> tuple[str, str]:
    """Start `remediate dev` (on fresh ports), paste its curl once, list the runs, stop it; (banner, runs list)."""
    env = {
        **env,
        "REMEDIATE_LISTEN": f"127.0.0.1:{free_port()}",
        "REMEDIATE_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "service", "dev", *extra], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://{env['REMEDIATE_LISTEN']}/healthz", timeout=60)
        for _ in range(50):
            if "-d '" in log.read_text():
                break
            time.sleep(0.1)
        banner = log.read_text()
        curl = re.search(r"^(curl .*\\\n.*-d '.+')$", banner, re.MULTILINE)
        assert curl is not None, banner
        subprocess.run(["bash", "-c", curl.group(1)], capture_output=True, check=True)
        listed = ""
        for _ in range(60):
            listed = subprocess.run(
                [sys.executable, "-m", "service", "runs", "list"], env=env, capture_output=True, text=True, check=True
            ).stdout
            if "succeeded" in listed:
                break
            time.sleep(0.5)
        return banner, listed
    finally:
        dev.terminate()
        assert dev.wait(30) == 0, log.read_text()[-2000:]


def test_dev_keeps_its_history_across_a_restart_unless_ephemeral(tmp_path: Path) -> None:
    """Runs made before `remediate dev` stopped are listed after it starts again (a history file under
    $XDG_STATE_HOME/remediate, in WAL mode, with the audit trail beside it); with --ephemeral nothing survives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    banner, first = _dev_once(env, tmp_path / "one.log")
    history = tmp_path / "state" / "remediate" / "dev-temporal.db"
    assert f"history:  {history}" in banner and history.is_file()
    with closing(sqlite3.connect(history)) as db:  # the mode is kept in the file: WAL, not a sync per write
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    trail = history.parent / "audit.db"  # the audit trail beside it, with the run and its final record
    assert f"audit:    sqlite://{trail}" in banner
    with closing(sqlite3.connect(trail)) as db:
        run_id = first.splitlines()[1].split()[-1]
        assert db.execute("select status from audit_runs where run_id = ?", [run_id]).fetchone() == ("succeeded",)
        keys = [k for (k,) in db.execute("select key from audit_events where run_id = ?", [run_id])]
        assert "run/received" in keys and "run/succeeded" in keys, keys
    time.sleep(1.1)  # the next paste is a new occurrence
    _, second = _dev_once(env, tmp_path / "two.log")
    assert len([line for line in second.splitlines() if "RemediateSelfTest" in line]) == 2, second
    assert first.splitlines()[1].split()[-1] in second  # the first run, from before the restart
    _dev_once(env, tmp_path / "three.log", "--ephemeral")
    _, again = _dev_once(env, tmp_path / "four.log", "--ephemeral")
    assert len([line for line in again.splitlines() if "RemediateSelfTest" in line]) == 1, again
