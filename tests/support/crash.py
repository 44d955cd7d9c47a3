"""Crash drills: the service deployed as processes, a worker killed at a named point, writes counted at the target.

Shared by the process-level tests (one round per point) and `tests/faults/` (many rounds, a table).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from temporalio.client import Client
from temporalio.worker import Worker

from service.runs.state import RunState
from service.temporal.client import TemporalRuns
from service.vocabulary.errors import TemporalUnavailable
from tests.support.processes import ServiceProcess, start
from tests.support.servers import Alertmanager, start_alertmanager
from tests.support.target_workflows import Pokeable
from tests.targets.jobs_api import JobsApi

TOKEN = "crash-token"
APPROVER = "U_ONCALL"
APPROVER_TOKEN = "approver-token-of-the-on-call"
KINDS = ("pg", "signal", "http")
POINTS = ("diagnose", "in_flight", "applied", "verify", "gate")

SLOW_TRIGGER = """
create function slow_update() returns trigger language plpgsql as $$
begin if new.queue like 'slow%' then perform pg_sleep(3); end if; return new; end $$;
create trigger jobs_slow before update on jobs for each row execute function slow_update();
"""

_PG = """
name: pg-fix{suffix}
match: {{alertname: CrashJobsStuck{suffix_title}}}
inputs: {{queue: "{{{{ alert.labels.queue }}}}"}}
diagnose:
  - id: pg_diag
    action: postgres.query
    connection: jobs-db
    with:
      sql: select id from jobs where status = 'running' and queue = %(queue)s order by id
      params: {{queue: "{{{{ inputs.queue }}}}"}}
act:
  - id: pg_write
    action: postgres.execute
    connection: jobs-db
    when: "steps.pg_diag.rows | length > 0"
    approval: {approval}
    with:
      sql: update jobs set status = 'pending' where id = any(%(ids)s) and status = 'running'
      params: {{ids: "{{{{ steps.pg_diag.rows | map(attribute='id') | list }}}}"}}
      max_rows: 10
verify:
  - id: pg_verify
    action: postgres.query
    connection: jobs-db
    with:
      sql: select count(*) as n from jobs where queue = %(queue)s and status = 'running'
      params: {{queue: "{{{{ inputs.queue }}}}"}}
    expect: "steps.pg_verify.rows[0].n == 0"
    retry: {{attempts: 10, interval: 1s}}
"""
_SIGNAL = """
name: signal-fix{suffix}
match: {{alertname: CrashWorkflowWaiting{suffix_title}}}
inputs: {{workflow_id: "{{{{ alert.labels.workflow_id }}}}"}}
diagnose:
  - id: sig_diag
    action: temporal.describe
    connection: targets
    with: {{workflow_id: "{{{{ inputs.workflow_id }}}}"}}
act:
  - id: sig_write
    action: temporal.signal
    connection: targets
    when: "steps.sig_diag.status == 'RUNNING'"
    approval: {approval}
    with:
      workflows: "{{{{ [{{'workflow_id': steps.sig_diag.workflow_id, 'run_id': steps.sig_diag.run_id}}] }}}}"
      signal: poke
      args: [remediate]
      max_targets: 1
verify:
  - id: sig_verify
    action: temporal.query
    connection: targets
    with: {{workflow_id: "{{{{ inputs.workflow_id }}}}", query: pokes}}
    expect: "steps.sig_verify.result >= 1"
    retry: {{attempts: 10, interval: 1s}}
"""
_HTTP = """
name: http-fix{suffix}
match: {{alertname: CrashHttpJobStuck{suffix_title}}}
inputs: {{job: "{{{{ alert.labels.job_ref }}}}"}}
diagnose:
  - id: http_diag
    action: http.request
    connection: jobs-api
    with: {{path: "/jobs/{{{{ inputs.job }}}}"}}
act:
  - id: http_write
    action: http.request
    connection: jobs-api
    when: "steps.http_diag.json.status == 'stuck'"
    approval: {approval}
    with: {{method: POST, path: "/jobs/{{{{ inputs.job }}}}/cancel", idempotent: true}}
verify:
  - id: http_verify
    action: http.request
    connection: jobs-api
    with: {{path: "/jobs/{{{{ inputs.job }}}}"}}
    expect: "steps.http_verify.json.status == 'cancelled'"
    retry: {{attempts: 10, interval: 1s}}
"""


def webhook_message(labels: dict[str, str], fingerprint: str, starts: str) -> dict[str, object]:
    """One firing alert as Alertmanager's webhook sends it."""
    alert = {"status": "firing", "labels": labels, "startsAt": starts, "fingerprint": fingerprint}
    return {"version": "4", "status": "firing", "receiver": "remediate", "groupKey": "g", "alerts": [alert]}


def write_playbooks(into: Path) -> Path:
    """Each write kind twice: acting on its own, and behind an approval gate."""
    into.mkdir(parents=True, exist_ok=True)
    for name, text in (("pg", _PG), ("signal", _SIGNAL), ("http", _HTTP)):
        for suffix, approval in (("", "none"), ("-gated", "required")):
            body = text.format(suffix=suffix, suffix_title="Gated" if suffix else "", approval=approval)
            (into / f"{name}{suffix}.yaml").write_text(body)
    return into


def pause_for(kind: str, point: str) -> str | None:
    """The REMEDIATE_PAUSE_AT entry that holds a worker at `point` (in-flight Postgres and HTTP are slow targets)."""
    prefix = {"pg": "pg", "signal": "sig", "http": "http"}[kind]
    return {
        "diagnose": f"before:{prefix}_diag",
        "applied": f"after:{prefix}_write",
        "verify": f"before:{prefix}_verify",
        "in_flight": "before:sig_write" if kind == "signal" else None,
    }.get(point)


@dataclass
class Target:
    """One remediation's target state and the alert that reports it."""

    kind: str
    labels: dict[str, str]
    ref: str  # the row id, workflow id or job id


@dataclass
class Cluster:
    """Web replicas, workers started per round, Alertmanager delivering to every web replica, and the targets."""

    client: Client
    dsn: str
    api: JobsApi
    env: dict[str, str]
    logs: Path
    alertmanager: Alertmanager | None = None
    webs: list[ServiceProcess] = field(default_factory=list)
    workers: list[ServiceProcess] = field(default_factory=list)
    target_queue: str = ""
    _seq: int = 0

    def worker(self, pause_at: str | None = None) -> ServiceProcess:
        self._seq += 1
        env = {**self.env, **({"REMEDIATE_PAUSE_AT": pause_at} if pause_at else {})}
        proc = start(f"worker{self._seq}", ["serve", "--worker-only"], env, self.logs)
        self.workers.append(proc)
        return proc

    def web(self) -> ServiceProcess:
        proc = start(f"web{len(self.webs) + 1}", ["serve", "--web-only"], self.env, self.logs)
        self.webs.append(proc)
        return proc

    async def arm(self, kind: str, slow: bool, gated: bool) -> Target:
        """Create one broken thing of this kind and return the alert labels that report it."""
        tag = uuid.uuid4().hex[:10]
        suffix = "Gated" if gated else ""
        if kind == "pg":
            row = int(time.time() * 1000) % 2_000_000_000
            queue = f"{'slow' if slow else 'q'}-{tag}"
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("insert into jobs values (%s, %s, 'running', 'w', now())", [row, queue])
            return Target(kind, {"alertname": f"CrashJobsStuck{suffix}", "queue": queue}, str(row))
        if kind == "signal":
            workflow_id = f"pokeable-{tag}"
            await self.client.start_workflow(Pokeable.run, id=workflow_id, task_queue=self.target_queue)
            return Target(kind, {"alertname": f"CrashWorkflowWaiting{suffix}", "workflow_id": workflow_id}, workflow_id)
        job = f"{'slow' if slow else 'job'}-{tag}"
        self.api.jobs[job] = "stuck"
        return Target(kind, {"alertname": f"CrashHttpJobStuck{suffix}", "job_ref": job}, job)

    def fire(self, target: Target) -> None:
        assert self.alertmanager is not None
        self.alertmanager.post_alerts([{"labels": target.labels, "annotations": {"summary": "crash drill"}}])

    def resolve(self, target: Target) -> None:
        """End the alert in Alertmanager, so later rounds' groups stay under its max_alerts."""
        assert self.alertmanager is not None
        ended = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        self.alertmanager.post_alerts([{"labels": target.labels, "endsAt": ended}])

    async def writes(self, target: Target) -> int:
        """How often the write was applied at the target (a trigger, the workflow's own count, the API's count)."""
        if target.kind == "pg":
            with psycopg.connect(self.dsn) as conn:
                row = conn.execute("select count(*) from job_updates where job_id = %s", [int(target.ref)]).fetchone()
                return int(row[0]) if row else 0
        if target.kind == "signal":
            result: int = await asyncio.wait_for(self.client.get_workflow_handle(target.ref).result(), 30)
            return result
        return self.api.applied[target.ref]

    async def in_flight(self, target: Target) -> bool:
        if target.kind == "pg":
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                row = conn.execute(
                    "select count(*) from pg_stat_activity where query like 'update jobs%%' and state = 'active'"
                ).fetchone()
                return bool(row and row[0])
        return self.api.received[target.ref] > 0

    async def run_for(self, target: Target, status: str | None = None, within: float = 90) -> RunState:
        """The run whose alert carries these labels, once it finished (or reached `status`)."""
        runs = TemporalRuns(self.client, self.env["REMEDIATE_TASK_QUEUE"])
        prefix = {"pg": "pg-fix", "signal": "signal-fix", "http": "http-fix"}[target.kind]
        query = f"TaskQueue = '{self.env['REMEDIATE_TASK_QUEUE']}' AND WorkflowId STARTS_WITH '{prefix}'"
        deadline, seen = time.monotonic() + within, ""
        while time.monotonic() < deadline:
            for execution in [e async for e in self.client.list_workflows(query)]:
                try:
                    state = await runs.state(execution.id)
                except TemporalUnavailable:
                    continue  # its worker was just killed: the query waits for a replacement

                if state is None or any(state.labels.get(k) != v for k, v in target.labels.items()):
                    continue
                seen = f"{state.status}: {state.reason}"
                if (status and state.status == status) or (not status and state.finished_at is not None):
                    return state
            await asyncio.sleep(0.3)
        raise AssertionError(f"no run for {target.labels} reached {status or 'an end'} in {within}s (last: {seen})")


async def reach(cluster: Cluster, worker: ServiceProcess, target: Target, point: str) -> None:
    """Wait until the faulty worker holds this target's run at the named point."""
    deadline = time.monotonic() + 60
    pause = pause_for(target.kind, point)
    while time.monotonic() < deadline:
        if point == "gate":
            await cluster.run_for(target, status="awaiting_approval", within=60)
            return
        if pause is not None and f"paused {pause} of" in worker.text():
            return
        if pause is None and await cluster.in_flight(target):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{target.kind} never reached {point}:\n{worker.text()[-2000:]}")


async def crash_round(cluster: Cluster, point: str, per_kind: int = 1) -> list[tuple[Target, RunState, int]]:
    """One round: a worker is held at `point` for `per_kind` runs of each write kind, SIGKILLed, and replaced.

    Returns each target with its run's final state and how often its write was applied.
    """
    gated, slow = point == "gate", point == "in_flight"
    pauses = sorted({p for kind in KINDS if (p := pause_for(kind, point))})
    faulty = cluster.worker(",".join(pauses) or None)
    await faulty.wait_ready()
    targets = [await cluster.arm(kind, slow, gated) for kind in KINDS for _ in range(per_kind)]
    for target in targets:
        cluster.fire(target)
    for target in targets:
        await reach(cluster, faulty, target, point)
    replacement = cluster.worker()
    await replacement.wait_ready()
    faulty.kill()
    if gated:
        for target in targets:
            state = await cluster.run_for(target, status="awaiting_approval")
            await approve(cluster.webs[-1].url, state.run_id)
    results = []
    for target in targets:
        state = await cluster.run_for(target)
        results.append((target, state, await cluster.writes(target)))
        cluster.resolve(target)
    assert await replacement.terminate() == 0, replacement.text()[-2000:]
    return results


async def approve(url: str, run_id: str) -> None:
    import httpx2

    async with httpx2.AsyncClient(base_url=url) as http:
        reply = await http.post(f"/api/v1/runs/{run_id}/approve", headers={"Authorization": f"Bearer {APPROVER_TOKEN}"})
        assert reply.status_code in (200, 202), reply.text


@asynccontextmanager
async def pokeable_worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    """The signal target's own worker, on the same Temporal (another task queue), in the test process."""
    async with Worker(client, task_queue=task_queue, workflows=[Pokeable]):
        yield


def cluster_config(dsn_env: str, temporal_address: str, api_url: str) -> str:
    return f"""
approvers: [{APPROVER}]
approver_tokens: {{{APPROVER}: "env:CRASH_APPROVER_TOKEN"}}
connections:
  jobs-db: {{type: postgres, dsn: "env:{dsn_env}", ledger: remediate.ledger, statement_timeout: 10}}
  targets: {{type: temporal, address: "{temporal_address}", namespace: default}}
  jobs-api: {{type: http, base_url: "{api_url}"}}
"""


def base_env(temporal_address: str, task_queue: str, playbooks: Path, config: Path, dsn: str) -> dict[str, str]:
    return {
        "REMEDIATE_TEMPORAL_ADDRESS": temporal_address,
        "REMEDIATE_TASK_QUEUE": task_queue,
        "REMEDIATE_PLAYBOOKS": str(playbooks),
        "REMEDIATE_CONFIG": str(config),
        "REMEDIATE_MODE": "auto",
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
        "REMEDIATE_HEARTBEAT_TIMEOUT": "2",
        "REMEDIATE_SHUTDOWN_GRACE": "10",
        "REMEDIATE_DEDUPE_TTL": "1",
        "REMEDIATE_ATTEMPT_BACKOFF": "1",
        "CRASH_DB_DSN": dsn,
        "CRASH_APPROVER_TOKEN": APPROVER_TOKEN,
    }


def start_cluster_alertmanager(cluster: Cluster, root: Path) -> None:
    cluster.alertmanager = start_alertmanager(root, [f"{w.url}/alertmanager" for w in cluster.webs], TOKEN)
