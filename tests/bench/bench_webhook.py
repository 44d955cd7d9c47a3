"""Webhook benchmark: throughput and ack latency against baselines measured in the same run.

Run: .venv/bin/python -m tests.bench.bench_webhook [--seconds 5] [--concurrency 16]

Prints, for a 10-alert message:
  duplicate path  vs a bare Starlette endpoint that returns 200 (target ≥ 0.5x)
  new-run path    vs raw `start_workflow` calls on the same Temporal server (target ≥ 0.8x)
  duplicate path at a fixed 200 messages/s: p50/p99 ack latency (target p99 < 20 ms)
Servers run in their own processes; the load generator is this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from service.alerts.webhook import WebhookMessage
from service.cli.devserver import start_dev_server
from service.playbooks.loader import load_playbooks
from service.runs.policy import Mode
from service.runs.state import RunInput
from service.temporal.client import TemporalRuns
from tests.support.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
BARE = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def ok(request):
    await request.body()
    return JSONResponse({"ok": True})
app = Starlette(routes=[Route("/alertmanager", ok, methods=["POST"]), Route("/healthz", ok)])
"""


def message(fingerprints: list[str]) -> dict[str, object]:
    starts = datetime.now(UTC).isoformat()
    return {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": "g",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "critical"},
                "annotations": {},
                "startsAt": starts,
                "fingerprint": f,
            }
            for f in fingerprints
        ],
    }


def new_message() -> dict[str, object]:
    return message([uuid.uuid4().hex[:16] for _ in range(10)])


async def load(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int, rate: float | None = None
) -> tuple[float, list[float]]:
    """Run `call` from `concurrency` workers (or at a fixed rate) and return (calls/s, latencies in s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def timed() -> None:
        begin = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - begin)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await timed()

    begin = time.perf_counter()
    if rate is None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        tasks, tick = [], 1.0 / rate
        next_at = time.perf_counter()
        while next_at < deadline:
            tasks.append(asyncio.create_task(timed()))
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*tasks)
    return len(latencies) / (time.perf_counter() - begin), latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


def line(name: str, rate: float, lat: list[float], unit: str = "msg/s") -> str:
    return f"  {name:<38} {rate:8.1f} {unit}  p50 {pct(lat, 50):6.2f} ms  p99 {pct(lat, 99):6.2f} ms"


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def main(seconds: float, concurrency: int) -> None:
    env = await start_dev_server()
    temporal = env.client.service_client.config.target_host
    work = Path(tempfile.mkdtemp(prefix="remediate-bench-"))
    (work / "bare.py").write_text(BARE)
    (work / "config.yaml").write_text('connections: {jobs-db: {type: postgres, dsn: "env:JOBS_DB_DSN"}}\n')
    bare_port, svc_port = free_port(), free_port()
    procs = [
        spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bare:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--app-dir",
                str(work),
            ],
            {},
        ),
        spawn(
            [sys.executable, "-m", "service", "serve", "--web-only"],
            {
                "REMEDIATE_TEMPORAL_ADDRESS": temporal,
                "REMEDIATE_LISTEN": f"127.0.0.1:{svc_port}",
                "REMEDIATE_PLAYBOOKS": str(ROOT / "tests" / "data" / "playbooks"),
                "REMEDIATE_CONFIG": str(work / "config.yaml"),
                "REMEDIATE_TASK_QUEUE": "bench-no-worker",
                "REMEDIATE_MODE": "dry-run",
            },
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{bare_port}/healthz")
        wait_http(f"http://127.0.0.1:{svc_port}/healthz")
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx2.AsyncClient(limits=limits, timeout=30) as http:
            dup = json.dumps(new_message()).encode()
            headers = {"content-type": "application/json"}
            first = await http.post(f"http://127.0.0.1:{svc_port}/alertmanager", content=dup, headers=headers)
            assert first.json()["started"] == 10, first.text

            async def bare() -> None:
                (
                    await http.post(f"http://127.0.0.1:{bare_port}/alertmanager", content=dup, headers=headers)
                ).raise_for_status()

            async def duplicate() -> None:
                reply = await http.post(f"http://127.0.0.1:{svc_port}/alertmanager", content=dup, headers=headers)
                assert reply.json()["duplicates"] == 10

            async def new_run() -> None:
                reply = await http.post(
                    f"http://127.0.0.1:{svc_port}/alertmanager",
                    content=json.dumps(new_message()).encode(),
                    headers=headers,
                )
                assert reply.json()["started"] == 10, reply.text

            runs = TemporalRuns(env.client, "bench-raw")
            playbook = load_playbooks([ROOT / "tests" / "data" / "playbooks"], None)[0]

            async def raw_starts() -> None:
                alerts = WebhookMessage.model_validate(new_message()).alerts
                await asyncio.gather(
                    *(
                        env.client.start_workflow(
                            "RemediationWorkflow",
                            RunInput(run_id=f"raw/{a.fingerprint}", playbook=playbook, alert=a, mode=Mode.DRY_RUN),
                            id=f"raw/{a.fingerprint}/{a.starts_at_unix}",
                            task_queue=runs.task_queue,
                        )
                        for a in alerts
                    )
                )

            await load(bare, 1, concurrency)  # warm up both servers and the client pool
            await load(duplicate, 1, concurrency)
            # The baseline is measured before and after; the faster of the two is used (the stricter ratio).
            b_rate, b_lat = await load(bare, seconds, concurrency)
            d_rate, d_lat = await load(duplicate, seconds, concurrency)
            b2_rate, b2_lat = await load(bare, seconds, concurrency)
            if b2_rate > b_rate:
                b_rate, b_lat = b2_rate, b2_lat
            r_rate, r_lat = await load(raw_starts, seconds, concurrency)
            n_rate, n_lat = await load(new_run, seconds, concurrency)
            f_rate, f_lat = await load(duplicate, seconds, concurrency, rate=200)
        print(f"webhook benchmark: 10-alert messages, {seconds:.0f} s per measurement, concurrency {concurrency}")
        print(line("bare Starlette 200 (baseline)", b_rate, b_lat))
        print(line("duplicate path", d_rate, d_lat))
        print(f"  duplicate / bare                       {d_rate / b_rate:5.2f}x   (target ≥ 0.50x)")
        print(line("raw start_workflow x10 (baseline)", r_rate, r_lat))
        print(line("new-run path (10 starts/message)", n_rate, n_lat))
        print(f"  new-run / raw starts                   {n_rate / r_rate:5.2f}x   (target ≥ 0.80x)")
        print(line("duplicate path at fixed 200 msg/s", f_rate, f_lat))
        print(f"  p99 at 200 msg/s                       {pct(f_lat, 99):5.2f} ms (target < 20 ms)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.concurrency))
