"""Console Runs page over 100,000 audit rows: each page's p50/p95 against a bare Starlette page in the same run.

Starts a Postgres server, migrates the audit store with `remediate migrate audit`, loads 100,000 finished runs
(8 playbooks, 90 days, realistic states of three steps each) with COPY, starts `remediate serve --web-only` against it
and a Temporal dev server, signs in as an approver, then asks each page in turn, one request at a time:

  first page       /ui/
  filtered page    /ui/?playbook=…&status=failed (a rare status of one playbook)
  alert filter     /ui/?alert=…&since=30d
  deep page        the 40th page (2,000 runs back) by following Older → links
  baseline         a bare Starlette endpoint that returns a small HTML page (uvicorn, the same machine, same client)

and prints p50/p95 in ms and the ratio to the baseline, then the query plan (EXPLAIN ANALYZE) of the store's SQL for
the first and the filtered page. Target: p95 under 100 ms for the first and the filtered page.

    .venv/bin/python -m tests.bench.console_runs [--rows 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import psycopg
from psycopg.types.json import Jsonb

from service.cli.devserver import start_dev_server
from service.runs.listing import ORDER_BY, RunQuery
from service.runs.state import RunState, StepRecord, short_id
from service.stores.postgres import COLUMNS, RUNS_SQL
from service.vocabulary.modes import Mode
from tests.support.processes import start
from tests.support.servers import free_port, scratch, start_postgres, wait_http

APPROVER = "bench-approver-token-0123456789abcdef"
PLAYBOOKS = [f"playbook-{name}" for name in ("orders", "jobs", "dag", "wms", "flovyn", "maestro", "billing", "search")]
STATUSES = ["succeeded"] * 80 + ["failed"] * 6 + ["blocked_by_policy"] * 8 + ["rejected"] * 3 + ["expired"] * 3
BARE = """
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
PAGE = "<!doctype html><title>Runs</title><ul>" + "<li>run</li>" * 50 + "</ul>"
async def page(request):
    return HTMLResponse(PAGE)
app = Starlette(routes=[Route("/ui/", page)])
"""


def state(i: int, now: datetime) -> RunState:
    """Run `i`: its playbook and status drawn from fixed odds, one every ~78 s back over 90 days."""
    rng = random.Random(i)
    playbook, status = PLAYBOOKS[i % len(PLAYBOOKS)], rng.choice(STATUSES)
    started = now - timedelta(seconds=i * 77.76)
    fingerprint = f"{rng.getrandbits(64):016x}"
    steps = [
        StepRecord(
            id=step,
            phase=phase,
            action=action,
            effect="write" if phase == "act" else "read",
            connection="db",
            status="ok",
            params={"sql": "select id from jobs where state = 'stuck' limit 50", "params": {"queue": f"q{i % 7}"}},
            result={"rows": [{"id": n} for n in range(5)], "count": 5},
            targets=[f"job {n}" for n in range(5)] if phase == "act" else [],
            started_at=started + timedelta(seconds=k),
            finished_at=started + timedelta(seconds=k + 1),
        )
        for k, (step, phase, action) in enumerate(
            [
                ("stuck", "diagnose", "postgres.query"),
                ("requeue", "act", "postgres.execute"),
                ("none-left", "verify", "postgres.query"),
            ]
        )
    ]
    return RunState(
        run_id=f"{playbook}/{fingerprint}/{int(started.timestamp())}",
        playbook=playbook,
        alertname=f"{playbook.split('-')[1].title()}Stuck",
        fingerprint=fingerprint,
        labels={"alertname": f"{playbook.split('-')[1].title()}Stuck", "queue": f"q{i % 7}", "severity": "critical"},
        mode=Mode.AUTO,
        status=status,
        reason="1 write(s) done; verify passed" if status == "succeeded" else f"ended {status}",
        started_at=started,
        finished_at=started + timedelta(seconds=4),
        steps=steps,
    )


def load(dsn: str, rows: int) -> float:
    """COPY `rows` runs into the migrated store; returns the average state size in bytes."""
    now, sizes = datetime.now(UTC), 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        columns = "run_id, attempt, short_id, seq, playbook, status, started_at, updated_at, state"
        copy = f"COPY remediate_audit_runs ({columns}) FROM STDIN"
        with cur.copy(copy) as out:
            for i in range(rows):
                s = state(i, now)
                dumped = s.model_dump(mode="json")
                sizes += len(s.model_dump_json())
                out.write_row(
                    (
                        s.run_id,
                        1,
                        short_id(s.run_id),
                        9,
                        s.playbook,
                        s.status,
                        s.started_at,
                        s.finished_at,
                        Jsonb(dumped),
                    )
                )
        conn.commit()
        conn.execute("ANALYZE remediate_audit_runs")
    return sizes / rows


def plan(dsn: str, query: RunQuery) -> str:
    where, params = query.where(COLUMNS)
    sql = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + RUNS_SQL + where + ORDER_BY + " LIMIT %s"
    with psycopg.connect(dsn) as conn:
        return "\n".join(f"    {row[0]}" for row in conn.execute(sql, (*params, query.limit + 1)))


def migrate(dsn: str) -> None:
    """`remediate migrate audit`, as an operator runs it."""
    env = {**os.environ, "REMEDIATE_DATABASE_URL": dsn}
    subprocess.run([sys.executable, "-m", "service", "migrate", "audit"], env=env, check=True)


def serve_bare(work: Path, port: int) -> subprocess.Popen[bytes]:
    """The baseline: a bare Starlette page under uvicorn, as the service itself is served."""
    command = [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(
        [*command, "--no-access-log", "--app-dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def timed(http: httpx2.AsyncClient, url: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        begin = time.perf_counter()
        answer = await http.get(url)
        took.append(time.perf_counter() - begin)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
    return took


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def main(rows: int, requests: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="remediate-console-bench-"))
    pg = start_postgres(scratch("console-pg"))
    dsn = pg.dsn
    await asyncio.to_thread(migrate, dsn)
    begin = time.perf_counter()
    size = load(dsn, rows)
    print(f"loaded {rows:,} runs in {time.perf_counter() - begin:.0f} s (state {size / 1000:.1f} kB each)", flush=True)
    temporal = await start_dev_server()
    (work / "bare.py").write_text(BARE)
    (work / "config.yaml").write_text("approver_tokens: {bench: 'env:BENCH_APPROVER'}\n")
    (work / "playbooks").mkdir()
    bare_port = free_port()
    bare = serve_bare(work, bare_port)
    web = start(
        "web",
        ["serve", "--web-only"],
        {
            "REMEDIATE_TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
            "REMEDIATE_DATABASE_URL": dsn,
            "REMEDIATE_CONFIG": str(work / "config.yaml"),
            "REMEDIATE_PLAYBOOKS": str(work / "playbooks"),
            "REMEDIATE_WEBHOOK_TOKEN": "bench-webhook-token",
            "BENCH_APPROVER": APPROVER,
        },
        work,
    )
    try:
        await web.wait_ready()
        wait_http(f"http://127.0.0.1:{bare_port}/ui/")
        async with httpx2.AsyncClient(base_url=web.url, timeout=30) as http:
            signed = await http.post("/ui/sign-in", data={"token": APPROVER}, follow_redirects=True)
            assert signed.status_code == 200 and "Sign out" in signed.text, signed.text[:300]
            deep = "/ui/"
            for _ in range(39):  # 39 Older links from the first page: the 40th page
                page = (await http.get(deep)).text
                deep = page.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            pages = {
                "first page": "/ui/",
                "filtered page": f"/ui/?playbook={PLAYBOOKS[3]}&status=failed",
                "alert filter": "/ui/?alert=JobsStuck&since=30d",
                "deep page (40th)": deep,
            }
            for url in pages.values():  # warm: the first request of each compiles templates and fills caches
                await timed(http, url, 3)
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{bare_port}", timeout=30) as plain:
                await timed(plain, "/ui/", 20)
                baseline = await timed(plain, "/ui/", requests)
            figures = {name: await timed(http, url, requests) for name, url in pages.items()}
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{bare_port}", timeout=30) as plain:
                baseline = min(baseline, await timed(plain, "/ui/", requests), key=lambda b: pct(b, 95))
        print(f"\n{requests} sequential requests each, {rows:,} runs in the store:")
        b95 = pct(baseline, 95)
        print(f"  {'bare Starlette page (baseline)':<32} p50 {pct(baseline, 50):7.2f} ms  p95 {b95:7.2f} ms")
        for name, took in figures.items():
            p95 = pct(took, 95)
            print(f"  {name:<32} p50 {pct(took, 50):7.2f} ms  p95 {p95:7.2f} ms  = {p95 / b95:5.1f}x baseline p95")
        print("\nquery plan, first page:")
        print(plan(dsn, RunQuery(limit=50)))
        print("query plan, filtered page:")
        print(plan(dsn, RunQuery(limit=50, playbook=PLAYBOOKS[3], status="failed")))
    finally:
        await web.terminate()
        bare.terminate()
        await temporal.shutdown()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.requests))
