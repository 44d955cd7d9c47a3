"""Storm bench (issue 13): intake and end-to-end runs through real processes, against same-run baselines.

Run: .venv/bin/python -m tests.bench.storm [--seconds 8]

Starts file-backed Temporal dev servers (as `remediate dev` runs them: SQLite in WAL mode) and an HTTP target,
then, with a one-step playbook (one HTTP GET per alert):
  acceptance, on a dev server of its own: two `serve --web-only` processes on a task queue no worker polls,
    closed-loop 10-alert messages at concurrency 1 and 8, against raw `start_workflow` calls on the same server
    (per alert, as before);
  end to end, on a fresh dev server: two `--web-only` and two `serve --worker-only` processes; a batch of 400 alerts at
    concurrency 1 and 800 at 8 (runs completed per second, alert -> first diagnose step), then one 10-alert
    message a second for 15 s (latency when not saturated);
  burst: 2,000 alerts in 200 messages plus 60 re-sent, 8 in flight, resending on 503; RSS of each process;
  CPU per run: the workers' (and webs') user+system CPU over the batches and the burst, per run closed.
Each figure is printed as a ratio against the baseline of this run and the numbers issue 13 measured on the code
before the change:

  before (issue 13, 2 cores, file-backed dev server, 10-alert messages, closed loop):
    acceptance (web-only, no worker): 39 alerts/s at concurrency 1, 30 at 8; ack p50/p99 250/390 ms and 2.5/3.5 s
    end to end (web + worker): about 8 runs/s at 1, 8.5 at 8; alert -> first diagnose step p50 14 s / 41 s
    burst of 2,000 alerts (200 messages + 60 re-sends): 380 of 640 attempts got 503; last run 329 s after the first
  targets: >= 5x today's alerts/s, ack p99 < 500 ms at concurrency 8; >= 3x runs/s, diagnose p50 < 1 s when not
  saturated; the burst with zero 503, one run per occurrence, last run done < 90 s; RSS < 160 MB per process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from service.cli.devserver import start_dev_server
from tests.support.processes import ServiceProcess, start
from tests.support.servers import serving

BEFORE = {"accept_1": 39.0, "accept_8": 30.0, "runs_1": 8.0, "runs_8": 8.5}
TOKEN = "storm-token"
PLAYBOOK = """
name: storm-bench
match: {alertname: StormBench}
inputs: {key: "{{ alert.labels.key }}"}
diagnose:
  - id: look
    action: http.request
    connection: target
    with: {path: "/look/{{ inputs.key }}"}
"""


class Target:
    """The one-step playbook's target: when each alert's diagnose GET arrived."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def app(self) -> Starlette:
        async def look(request: Request) -> JSONResponse:
            self.seen.setdefault(request.path_params["key"], time.monotonic())
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/look/{key}", look)])


def message(keys: list[str]) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    alerts = [
        {"status": "firing", "labels": {"alertname": "StormBench", "key": k}, "startsAt": now, "fingerprint": k}
        for k in keys
    ]
    return {"version": "4", "status": "firing", "receiver": "bench", "groupKey": "g", "alerts": alerts}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def closed_loop(
    urls: list[str], concurrency: int, seconds: float, sent: dict[str, float]
) -> tuple[int, list[float], int]:
    """`concurrency` senders, each posting 10-alert messages back to back; (alerts acked, latencies, 503s)."""
    acked, refused = 0, 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def sender(http: httpx2.AsyncClient, lane: int) -> None:
        nonlocal acked, refused
        while time.monotonic() < deadline:
            keys = [uuid.uuid4().hex[:16] for _ in range(10)]
            began = time.monotonic()
            for k in keys:
                sent[k] = began
            reply = await http.post(f"{urls[lane % len(urls)]}/alertmanager", json=message(keys))
            latencies.append(time.monotonic() - began)
            if reply.status_code == 200:
                acked += 10
            else:
                refused += 1

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        await asyncio.gather(*(sender(http, lane) for lane in range(concurrency)))
    return acked, latencies, refused


async def raw_starts(client: Client, concurrency: int, seconds: float) -> float:
    """Baseline: raw start_workflow calls (no worker needed) on the same server, alerts/s-equivalent."""
    done, deadline = 0, time.monotonic() + seconds

    async def lane() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await client.start_workflow("BenchNothing", id=f"raw-{uuid.uuid4().hex}", task_queue="bench-raw-nobody")
            done += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return done / seconds


def rss_mb(process: ServiceProcess) -> float:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(process: ServiceProcess) -> float:
    """User plus system CPU the process has used so far (from /proc: ticks since it started)."""
    fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def open_runs(client: Client, queue: str) -> int:
    """Runs and the deliveries that will start more of them, not finished yet."""
    kinds = "(WorkflowType = 'RemediationWorkflow' OR WorkflowType = 'DeliveryWorkflow')"
    query = f"TaskQueue = '{queue}' AND {kinds} AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def wait_until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll the server (visibility has no event to wait on) until `check` holds or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not await check():  # noqa: ASYNC110 - polling another process
        await asyncio.sleep(0.5)


async def _none_open(client: Client, queue: str) -> bool:
    return await open_runs(client, queue) == 0


async def _closed_at_least(client: Client, queue: str, want: int) -> bool:
    return await closed_runs(client, queue) >= want


async def closed_runs(client: Client, queue: str) -> int:
    query = f"TaskQueue = '{queue}' AND WorkflowType = 'RemediationWorkflow' AND ExecutionStatus != 'Running'"
    return (await client.count_workflows(query)).count


def settings_for(address: str, base: Path, queue: str) -> dict[str, str]:
    return {
        "REMEDIATE_TEMPORAL_ADDRESS": address,
        "REMEDIATE_TASK_QUEUE": queue,
        "REMEDIATE_PLAYBOOKS": str(base / "playbooks"),
        "REMEDIATE_CONFIG": str(base / "config.yaml"),
        "REMEDIATE_MODE": "auto",
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
    }


async def send_all(urls: list[str], messages: list[dict[str, object]], concurrency: int) -> tuple[int, list[float]]:
    """Post every message, `concurrency` at a time, resending on 503 as Alertmanager would; (503s, ack latencies)."""
    refused, latencies, lanes = 0, list[float](), asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:

        async def deliver(i: int, body: dict[str, object]) -> None:
            nonlocal refused
            async with lanes:
                while True:
                    began = time.monotonic()
                    reply = await http.post(f"{urls[i % len(urls)]}/alertmanager", json=body)
                    latencies.append(time.monotonic() - began)
                    if reply.status_code != 503:
                        return
                    refused += 1
                    await asyncio.sleep(1)

        await asyncio.gather(*(deliver(i, m) for i, m in enumerate(messages)))
    return refused, latencies


async def acceptance(base: Path, seconds: float) -> list[tuple[str, str]]:
    """Web-only replicas on a task queue no worker polls: what intake alone sustains.

    It has a dev server of its own: the thousands of deliveries it leaves waiting would otherwise keep the server
    busy (spilling their tasks to the database) while the later phases are measured.
    """
    env = await start_dev_server(db_file=str(base / "accept-temporal.db"))
    address, client = env.client.service_client.config.target_host, env.client
    queue = f"accept-{uuid.uuid4().hex[:6]}"
    webs = [start(f"accept-web{i}", ["serve", "--web-only"], settings_for(address, base, queue), base) for i in (1, 2)]
    rows = []
    try:
        for web in webs:
            await web.wait_ready()
        for concurrency in (1, 8):
            baseline = await raw_starts(client, concurrency, seconds)
            acked, latencies, refused = await closed_loop([w.url for w in webs], concurrency, seconds, {})
            rate = acked / seconds
            rows.append(
                (
                    f"acceptance, concurrency {concurrency}",
                    f"{rate:.0f} alerts/s = {rate / baseline:.2f}x raw start_workflow ({baseline:.0f}/s), "
                    f"{rate / BEFORE[f'accept_{concurrency}']:.1f}x before; ack p50/p99 "
                    f"{pct(latencies, 0.5) * 1000:.0f}/{pct(latencies, 0.99) * 1000:.0f} ms; {refused} x 503",
                )
            )
    finally:
        for web in webs:
            await web.terminate()
        await env.shutdown()
    return rows


async def end_to_end(urls: list[str], client: Client, queue: str, target: Target) -> list[tuple[str, str]]:
    """Runs completed per second for a fixed batch at each concurrency, and alert -> diagnose when not saturated."""
    rows = []
    for concurrency, alerts in ((1, 400), (8, 800)):
        keys = [uuid.uuid4().hex[:16] for _ in range(alerts)]
        closed_before, began = await closed_runs(client, queue), time.monotonic()
        sent = dict.fromkeys(keys, began)
        refused, _ = await send_all(urls, [message(keys[i : i + 10]) for i in range(0, alerts, 10)], concurrency)
        await wait_until(lambda: _closed_at_least(client, queue, closed_before + alerts), 300)  # noqa: B023
        elapsed = time.monotonic() - began
        done = await closed_runs(client, queue) - closed_before
        waits = [target.seen[k] - t for k, t in sent.items() if k in target.seen]
        rows.append(
            (
                f"end to end, concurrency {concurrency}",
                f"{done / elapsed:.1f} runs/s ({done} of {alerts} in {elapsed:.0f} s) = "
                f"{done / elapsed / BEFORE[f'runs_{concurrency}']:.1f}x before; alert -> diagnose p50/p99 "
                f"{pct(waits, 0.5):.2f}/{pct(waits, 0.99):.2f} s (saturated); {refused} x 503",
            )
        )
    # Not saturated: one 10-alert message a second for 15 s.
    sent = {}
    for _ in range(15):
        keys = [uuid.uuid4().hex[:16] for _ in range(10)]
        sent |= dict.fromkeys(keys, time.monotonic())
        await send_all(urls, [message(keys)], 1)
        await asyncio.sleep(1)
    await wait_until(lambda: _none_open(client, queue), 60)
    waits = [target.seen[k] - t for k, t in sent.items() if k in target.seen]
    rows.append(
        (
            "alert -> diagnose at 10 alerts/s",
            f"p50/p99 {pct(waits, 0.5):.2f}/{pct(waits, 0.99):.2f} s ({len(waits)} of {len(sent)} diagnosed)",
        )
    )
    return rows


async def burst(urls: list[str], client: Client, queue: str) -> tuple[str, str]:
    """2,000 alerts in 200 messages plus 60 re-sent ones, 8 at a time: no 503, one run per occurrence, time to done."""
    keys = [uuid.uuid4().hex[:16] for _ in range(2000)]
    messages = [message(keys[i : i + 10]) for i in range(0, 2000, 10)]
    messages += random.sample(messages, 60)  # about 30% re-sends
    random.shuffle(messages)
    closed_before, began = await closed_runs(client, queue), time.monotonic()
    refused, latencies = await send_all(urls, messages, 8)
    delivered = time.monotonic() - began
    await wait_until(lambda: _closed_at_least(client, queue, closed_before + 2000), 600)
    last = time.monotonic() - began
    await asyncio.sleep(2)  # a run started twice would show up now
    runs = await closed_runs(client, queue) - closed_before
    return (
        "burst of 2,000 alerts (+60 re-sent messages)",
        f"{refused} x 503; delivered in {delivered:.1f} s (ack p99 {pct(latencies, 0.99) * 1000:.0f} ms); {runs} runs "
        f"for 2,000 occurrences; last run finished {last:.0f} s after the first message (before: 329 s)",
    )


async def main(seconds: float) -> None:
    base = Path(tempfile.mkdtemp(prefix="remediate-storm-"))
    target = Target()
    async with serving(target.app()) as url:
        (base / "playbooks").mkdir()
        (base / "playbooks" / "storm.yaml").write_text(PLAYBOOK)
        (base / "config.yaml").write_text(f"connections: {{target: {{type: http, base_url: '{url}'}}}}\n")
        rows = await acceptance(base, seconds)
        env = await start_dev_server(db_file=str(base / "temporal.db"))
        address = env.client.service_client.config.target_host
        queue = f"storm-{uuid.uuid4().hex[:6]}"
        settings = settings_for(address, base, queue)
        webs = [start(f"web{i}", ["serve", "--web-only"], settings, base) for i in (1, 2)]
        workers = [start(f"worker{i}", ["serve", "--worker-only"], settings, base) for i in (1, 2)]
        for process in [*webs, *workers]:
            await process.wait_ready()
        urls = [w.url for w in webs]
        closed_before = await closed_runs(env.client, queue)
        cpu_before = {p.name: cpu_seconds(p) for p in [*webs, *workers]}
        rows += await end_to_end(urls, env.client, queue, target)
        await wait_until(lambda: _none_open(env.client, queue), 300)
        rows.append(await burst(urls, env.client, queue))
        ran = await closed_runs(env.client, queue) - closed_before  # runs and deliveries closed meanwhile
        cpu = {p.name: cpu_seconds(p) - cpu_before[p.name] for p in [*webs, *workers]}
        per_run = sum(cpu[w.name] for w in workers) / max(ran, 1) * 1000
        rows.append(
            (
                "CPU per run",
                f"workers {per_run:.1f} ms, webs {sum(cpu[w.name] for w in webs) / max(ran, 1) * 1000:.1f} ms "
                f"({ran} runs closed; {', '.join(f'{n} {c:.0f} s' for n, c in cpu.items())})",
            )
        )
        rows.append(("RSS", ", ".join(f"{p.name} {rss_mb(p):.0f} MB" for p in [*webs, *workers])))
        for process in [*webs, *workers]:
            await process.terminate()
    await env.shutdown()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("\n(targets in this script's docstring)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    asyncio.run(main(parser.parse_args().seconds))
