"""`remediate dev` as a new user runs it: dev server, worker and web on defaults; the printed curl makes a run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.conftest import ROOT
from tests.support.servers import free_port, wait_http


def test_dev_prints_a_curl_whose_alert_becomes_a_listed_dry_run(tmp_path: Path) -> None:
    """The sample alert from `remediate dev` becomes a dry-run run that `remediate runs list/show` print."""
    web, temporal = free_port(), free_port()
    env = {**os.environ, "REMEDIATE_LISTEN": f"127.0.0.1:{web}", "REMEDIATE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}"}
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
        body = re.search(r"-d '(.+)'", text)
        assert body is not None, text
        reply = httpx2.post(
            f"http://127.0.0.1:{web}/alertmanager", content=body.group(1), headers={"content-type": "application/json"}
        )
        assert reply.json() == {"started": 1, "duplicates": 0, "resolved": 0, "unmatched": 0}
        listed = ""
        for _ in range(60):
            listed = subprocess.run(
                [sys.executable, "-m", "service", "runs", "list"], env=env, capture_output=True, text=True, check=True
            ).stdout
            if "completed" in listed:
                break
            time.sleep(0.5)
        assert "completed" in listed and "dry-run" in listed and "RemediateSelfTest" in listed, listed
        run_id = listed.split()[-1]
        shown = subprocess.run(
            [sys.executable, "-m", "service", "runs", "show", run_id],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "status: succeeded — dry-run: 1 write(s) planned, none made" in shown
        assert "not sent (dry-run)" in shown
    finally:
        dev.terminate()
        dev.wait(20)
