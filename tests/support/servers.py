"""Real servers for the suite: Postgres, Prometheus and Alertmanager from Debian packages, started per session."""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import uvicorn
from starlette.applications import Starlette


class ServerMissing(RuntimeError):
    """A server the suite needs is not installed: the run fails, it never skips."""


# Below the kernel's ephemeral range (32768+), so a port handed out here and bound a few seconds later (a
# Temporal restarted on its old port) cannot meanwhile be taken by any socket that asked the kernel for port 0;
# each xdist worker draws from its own slice, so two workers never hand out the same port.
_PORT_BASE, _PORT_SLICE, _PORT_SLICES = 20000, 1500, 8
_next_port = itertools.count(os.getpid())  # the pid as offset keeps two processes of one worker apart


def _port_slice() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(worker) % _PORT_SLICES if worker.isdigit() else 0


def free_port() -> int:
    """A port nothing listens on, never the same twice in one process, outside the kernel's ephemeral range."""
    start = _PORT_BASE + _port_slice() * _PORT_SLICE
    for _ in range(_PORT_SLICE):
        port = start + next(_next_port) % _PORT_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + _PORT_SLICE - 1}")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx2.get(url, timeout=1.0).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def need(binary: str) -> str:
    path = shutil.which(binary) or next(iter(glob.glob(binary)), None)
    if not path:
        raise ServerMissing(f"{binary} is not installed; run `make test` (it installs the Debian packages)")
    return path


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn(args: Sequence[str], log: Path, **kwargs: object) -> Process:
    handle = log.open("ab")
    proc = subprocess.Popen(list(args), stdout=handle, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    return Process(proc, log)


@dataclass
class Postgres:
    port: int
    data: Path
    pg_ctl: str
    options: str = ""

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )

    def start(self) -> None:
        """Start it again on the same port and data (pg_ctl keeps the options of the first start)."""
        subprocess.run(
            _as_postgres(
                [
                    self.pg_ctl,
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.data.parent / "postgres.log"),
                    "-w",
                    "-o",
                    self.options,
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )


def _as_postgres(args: list[str]) -> list[str]:
    # Postgres refuses to run as root; CI runs as root, so drop to the package's postgres user.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def start_postgres(root: Path) -> Postgres:
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindir:
        raise ServerMissing("PostgreSQL is not installed (Debian package postgresql)")
    initdb, pg_ctl = f"{bindir[-1]}/initdb", f"{bindir[-1]}/pg_ctl"
    data = root / "pgdata"
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    server = Postgres(
        port, data, pg_ctl, f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    server.start()
    return server


@dataclass
class Prometheus:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_prometheus(
    root: Path,
    rule_files: Sequence[Path] = (),
    scrape_targets: Sequence[str] = (),
    alertmanager_port: int | None = None,
) -> Prometheus:
    binary = need("prometheus")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    targets = [f"127.0.0.1:{port}", *scrape_targets]
    config = [
        "global: {scrape_interval: 1s, evaluation_interval: 1s}",
        f"rule_files: {[str(p) for p in rule_files]}",
        "scrape_configs:",
        "  - job_name: targets",
        f"    static_configs: [{{targets: {targets}}}]",
    ]
    if alertmanager_port:
        config += [
            "alerting:",
            "  alertmanagers:",
            f"    - static_configs: [{{targets: ['127.0.0.1:{alertmanager_port}']}}]",
        ]
    (root / "prometheus.yml").write_text("\n".join(config) + "\n")
    process = spawn(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        root / "prometheus.log",
    )
    wait_http(f"http://127.0.0.1:{port}/-/ready")
    return Prometheus(port, process)


@dataclass
class Alertmanager:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post_alerts(self, alerts: list[dict[str, object]]) -> None:
        httpx2.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


def start_alertmanager(root: Path, webhook_url: str | Sequence[str], token: str) -> Alertmanager:
    """Alertmanager delivering every notification to each webhook URL (several: one per web replica)."""
    binary = need("prometheus-alertmanager")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "token").write_text(token)
    webhooks = "".join(
        f"""
      - url: {url}
        send_resolved: true
        max_alerts: 50
        http_config:
          authorization: {{type: Bearer, credentials_file: {root / "token"}}}"""
        for url in ([webhook_url] if isinstance(webhook_url, str) else webhook_url)
    )
    (root / "alertmanager.yml").write_text(f"""
route:
  receiver: remediate
  group_by: [alertname, fingerprint_group]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediate
    webhook_configs:{webhooks}
""")
    process = spawn(
        [
            binary,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        root / "alertmanager.log",
    )
    wait_http(f"http://127.0.0.1:{port}/-/ready")
    return Alertmanager(port, process)


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"remediate-{prefix}-"))


@dataclass
class Redis:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(root: Path) -> Redis:
    binary = need("redis-server")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # KEYS is renamed away: a test run proves no action ever uses it.
    process = spawn(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--rename-command",
            "KEYS",
            "",
        ],
        root / "redis.log",
    )
    wait_port(port)
    return Redis(port, process)


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app (a fake API or a target) over real HTTP on a free loopback port, in this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has only a flag
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` as its own process with a database file, so it can be stopped and started."""

    port: int
    db: Path
    log: Path
    process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from service.cli.devserver import temporal_binary

        args = [temporal_binary(), "server", "start-dev", "--port", str(self.port), "--db-filename", str(self.db)]
        args += [
            "--headless",
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warn",
        ]
        self.process = spawn(args, self.log)
        wait_port(self.port, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
