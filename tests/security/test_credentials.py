"""Issue 9, item 6: who may do what. The webhook's credential feeds alerts; only approver tokens decide, as
themselves; an open service only on loopback; readiness details only for callers with credentials."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from service.config_file import ConfigFile
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision
from service.vocabulary.errors import RunUnknown
from service.web.app import health_routes
from service.web.credentials import ApproverTokens, WebAuth
from service.web.decisions import decision_routes
from tests.support.processes import REMEDIATE
from tests.support.servers import free_port

WEBHOOK = "webhook-token-held-by-alertmanager"
ALICE = "alice-approver-token-0001"
ONCALL = "oncall-group-token-00002"


class Runs(TemporalRuns):
    """Records decisions; one run id is unknown."""

    def __init__(self) -> None:
        self.decided: list[tuple[str, Decision]] = []

    async def decide(self, run_id: str, decision: Decision) -> None:
        if run_id == "nope/x/1":
            raise RunUnknown("no run nope/x/1")
        self.decided.append((run_id, decision))

    async def decision(self, run_id: str, decision_id: str, within: float = 3.0) -> None:
        return None


def api() -> tuple[TestClient, Runs]:
    runs = Runs()
    tokens = ApproverTokens({ALICE: "U_ALICE", ONCALL: "group:oncall"})
    app = Starlette(routes=decision_routes(runs, WebAuth(token=WEBHOOK), tokens, []))
    return TestClient(app), runs


def test_the_webhook_credential_cannot_approve_and_anonymous_callers_cannot_either() -> None:
    """Reproduction: the credential Alertmanager holds approved, naming anyone; now 403, and no token is 401."""
    http, runs = api()
    as_webhook = http.post(
        "/api/v1/runs/p/f/1/approve", json={"approver": "U_ALICE"}, headers={"Authorization": f"Bearer {WEBHOOK}"}
    )
    assert as_webhook.status_code == 403 and "cannot decide" in as_webhook.json()["error"]
    assert http.post("/api/v1/runs/p/f/1/approve", json={"approver": "U_ALICE"}).status_code == 401
    assert runs.decided == []


def test_the_approver_is_who_the_token_says_never_who_the_body_says() -> None:
    """A token decides as its own identity; naming someone else in the body is 403."""
    http, runs = api()
    headers = {"Authorization": f"Bearer {ALICE}"}
    assert http.post("/api/v1/runs/p/f/1/approve", json={"approver": "U_BOB"}, headers=headers).status_code == 403
    assert http.post("/api/v1/runs/p/f/1/approve", json={}, headers=headers).status_code == 202
    group = http.post("/api/v1/runs/p/f/1/reject", headers={"Authorization": f"Bearer {ONCALL}"}, json={})
    assert group.status_code == 202
    assert [(d.user, d.verdict) for _, d in runs.decided] == [("U_ALICE", "approve"), ("group:oncall", "reject")]


def test_an_unknown_run_is_404_on_approve_and_reject() -> None:
    """Reproduction: approving an unknown run answered 409; now 404 on every run route."""
    http, _ = api()
    for verb in ("approve", "reject"):
        reply = http.post(f"/api/v1/runs/nope/x/1/{verb}", json={}, headers={"Authorization": f"Bearer {ALICE}"})
        assert reply.status_code == 404


@pytest.mark.parametrize("gate", ["g" * 300_000, "../x", ""])
def test_hostile_gate_names_and_oversized_bodies_get_4xx(gate: str) -> None:
    """Reproduction: a 300,000-character gate grew a run's decision list until it wedged; now 400 or 413."""
    http, runs = api()
    reply = http.post("/api/v1/runs/p/f/1/approve", json={"gate": gate}, headers={"Authorization": f"Bearer {ALICE}"})
    assert reply.status_code in (400, 413) and runs.decided == []


def test_group_tokens_decide_as_the_group_which_gates_accept() -> None:
    """A group's own token is accepted where the playbook names the group; tokens must be long and distinct."""
    config = ConfigFile(approvers=["oncall"], approver_groups={"oncall": ["U_A"]}, approver_tokens={"oncall": "env:X"})
    assert config.resolve_approvers([]) == ["U_A", "group:oncall"]


def test_readiness_details_only_for_callers_with_credentials() -> None:
    """Reproduction: an unauthenticated /readyz showed connection names and raw errors; now a bare answer."""

    async def failing() -> None:
        raise OSError("connect to postgresql://u:s3cret@db:5432 failed")

    auth = WebAuth(token=WEBHOOK)
    app = Starlette(
        routes=health_routes(
            {"connection:db": failing}, __import__("prometheus_client").CollectorRegistry(), None, auth.allows
        )
    )
    http = TestClient(app)
    assert http.get("/readyz").json() == {"ready": False}
    detailed = http.get("/readyz", headers={"Authorization": f"Bearer {WEBHOOK}"}).json()
    assert "connection:db" in detailed["checks"]


async def test_serve_refuses_an_open_webhook_off_loopback(tmp_path: Path) -> None:
    """Reproduction: with no credentials the service listened on 0.0.0.0 for anyone; now it refuses to start
    unless it listens on loopback or REMEDIATE_ALLOW_UNAUTHENTICATED=true is set."""
    env = {
        "REMEDIATE_LISTEN": f"0.0.0.0:{free_port()}",
        "REMEDIATE_PLAYBOOKS": str(tmp_path),
        "REMEDIATE_TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    proc = await asyncio.create_subprocess_exec(
        REMEDIATE,
        "serve",
        "--web-only",
        env={"PATH": str(Path(sys.executable).parent), **env},
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"refusing to serve an open webhook" in err
    port = free_port()
    env.update({"REMEDIATE_LISTEN": f"0.0.0.0:{port}", "REMEDIATE_ALLOW_UNAUTHENTICATED": "true"})
    proc = await asyncio.create_subprocess_exec(
        REMEDIATE,
        "serve",
        "--web-only",
        env={"PATH": str(Path(sys.executable).parent), **env},
        stderr=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx2.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx2.HTTPError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("serve with REMEDIATE_ALLOW_UNAUTHENTICATED=true did not start")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_a_flood_of_decisions_keeps_the_gate_bounded() -> None:
    """Reproduction: every decision grew the run's list until its queries failed; a gate now keeps 100 besides the
    counted ones, and a real approver still gets through after a flood."""
    from service.vocabulary.approvals import MAX_DECISIONS
    from tests.support.gates import gate as new_gate

    gate = new_gate()
    outcomes = [
        gate.apply(Decision(verdict="approve", user="U_MALLORY", decision_id=f"d{i}")).outcome for i in range(150)
    ]
    assert len(gate.decisions) == MAX_DECISIONS and outcomes[-1] == "refused"
    assert gate.apply(Decision(verdict="approve", user="U_ALICE", decision_id="real")).outcome == "counted"
    assert gate.status == "approved" and len(gate.decisions) == MAX_DECISIONS + 1
