"""Shadow mode as deployed: `remediate serve` behind a real Alertmanager plans for real and changes nothing, then
records whether the alert cleared by itself or a human changed the planned targets; `remediate report promotion`
and `remediate replay --audit` read those runs back as processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.replay.history import fingerprint
from tests.support.deployment import ONCALL, TOKEN, cli, env, until, write_config
from tests.support.jobs import new_database
from tests.support.processes import start
from tests.support.servers import Postgres, free_port, scratch, serving, start_alertmanager

PLAYBOOK = """
name: shadow-drill
mode: shadow
match: {alertname: ShadowDrill}
inputs: {key: "{{ alert.labels.key }}"}
diagnose:
  - id: check
    action: http.request
    connection: target
    with: {path: "/pods/{{ inputs.key }}"}
act:
  - id: restart
    action: http.request
    connection: target
    approval: none
    when: "steps.check.json.stuck | length > 0"
    for_each: "steps.check.json.stuck"
    max_items: 5
    with: {method: POST, path: "/restart/{{ item }}"}
verify:
  - id: healthy
    action: http.request
    connection: target
    with: {path: "/pods/{{ inputs.key }}"}
    expect: "steps.healthy.json.stuck | length == 0"
limits:
  effective_within: 8s
"""


class Pods:
    """The target: which pods are stuck per key, and every restart anyone sent (shadow must send none)."""

    def __init__(self) -> None:
        self.stuck = {"k1": ["pod-a", "pod-b"], "k2": ["pod-c", "pod-d"]}
        self.restarts: list[str] = []

    def app(self) -> Starlette:
        async def pods(request: Request) -> Response:
            return JSONResponse({"stuck": self.stuck.get(request.path_params["key"], [])})

        async def restart(request: Request) -> Response:
            self.restarts.append(request.path_params["pod"])
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/pods/{key}", pods), Route("/restart/{pod}", restart, methods=["POST"])])


def _watches(dsn: str) -> dict[str, dict[str, object]]:
    """The shadow records in the audit store, by the alert's key."""
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "select r.state->'labels'->>'key', e.record from remediate_audit_events e "
            "join remediate_audit_runs r using (run_id, attempt) where e.kind = 'shadow'"
        ).fetchall()
    return {key: record for key, record in rows}


def _alert(key: str, ends: datetime | None = None) -> dict[str, object]:
    found: dict[str, object] = {"labels": {"alertname": "ShadowDrill", "key": key}, "annotations": {"summary": key}}
    if ends is not None:
        found["endsAt"] = ends.isoformat()
    return found


async def test_shadow_runs_record_cleared_without_action_and_a_human_acted(
    postgres: Postgres, temporal_env_address: str, tmp_path: Path
) -> None:
    """Two alerts through Alertmanager: k1 resolves with its pods untouched (cleared without action); k2's pod-c is
    fixed by hand while the run watches (a human acted). Nothing is restarted by remediate; the promotion report
    and the replay of the audit trail say so."""
    dsn, queue, pods, port = new_database(postgres), f"shadow-{uuid.uuid4().hex[:8]}", Pods(), free_port()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "drill.yaml").write_text(PLAYBOOK)
    am = start_alertmanager(scratch("am-shadow"), f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    try:
        async with serving(pods.app()) as url:
            settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
            settings["REMEDIATE_DATABASE_URL"] = dsn
            migrated = await cli(["migrate", "audit"], settings)
            assert migrated.returncode == 0, migrated.stderr
            service = start("serve", ["serve"], settings, tmp_path, port=port)
            try:
                await service.wait_ready()
                await asyncio.to_thread(am.post_alerts, [_alert("k1"), _alert("k2")])
                await until(lambda: len(_watches(dsn)) == 0 and _planned(dsn) == 2, within=60)
                await asyncio.to_thread(am.post_alerts, [_alert("k1", ends=datetime.now(UTC))])
                pods.stuck["k2"] = ["pod-d"]  # someone restarted pod-c by hand
                await until(lambda: len(_watches(dsn)) == 2, within=60)
                await _console_shows_it(service.url)
            finally:
                assert await service.terminate() == 0, service.text()[-2000:]
    finally:
        am.process.stop()

    watches = _watches(dsn)
    assert watches["k1"]["verdict"] == "cleared_without_action", watches["k1"]
    assert watches["k1"]["changed"] == [] and watches["k1"]["cleared_after"] is not None
    assert watches["k2"]["verdict"] == "human_acted", watches["k2"]
    assert watches["k2"]["changed"] == [f"POST {url}/restart/pod-c"] and watches["k2"]["verify"] == "failed"
    assert pods.restarts == []  # shadow planned every write and sent none

    report = await cli(["report", "promotion", "shadow-drill", "--since", "1h"], settings)
    assert report.returncode == 0, report.stderr
    assert "verdict: not enough evidence yet: 2 run(s) planned a write, 10 are needed" in report.stdout
    assert "1 cleared only after a human changed the same targets; 1 cleared without action" in report.stdout
    assert "never promotes by itself" in report.stdout

    replayed = await cli(["replay", "--audit", "--since", "1h", "--format", "json"], settings)
    assert replayed.returncode == 0, replayed.stderr
    [drill] = [p for p in json.loads(replayed.stdout)["playbooks"] if p["name"] == "shadow-drill"]
    assert drill["occurrences"] == 2 and drill["outcomes"] == {"acted": 2}  # in auto, both would have written
    with psycopg.connect(dsn) as db:  # Alertmanager's own fingerprints are the ones replay computes
        rows = db.execute("select state->'labels', state->>'fingerprint' from remediate_audit_runs").fetchall()
    assert rows and all(fingerprint(labels) == fp for labels, fp in rows)


async def _console_shows_it(url: str) -> None:
    """The console's promotion panel says what the CLI says; a run's page shows what its watch saw."""
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
        signed = await http.post("/ui/sign-in", data={"token": ONCALL}, follow_redirects=False)
        assert signed.status_code == 303
        page = await http.get("/ui/playbooks/shadow-drill/promotion")
        assert page.status_code == 200
        assert "not enough evidence yet: 2 run(s) planned a write, 10 are needed" in page.text
        assert "a human acted 1" in page.text and "cleared without action 1" in page.text
        assert (await http.get("/ui/playbooks/shadow-drill/promotion?since=1y")).status_code == 400
        assert (await http.get("/ui/playbooks/nope/promotion")).status_code == 404
        listed = await http.get("/ui/?playbook=shadow-drill")
        run = listed.text.split('href="/ui/runs/', 1)[1].split('"', 1)[0]
        story = await http.get(f"/ui/runs/{run}")
        assert "<dt>Shadow</dt>" in story.text


def _planned(dsn: str) -> int:
    """Runs whose plan is recorded (their watch has begun)."""
    with psycopg.connect(dsn) as db:
        row = db.execute(
            "select count(*) from remediate_audit_runs where state->'shadow'->>'verdict' = 'watching'"
        ).fetchone()
    return int(row[0]) if row else 0
