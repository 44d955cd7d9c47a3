"""The service as deployed: `remediate serve` in each shape started as real processes, stopped by real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.support.servers import free_port

REMEDIATE = str(Path(sys.executable).parent / "remediate")  # the console script, as deploy/ runs it
STARTED: list[subprocess.Popen[bytes]] = []  # every process a test started, so the session can reap leftovers


def reap() -> None:
    """Kill whatever a failed test left running."""
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@dataclass
class ServiceProcess:
    """One `remediate` process with its own log file and listen port."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_log(self, needle: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: {needle!r} not logged within {within}s:\n{self.text()[-3000:]}")

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until /readyz answers 200 (the worker polls, Temporal answers, connections answer)."""
        deadline, last = time.monotonic() + within, ""
        async with httpx2.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
                try:
                    reply = await http.get(f"{self.url}/readyz")
                    if reply.status_code == 200:
                        return
                    last = reply.text
                except httpx2.HTTPError as exc:
                    last = str(exc)
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {within}s: {last}\n{self.text()[-3000:]}")

    async def terminate(self, within: float = 60.0) -> int:
        """SIGTERM, as systemd and Kubernetes stop it; returns the exit code once it has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"{self.name} did not exit within {within}s of SIGTERM:\n{self.text()[-3000:]}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the process dies at whatever line it is on."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start(name: str, args: list[str], env: Mapping[str, str], logs: Path, port: int | None = None) -> ServiceProcess:
    """Start `remediate <args>` with REMEDIATE_* settings in `env` (nothing inherited from the test's own)."""
    port = port or free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("REMEDIATE_", "SLACK_"))}
    full.update({"REMEDIATE_LISTEN": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1", **env})
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([REMEDIATE, *args], env=full, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    return ServiceProcess(name, proc, log, port)
