"""docs/first-playbook.md, followed as a new user follows it: its files as written, its commands as processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.paths import ROOT
from tests.support.processes import REMEDIATE
from tests.support.servers import free_port, wait_http

DOC = (ROOT / "docs" / "first-playbook.md").read_text(encoding="utf-8")
# The page's sessions are idle for 10 minutes; the test's for a moment: the only change made to its files.
SHORTER = {'"10 minutes"': '"0 seconds"', "in_transaction_for: 10m": "in_transaction_for: 0s"}


def _files(into: Path) -> None:
    for name, text in re.findall(r'```\w+ title="([^"]+)"\n(.*?)```', DOC, re.S):
        for long, short in SHORTER.items():
            text = text.replace(long, short)
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_text(text, encoding="utf-8")


def _block(containing: str) -> list[str]:
    """The lines of the page's first `sh` block that contains this text."""
    block = next(b for b in re.findall(r"```sh\n(.*?)```", DOC, re.S) if containing in b)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _run(line: str, cwd: Path, env: dict[str, str]) -> str:
    """One command of the page, `.venv/bin/remediate` being this environment's console script."""
    argv = [REMEDIATE if a == ".venv/bin/remediate" else a for a in shlex.split(line)]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return done.stdout


def _dev(cwd: Path, env: dict[str, str], log: Path, line: str) -> subprocess.Popen[bytes]:
    words = shlex.split(line)
    extra = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    argv = [
        REMEDIATE if w == ".venv/bin/remediate" else w for w in words if w not in {f"{k}={v}" for k, v in extra.items()}
    ]
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env={**env, **extra}, stdout=out, stderr=subprocess.STDOUT)


def _send(cwd: Path, env: dict[str, str], listen: str, starts_at: str) -> None:
    """The page's curl, to this test's port, with the alert's startsAt set (a new occurrence)."""
    alert = json.loads((cwd / "mine" / "alert.json").read_text())
    alert["alerts"][0]["startsAt"] = starts_at
    (cwd / "mine" / "alert.json").write_text(json.dumps(alert))
    curl = next(line for line in _block("curl") if line.startswith("curl"))
    sent = subprocess.run(
        ["bash", "-c", curl.replace("127.0.0.1:8080", listen)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert json.loads(sent.stdout)["started"] == 1, sent.stdout + sent.stderr


def _banners(log: Path, count: int) -> None:
    """Wait until `remediate dev` has printed its banner `count` times into the log (once per start)."""
    for _ in range(120):
        if log.read_text(errors="replace").count("remediate dev is up") >= count:
            return
        time.sleep(0.5)
    raise AssertionError(log.read_text(errors="replace")[-2000:])


def _finished_run(cwd: Path, env: dict[str, str], playbook: str, count: int) -> str:
    """The id of the newest run of the playbook once `count` of its runs have finished (from `runs list`)."""
    listed = ""
    for _ in range(120):
        listed = _run(".venv/bin/remediate runs list", cwd, env)
        done = [line for line in listed.splitlines() if playbook in line and "succeeded" in line]
        if len(done) >= count:
            return done[0].split()[-1]
        time.sleep(0.5)
    raise AssertionError(listed)


def test_the_first_playbook_page_works_as_written(tmp_path: Path, jobs_db: str) -> None:
    """The page's files lint, test and plan with its commands; in `remediate dev` the playbook names the session
    idle in transaction and ends none; restarted at once in auto mode, it ends that session and no other; the
    runs and the audit trail read back with nothing set."""
    _files(tmp_path)
    web = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    env |= {"REMEDIATE_LISTEN": web, "REMEDIATE_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    exported = _block("export REMEDIATE_CONFIG")[0].removeprefix("export ").split()
    env |= dict(pair.split("=", 1) for pair in exported) | {"MY_DB_DSN": jobs_db}
    holder = psycopg.connect(jobs_db, application_name="holder")
    bystander = psycopg.connect(jobs_db, application_name="bystander", autocommit=True)
    holder.execute("select 1")  # a transaction left open: idle in transaction
    log = tmp_path / "dev.log"
    try:
        outputs = [_run(line, tmp_path, env) for line in _block("export REMEDIATE_CONFIG")[1:]]
        assert "1 playbook(s) OK" in outputs[0] and "2 passed, 0 failed" in outputs[1]
        assert "end-them" in outputs[2] and "planned writes (dry-run, nothing written): 1" in outputs[2], outputs[2]

        dev = _dev(tmp_path, env, log, _block("dev --playbooks mine")[0])
        try:
            wait_http(f"http://{web}/healthz", timeout=60)
            _send(tmp_path, env, web, "2026-12-05T10:00:00Z")
            shown = _run(f".venv/bin/remediate runs show {_finished_run(tmp_path, env, 'idle-in-transaction', 1)}",
                         tmp_path, env)  # fmt: skip
            assert "session pid" in shown and "planned writes (dry-run, nothing written): 1" in shown, shown
            holder.execute("select 1")  # still there: dry-run ended nothing
        finally:
            dev.send_signal(signal.SIGINT)  # Ctrl-C
            assert dev.wait(30) == 0, log.read_text()[-2000:]

        auto = _dev(tmp_path, env, log, _block("REMEDIATE_MODE=auto")[0])
        try:
            wait_http(f"http://{web}/healthz", timeout=60)
            _banners(log, 2)  # the web side answers a moment before the banner is printed
            assert "writes WILL be made" in log.read_text()
            _send(tmp_path, env, web, "2026-12-05T10:05:00Z")
            _finished_run(tmp_path, env, "idle-in-transaction", 2)
            with pytest.raises(psycopg.OperationalError):
                holder.execute("select 1")  # ended
            bystander.execute("select 1")  # not idle in transaction: left alone
            assert "idle-in-transaction" in _run(".venv/bin/remediate audit export", tmp_path, env)
        finally:
            auto.send_signal(signal.SIGINT)
            assert auto.wait(30) == 0, log.read_text()[-2000:]
    finally:
        holder.close()
        bystander.close()
