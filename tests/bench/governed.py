"""Governed storm bench (issue 21): writes that ask the governor, through `remediate serve` processes as deployed.

Run: .venv/bin/python -m tests.bench.governed [--alerts 2000] [--trials 20] [--switch-only]

Starts a file-backed Temporal dev server (as `remediate dev` runs it) and a Postgres server, then for each phase
two `serve --web-only` and two `serve --worker-only` processes, `REMEDIATE_MODE=auto`. Every run makes one Postgres
write (an INSERT that takes 50 ms and records its own start, end and worker: each process connects as its own
role), with a cooldown per key:

  baseline:  the storm with a playbook that sets no limits and no global budget (every write still asks its shard)
  governed:  the same storm with `max_concurrent: 100` and REMEDIATE_MAX_WRITES_PER_HOUR (the budget in blocks):
             the rails' own cost, against the baseline (target <= 1.5x)
  paced:     the same storm with `max_concurrent: 20`: the limit binds, so the storm takes as long as 20 slots need
             (each held from the grant to the run's end)
     storm = N alerts in messages of 50, plus 60 messages sent again, 8 in flight, resent on 503
  kill switch: 20 trials while alerts stream in, each flipped twice: by `remediate kill-switch on` (a process,
     against `python -c pass`) and by PUT /api/v1/kill-switch from a running client (against a GET of the same
     route): time to the last write that started on each worker, time until it returned, and writes started after
     it returned (must be 0)
  web replica killed: 450 alerts while one web replica is SIGKILLed and restarted
  pacing: 400 alerts, one key each, `max_concurrent: 20`: all written once, never more than 20 at once, in order

It prints, per phase: runs by status, `governor_unavailable` runs (target 0), writes and keys written twice,
limits exceeded (from the target's own rows, target 0), time to the last run done against the baseline (target
<= 1.5x), the most writes at once, and each worker's peak RSS (target < 250 MB with 2,000 runs open).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import psycopg
from temporalio.client import Client, WorkflowExecutionStatus

from service.cli.devserver import start_dev_server
from service.runs.state import RunState
from tests.bench.storm import pct, rss_mb
from tests.support.processes import ServiceProcess, start
from tests.support.servers import scratch, start_postgres

TOKEN = "governed-token"
APPROVER = "governed-approver-token"
PLAYBOOK = """
name: {name}
match: {{alertname: {alertname}}}
inputs: {{key: "{{{{ alert.labels.key }}}}"}}
limits: {{cooldown: 10m, cooldown_key: "{{{{ inputs.key }}}}"{limits}}}
act:
  - id: fix
    action: postgres.execute
    connection: db
    approval: none
    with:
      sql: >-
        insert into fixes (key, replica, started, finished) values (%(key)s, current_user,
        statement_timestamp(), (select clock_timestamp() from pg_sleep(0.05)))
      params: {{key: "{{{{ inputs.key }}}}"}}
      max_rows: 1
"""
TABLE = "create table fixes (key text not null, replica text, started timestamptz, finished timestamptz)"


def message(name: str, keys: list[str]) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "key": k},
            "startsAt": now,
            "fingerprint": k.replace("-", ""),
        }
        for k in keys
    ]
    return {"version": "4", "status": "firing", "receiver": "remediate", "groupKey": uuid.uuid4().hex, "alerts": alerts}


class Deployment:
    """Two web and two worker processes on one task queue, each worker writing as itself (application_name)."""

    def __init__(self, base: Path, address: str, dsn: str, extra: dict[str, str]) -> None:
        self.base, self.address, self.dsn, self.extra = base, address, dsn, extra
        self.queue = f"gov-{uuid.uuid4().hex[:6]}"
        self.webs: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self.peak: dict[str, float] = {}

    def env(self, name: str) -> dict[str, str]:
        return {
            "REMEDIATE_TEMPORAL_ADDRESS": self.address,
            "REMEDIATE_TASK_QUEUE": self.queue,
            "REMEDIATE_PLAYBOOKS": str(self.base / "playbooks"),
            "REMEDIATE_CONFIG": str(self.base / "config.yaml"),
            "REMEDIATE_MODE": "auto",
            "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
            "BENCH_APPROVER": APPROVER,
            "BENCH_DSN": self.dsn.replace("//postgres@", f"//{name}@"),  # each process writes as its own role
            **self.extra,
        }

    def start_web(self, i: int) -> ServiceProcess:
        return start(f"web{i}", ["serve", "--web-only"], self.env(f"web{i}"), self.base / self.queue)

    async def __aenter__(self) -> Deployment:
        self.webs = [self.start_web(i) for i in (1, 2)]
        self.workers = [
            start(f"worker{i}", ["serve", "--worker-only"], self.env(f"worker{i}"), self.base / self.queue)
            for i in (1, 2)
        ]
        for process in [*self.webs, *self.workers]:
            await process.wait_ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in [*self.webs, *self.workers]:
            await process.terminate(within=120)

    def sample_rss(self) -> None:
        for worker in self.workers:
            self.peak[worker.name] = max(self.peak.get(worker.name, 0.0), rss_mb(worker))

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.webs]


async def send(urls: list[str], messages: list[dict[str, object]], concurrency: int = 8) -> int:
    """Post every message, resending on 503 (or a refused connection, a web replica being restarted); 503s seen."""
    refused, lanes = 0, asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:

        async def deliver(i: int, body: dict[str, object]) -> None:
            nonlocal refused
            async with lanes:
                for attempt in range(600):
                    try:
                        reply = await http.post(f"{urls[(i + attempt) % len(urls)]}/alertmanager", json=body)
                    except httpx2.TransportError:
                        await asyncio.sleep(0.5)
                        continue
                    if reply.status_code != 503:
                        if reply.status_code != 200:  # a bench that sent nothing must not report figures
                            raise RuntimeError(f"{reply.status_code}: {reply.text}")
                        return
                    refused += 1
                    await asyncio.sleep(1)

        await asyncio.gather(*(deliver(i, m) for i, m in enumerate(messages)))
    return refused


async def runs_of(client: Client, queue: str, playbook: str) -> list[tuple[WorkflowExecutionStatus | None, str]]:
    query = f"TaskQueue = '{queue}' AND WorkflowType = 'RemediationWorkflow' AND WorkflowId STARTS_WITH '{playbook}/'"
    return [(e.status, e.id) async for e in client.list_workflows(query)]


async def settle(client: Client, deployment: Deployment, playbook: str, want: int, within: float) -> float:
    """Wait until `want` runs of the playbook have closed, sampling worker RSS; seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        deployment.sample_rss()
        found = await runs_of(client, deployment.queue, playbook)
        if len(found) >= want and all(s != WorkflowExecutionStatus.RUNNING for s, _ in found):
            break
        await asyncio.sleep(1)
    return time.monotonic() - began


async def outcomes(client: Client, queue: str, playbook: str) -> tuple[Counter[str], list[float]]:
    """Each run's own status (and the rail that refused it), and the seconds each waited for its grants."""
    lanes, found = asyncio.Semaphore(16), await runs_of(client, queue, playbook)
    waits: list[float] = []

    async def one(run_id: str) -> str:
        async with lanes:
            try:
                state = await client.get_workflow_handle(run_id, result_type=RunState).result()
            except Exception as exc:  # noqa: BLE001 - a bench counts whatever ended a run
                return f"error {type(exc).__name__}"
            waits.append(state.waited)
            return f"{state.status} {state.limit}".strip()

    return Counter(await asyncio.gather(*(one(run_id) for _, run_id in found))), waits


def rows(dsn: str, prefix: str) -> list[tuple[str, str, float, float]]:
    with psycopg.connect(dsn) as conn:
        return [
            (k, r, s.timestamp(), f.timestamp())
            for k, r, s, f in conn.execute(
                "select key, replica, started, finished from fixes where key like %s order by started", (f"{prefix}%",)
            )
        ]


def most_at_once(writes: list[tuple[str, str, float, float]]) -> int:
    events = sorted([(s, 1) for _, _, s, _ in writes] + [(f, -1) for _, _, _, f in writes])
    level = most = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


async def storm(client: Client, d: Deployment, name: str, alerts: int) -> tuple[float, str]:
    prefix = f"{name}-{uuid.uuid4().hex[:4]}-"
    keys = [f"{prefix}{i}" for i in range(alerts)]
    messages = [message(name, keys[i : i + 50]) for i in range(0, alerts, 50)]
    messages += random.sample(messages, min(60, len(messages)))
    random.shuffle(messages)
    began, wall = time.monotonic(), time.time()
    refused = await send(d.urls, messages)
    await settle(client, d, name.lower(), alerts, 900)
    took = time.monotonic() - began
    done, waits = await outcomes(client, d.queue, name.lower())
    writes = rows(d.dsn, prefix)
    twice = sum(1 for n in Counter(k for k, *_ in writes).values() if n > 1)
    first, last = (min(s for _, _, s, _ in writes) - wall, max(s for _, _, s, _ in writes) - wall) if writes else (0, 0)
    return took, (
        f"{sum(done.values())} runs for {alerts} alerts ({refused} x 503): {dict(done.most_common())}; "
        f"{len(writes)} writes from {first:.1f} to {last:.1f} s, {twice} keys written twice, at most "
        f"{most_at_once(writes)} at once; waited for grants p50/p99 {pct(waits, 0.5):.2f}/{pct(waits, 0.99):.2f} s; "
        f"last run done {took:.0f} s after the first message"
    )


async def main(alerts: int, trials: int, switch_only: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="remediate-governed-"))
    pg = start_postgres(scratch("governed-pg"))
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        for role in ("web1", "web2", "worker1", "worker2", "cli"):
            conn.execute(f"create role {role} login")
            conn.execute(f"grant select, insert on fixes to {role}")
    (base / "playbooks").mkdir()
    for name, limits in (("Free", ""), ("Governed", ", max_concurrent: 100"), ("Paced", ", max_concurrent: 20")):
        book = PLAYBOOK.format(name=name.lower(), alertname=name, limits=limits)
        (base / "playbooks" / f"{name.lower()}.yaml").write_text(book)
    (base / "config.yaml").write_text(
        "connections:\n  db: {type: postgres, dsn: 'env:BENCH_DSN'}\napprover_tokens:\n  bench: 'env:BENCH_APPROVER'\n"
    )
    env = await start_dev_server(db_file=str(base / "temporal.db"))
    address = env.client.service_client.config.target_host
    report: list[tuple[str, str]] = []

    def say(name: str, value: str) -> None:  # as each phase ends: a long bench shows its figures as they come
        report.append((name, value))
        print(f"{name:<20}  {value}", flush=True)

    try:
        if switch_only:  # the kill switch drill alone, alerts streaming in, no storm before it
            async with Deployment(base, address, pg.dsn, {}) as governed:
                say("kill switch", await drill(env.client, governed, base, trials))
            return
        async with Deployment(base, address, pg.dsn, {}) as free:
            baseline, line = await storm(env.client, free, "Free", alerts)
            say("baseline (no limits)", line)
            say("  worker peak RSS", ", ".join(f"{n} {v:.0f} MB" for n, v in free.peak.items()))
        budget = {"REMEDIATE_MAX_WRITES_PER_HOUR": str(alerts * 10)}
        async with Deployment(base, address, pg.dsn, budget) as governed:
            took, line = await storm(env.client, governed, "Governed", alerts)
            say("governed", line + f" = {took / baseline:.2f}x the baseline (target <= 1.5x)")
            say("  worker peak RSS", ", ".join(f"{n} {v:.0f} MB" for n, v in governed.peak.items()))
            took, line = await storm(env.client, governed, "Paced", alerts)
            say("paced (limit binds)", line + f" = {took / baseline:.2f}x the baseline")
            say("  worker peak RSS", ", ".join(f"{n} {v:.0f} MB" for n, v in governed.peak.items()))
            say("kill switch", await drill(env.client, governed, base, trials))
            say("web replica killed", await web_killed(env.client, governed))
            say("pacing, 400 alerts", await pacing(env.client, governed))
    finally:
        await env.shutdown()
        pg.stop()
    print("\nsummary", flush=True)
    for name, value in report:
        print(f"{name:<20}  {value}")


async def drill(client: Client, d: Deployment, base: Path, trials: int) -> str:
    """Alerts stream in; each trial turns the switch on (a process), checks that no write starts after it returned,
    notes the last write per worker, and turns it off again."""
    prefix = f"Governed-drill-{uuid.uuid4().hex[:4]}-"
    stop, sent = asyncio.Event(), [0]

    async def feed() -> None:
        while not stop.is_set():
            keys = [f"{prefix}{sent[0] + i}" for i in range(10)]
            sent[0] += 10
            await send(d.urls, [message("Governed", keys)], 1)
            await asyncio.sleep(0.25)

    feeder = asyncio.create_task(feed())
    env = {**d.env("cli"), "REMEDIATE_WEBHOOK_TOKEN": TOKEN}
    cli, api = Drill(), Drill()
    route = f"{d.urls[0]}/api/v1/kill-switch"
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {APPROVER}"}, timeout=30) as http:

        async def by_cli(on: bool, reason: str) -> None:
            verb = ["on", "--reason", reason] if on else ["off"]
            proc = await asyncio.create_subprocess_exec(
                ".venv/bin/remediate", "kill-switch", *verb, "--as", "bench", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            if await proc.wait() != 0:
                raise RuntimeError("kill-switch command failed")

        async def by_api(on: bool, reason: str) -> None:
            (await http.put(route, json={"on": on, "reason": reason})).raise_for_status()

        async def python_starts() -> None:
            await (await asyncio.create_subprocess_exec(".venv/bin/python", "-c", "pass")).wait()

        async def route_reads() -> None:
            (await http.get(route)).raise_for_status()

        try:
            for trial in range(trials):
                for drill, flip, baseline in ((cli, by_cli, python_starts), (api, by_api, route_reads)):
                    await asyncio.sleep(3)  # writes flow again
                    at = time.time()
                    await flip(True, f"drill {trial}")
                    returned = time.time()
                    drill.took.append(returned - at)
                    bare = time.monotonic()
                    await baseline()
                    drill.baseline.append(time.monotonic() - bare)
                    await asyncio.sleep(2)
                    writes = rows(d.dsn, prefix)
                    drill.late += sum(1 for _, _, s, _ in writes if s > returned)
                    for worker in ("worker1", "worker2"):
                        before = [s for _, r, s, _ in writes if r == worker and s <= returned + 5]
                        if before:
                            drill.lasts.append(max(before) - at)
                    await flip(False, "")
        finally:
            stop.set()
            await feeder
    return (
        f"{trials} trials each.\n  `remediate kill-switch on` (a process): {cli.line('`python -c pass`')}\n"
        f"  PUT /api/v1/kill-switch (a client already running): {api.line('GET of the same route')}"
    )


class Drill:
    """One way of flipping the switch, measured over the trials against a baseline timed in the same trials."""

    def __init__(self) -> None:
        self.lasts, self.took, self.baseline, self.late = list[float](), list[float](), list[float](), 0

    def line(self, baseline: str) -> str:
        return (
            f"start -> last write started per worker p50/p99 {pct(self.lasts, 0.5):.2f}/{pct(self.lasts, 0.99):.2f} s"
            f" (target p99 < 2 s); writes started after it returned: {self.late}; start -> returned p50/p99 "
            f"{pct(self.took, 0.5):.2f}/{pct(self.took, 0.99):.2f} s, {baseline} p50 {pct(self.baseline, 0.5):.3f} s"
            f" in the same run = {pct(self.took, 0.5) / pct(self.baseline, 0.5):.1f}x"
        )


async def web_killed(client: Client, d: Deployment) -> str:
    """450 alerts in 45 messages while web1 is SIGKILLed after the first third and restarted."""
    prefix = f"Governed-kill-{uuid.uuid4().hex[:4]}-"
    keys = [f"{prefix}{i}" for i in range(450)]
    messages = [message("Governed", keys[i : i + 10]) for i in range(0, 450, 10)]
    first = asyncio.create_task(send(d.urls, messages, 4))
    await asyncio.sleep(2)
    d.webs[0].kill()
    await asyncio.sleep(2)
    d.webs[0] = d.start_web(1)
    await d.webs[0].wait_ready()
    await first
    await asyncio.sleep(5)
    await settle(client, d, "governed", 0, 600)
    writes = rows(d.dsn, prefix)
    done = Counter(k for k, *_ in writes)
    unavailable = sum(
        n for status, n in (await outcomes(client, d.queue, "governed"))[0].items() if "unavailable" in status
    )
    return (
        f"{len(done)} of 450 keys written, {sum(1 for n in done.values() if n > 1)} twice; "
        f"governor_unavailable runs (all phases so far): {unavailable}"
    )


async def pacing(client: Client, d: Deployment) -> str:
    """400 alerts in 8 messages: every key written once, never more than 20 at once, in about arrival order."""
    prefix = f"Paced-line-{uuid.uuid4().hex[:4]}-"
    keys = [f"{prefix}{i:03d}" for i in range(400)]
    await send(d.urls, [message("Paced", keys[i : i + 50]) for i in range(0, 400, 50)], 1)
    await settle(client, d, "paced", 0, 600)
    writes = rows(d.dsn, prefix)
    order = [int(k.rsplit("-", 1)[1]) // 50 for k, *_ in writes]  # the message each write's alert came in
    out_of_order = sum(1 for a, b in itertools.pairwise(order) if b < a)
    return (
        f"{len(set(k for k, *_ in writes))} of 400 keys written, {len(writes)} writes, at most "
        f"{most_at_once(writes)} at once (max_concurrent 20); {out_of_order} writes came before a later message's"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--switch-only", action="store_true", help="only the kill switch drill (about 4 min)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.alerts, arguments.trials, arguments.switch_only))
