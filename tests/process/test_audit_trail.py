"""The audit trail as deployed: `remediate migrate audit`, `remediate serve` with a real Postgres store, runs that
outlive their Temporal history or were terminated, `remediate runs show` and `remediate audit export` as processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx2
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client

from service.runs.listing import RunQuery
from service.runs.state import short_id
from service.temporal.client import TemporalRuns
from tests.support.deployment import AUTH, ONCALL, alert, cli, env, finished, until, write_config
from tests.support.jobs import new_database
from tests.support.processes import start
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import Postgres, serving

NAME = "audit-drill"
GATED = "audit-gated"


def recorded(dsn: str, run_id: str) -> dict[str, int]:
    """Audit records per kind for one run, read straight from the store's table."""
    with psycopg.connect(dsn) as db:
        rows = db.execute("select kind, count(*) from remediate_audit_events where run_id = %s group by kind", [run_id])
        return {kind: count for kind, count in rows}


def last_status(dsn: str, run_id: str) -> str:
    with psycopg.connect(dsn) as db:
        row = db.execute("select status from remediate_audit_runs where run_id = %s", [run_id]).fetchone()
        return row[0] if row else ""


def _waiting(dsn: str) -> int:
    return len(_waiting_ids(dsn))


def _waiting_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as db:
        rows = db.execute("select run_id from remediate_audit_runs where status = 'awaiting_approval'")
        return [row[0] for row in rows]


async def metrics(http: httpx2.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def until_metric(http: httpx2.AsyncClient, name: str, labels: dict[str, str], want: float) -> None:
    """The gauges are refreshed every few seconds from the audit store: poll the scrape."""
    key = (name, tuple(sorted(labels.items())))
    for _ in range(150):
        if (await metrics(http)).get(key) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}{labels} never became {want}: {(await metrics(http)).get(key)}")


async def deleted(client: Client, run_id: str) -> None:
    """Delete the run's workflow through Temporal's API, as retention eventually does, and wait until it is gone."""
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=run_id)
        )
    )
    runs, status = TemporalRuns(client, "unused"), None
    for _ in range(600):
        status = await runs.execution_status(run_id)
        if status is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} was not deleted: {status}")


async def test_runs_outlive_their_history_a_terminated_run_shows_its_steps_and_the_trail_exports(
    postgres: Postgres, temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Serve refuses an unmigrated store; after `migrate audit`, a finished run whose workflow was deleted is still
    shown by `runs show` and the API, a run terminated after its write shows that write, and `audit export`
    writes each record once as JSON Lines."""
    dsn, queue, target = new_database(postgres), f"audit-{uuid.uuid4().hex[:8]}", RailTarget()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "drill.yaml").write_text(playbook(NAME, "AuditDrill"))
    async with serving(target.app()) as url:
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
        settings["REMEDIATE_DATABASE_URL"] = dsn
        refused = start("unmigrated", ["serve"], settings, tmp_path)
        assert await asyncio.to_thread(refused.proc.wait, 60) == 2
        assert "run `remediate migrate audit`" in refused.log.read_text()
        migrated = await cli(["migrate", "audit"], settings)
        assert migrated.returncode == 0 and "audit store is ready" in migrated.stdout, migrated.stderr

        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                await http.post("/alertmanager", json=alert("AuditDrill", "a1"))
                (done,) = await finished(temporal_client, queue, NAME, 1)
                await until(lambda: last_status(dsn, done.run_id) == "succeeded")
                await deleted(temporal_client, done.run_id)
                shown = await cli(["runs", "show", short_id(done.run_id)], settings)
                assert shown.returncode == 0, shown.stderr
                assert "status: succeeded" in shown.stdout and "[act] fix: http.request on target — ok" in shown.stdout
                api = await http.get(f"/api/v1/runs/{done.run_id}")
                assert api.status_code == 200 and api.json()["status"] == "succeeded"

                target.verify_open.clear()  # the next run writes, then waits in verify until it is terminated
                await http.post("/alertmanager", json=alert("AuditDrill", "a2"))
                await until(lambda: target.writes["a2"] == 1)
                run_id = (await TemporalRuns(temporal_client, queue).list(RunQuery(playbook=NAME))).runs[0].run_id
                await until(lambda: recorded(dsn, run_id).get("step", 0) >= 2)  # the read and the write
                await temporal_client.get_workflow_handle(run_id).terminate(reason="audit drill")
                cut = await cli(["runs", "show", run_id], settings)
                assert "status: cancelled — terminated in Temporal" in cut.stdout and "while verifying" in cut.stdout
                assert "[act] fix: http.request on target — ok" in cut.stdout
                listed = await cli(["runs", "list", "--playbook", NAME], settings)
                rows = [line for line in listed.stdout.splitlines() if NAME in line]
                assert len(rows) == 2 and "cancelled" in listed.stdout, listed.stdout

                # A third run waits at an approval gate, then is approved (no verify: the target still holds those).
                gated = books / "gated.yaml"
                gated.write_text(
                    playbook(GATED, "AuditGated").replace("approval: none", "approval: required").split("verify:")[0]
                    + "approvers: [oncall]\n"
                )
                oncall = {"Authorization": f"Bearer {ONCALL}"}
                assert (await http.post("/api/v1/playbooks/reload", headers=oncall)).status_code == 200
                await http.post("/alertmanager", json=alert("AuditGated", "g1"))
                await until(lambda: _waiting(dsn) == 1)
                await until_metric(http, "remediate_approvals_pending", {}, 1.0)
                (gate_run,) = _waiting_ids(dsn)
                decided = await http.post(
                    f"/api/v1/runs/{gate_run}/approve", json={}, headers={"Authorization": f"Bearer {ONCALL}"}
                )
                assert decided.status_code == 200, decided.text
                await until(lambda: last_status(dsn, gate_run) == "succeeded")
                await until_metric(http, "remediate_approvals_pending", {}, 0.0)
                scrape = await metrics(http)
                # What the three runs imply: a1 and g1 succeeded (a2 was terminated: it never ended); three writes
                # (a1, a2, g1), each touching one target; reads: a1 check+verify, a2 check, g1 check and its
                # re-diagnosis after approval; g1 also previewed its write as a dry-run for the request and again
                # after the re-diagnosis.
                assert scrape[("remediate_runs_total", (("playbook", NAME), ("status", "succeeded")))] == 1.0
                assert scrape[("remediate_runs_total", (("playbook", GATED), ("status", "succeeded")))] == 1.0
                assert scrape[("remediate_writes_total", (("action", "http.request"), ("outcome", "ok")))] == 3.0
                assert scrape[("remediate_writes_total", (("action", "http.request"), ("outcome", "dry_run")))] == 2.0
                assert scrape[("remediate_targets_touched_total", (("action", "http.request"),))] == 3.0
                reads = (("action", "http.request"), ("effect", "read"), ("outcome", "ok"))
                assert scrape[("remediate_step_seconds_count", reads)] == 5.0
                assert scrape[("remediate_approval_decision_seconds_count", (("outcome", "approved"),))] == 1.0
                assert scrape[("remediate_worker_up", ())] == 1.0
                assert scrape[("remediate_audit_records_total", ())] > 0
        finally:
            target.verify_open.set()
            await service.terminate()

        out = tmp_path / "audit.jsonl"
        exported = await cli(["audit", "export", "--playbook", NAME, "--since", "1d", "-o", str(out)], settings)
        assert exported.returncode == 0, exported.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        first = [(r["kind"], r["key"].split("/")[0:3]) for r in lines if r["run_id"] == done.run_id]
        assert [kind for kind, _ in first].count("step") == 3 and ("run", ["run", "succeeded"]) in first
        assert len({(r["run_id"], r["key"]) for r in lines}) == len(lines)  # each record once
        assert f"{len(lines)} record(s) exported" in exported.stderr
