"""Runbook 000 end to end: Prometheus fires WorkflowStuck, Alertmanager delivers, the playbook fixes Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from service.runs.policy import Mode
from tests.support.fake_kube import FakeKube
from tests.support.jobs import new_database
from tests.support.pipeline import Pipeline, connections_config, pipeline
from tests.support.servers import Postgres, serving
from tests.targets.llm_orchestrator import LlmOrchestrator


@dataclass
class World:
    orchestrator: LlmOrchestrator
    kube: FakeKube
    config: str
    scrape: str


@pytest.fixture
async def world(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    dsn = new_database(postgres)
    monkeypatch.setenv("LLM_ORCHESTRATOR_DSN", dsn)
    orchestrator, kube = LlmOrchestrator(dsn), FakeKube()
    kube.add_deployment("llm-orchestrator", "orchestrator", replicas=2)
    for i in range(2):
        kube.add_pod("llm-orchestrator", f"executor-{i}", {"app": "orchestrator", "role": "executor"})
    async with serving(orchestrator.app()) as api, serving(kube.app()) as kube_url:
        (tmp_path / "kubeconfig").write_text(kube.kubeconfig(kube_url))
        config = connections_config(llm_api=api, kubeconfig=str(tmp_path / "kubeconfig"))
        yield World(orchestrator, kube, config, api.removeprefix("http://"))


def running(world: World, client: Client, mode: Mode) -> AbstractAsyncContextManager[Pipeline]:
    return pipeline(client, world.config, mode, "workflow-stuck.yaml", [world.scrape])


async def test_dry_run_names_the_stuck_workflows_and_changes_nothing(world: World, temporal_client: Client) -> None:
    """The plan lists a cancel for each stuck workflow only; no API call is made and no row changes."""
    world.orchestrator.seed(stuck=["wf-1", "wf-2"], fresh=["wf-3"])
    async with running(world, temporal_client, Mode.DRY_RUN) as p:
        [state] = await p.runs()
    cancel = next(s for s in state.steps if s.id == "cancel")
    assert state.status == "succeeded", state.reason
    assert cancel.status == "dry_run"
    assert [t.rsplit("/", 2)[-2] for t in cancel.targets] == ["wf-1", "wf-2"]
    assert world.orchestrator.cancels == [] and world.orchestrator.updates() == []


async def test_live_cancels_exactly_the_stuck_workflows_once(world: World, temporal_client: Client) -> None:
    """In auto, each stuck workflow is cancelled once through the API, the fresh one is untouched, verify passes."""
    world.orchestrator.seed(stuck=["wf-1", "wf-2"], fresh=["wf-3"])
    async with running(world, temporal_client, Mode.AUTO) as p:
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert sorted(world.orchestrator.cancels) == ["wf-1", "wf-2"]
    assert world.orchestrator.states() == {"wf-1": "cancelled", "wf-2": "cancelled", "wf-3": "running"}
    assert sorted(world.orchestrator.updates()) == [("wf-1", "cancelled"), ("wf-2", "cancelled")]
    assert {s.id: s.status for s in state.steps if s.phase == "act"} == {
        "cancel": "ok",
        "mark-failed": "skipped",
        "restart-executors": "skipped",
        "scale-out": "skipped",
    }
    assert next(s for s in state.steps if s.id == "none-stuck").status == "ok"


async def test_healthy_orchestrator_means_no_write(world: World, temporal_client: Client) -> None:
    """With nothing stuck (the alert posted by hand), diagnosis finds nothing and nothing is written."""
    world.orchestrator.seed(fresh=["wf-3"])
    async with running(world, temporal_client, Mode.AUTO) as p:
        p.fire({"alertname": "WorkflowStuck", "namespace": "llm-orchestrator", "service": "llm-orchestrator"})
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert all(s.status == "skipped" for s in state.steps if s.phase == "act")
    assert world.orchestrator.cancels == [] and world.orchestrator.updates() == []
    assert not any(method != "GET" for method, _, _ in world.kube.requests)


async def test_the_sql_fallback_waits_for_approval(world: World, temporal_client: Client) -> None:
    """When the API cannot cancel one workflow, marking it failed in SQL waits for an approval, then runs once."""
    world.orchestrator.seed(stuck=["wf-1", "wf-2"])
    world.orchestrator.broken.add("wf-2")
    async with running(world, temporal_client, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        assert world.orchestrator.states() == {"wf-1": "cancelled", "wf-2": "running"}  # option 1 needs no approval
        assert waiting.gate is not None
        assert [w.step for w in waiting.gate.request.writes if w.gated] == ["mark-failed"]
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    assert world.orchestrator.states() == {"wf-1": "cancelled", "wf-2": "failed"}
    assert sorted(world.orchestrator.updates()) == [("wf-1", "cancelled"), ("wf-2", "failed")]
    assert state.gate is not None and state.gate.approved_by == ["U_ONCALL"]
