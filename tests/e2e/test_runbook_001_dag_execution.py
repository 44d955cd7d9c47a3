"""Runbook 001 end to end: OrchestratorExecutionTimeout fires as written; lock, agent and resume chosen by diagnosis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from temporalio.client import Client

from service.runs.policy import Mode
from tests.support.fake_kube import FakeKube
from tests.support.pipeline import Pipeline, connections_config, pipeline
from tests.support.servers import Redis, serving
from tests.targets.greenlang import GreenLang

LOCK = "gl:orchestrator:lock:exec-7c1f"


@dataclass
class World:
    orchestrator: GreenLang
    kube: FakeKube
    cache: aioredis.Redis
    config: str
    scrape: str


@pytest.fixture
async def world(redis_server: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("GREENLANG_REDIS_URL", redis_server.url)
    cache = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await cache.flushdb()
    orchestrator, kube = GreenLang(), FakeKube()
    kube.add_deployment("greenlang", "orchestrator-service")
    async with serving(orchestrator.app()) as api, serving(kube.app()) as kube_url:
        (tmp_path / "kubeconfig").write_text(kube.kubeconfig(kube_url))
        config = connections_config(greenlang_api=api, kubeconfig=str(tmp_path / "kubeconfig"))
        yield World(orchestrator, kube, cache, config, api.removeprefix("http://"))
    await cache.aclose()


async def stuck_agent(world: World) -> None:
    """Execution exec-7c1f stuck on node n3; agent a7's pod crash-loops and still holds the execution lock."""
    world.orchestrator.stuck()
    world.kube.add_pod("greenlang", "agent-a7-0", {"agent-id": "a7"}, ready=False)
    world.kube.add_pod("greenlang", "agent-a8-0", {"agent-id": "a8"}, ready=False)  # another agent: not ours
    world.kube.logs[("greenlang", "agent-a7-0")] = ["start", "calling ERP connector", "timeout waiting for ERP"]
    await world.cache.set(LOCK, "agent-a7-0")


def running(world: World, client: Client, mode: Mode) -> AbstractAsyncContextManager[Pipeline]:
    return pipeline(client, world.config, mode, "dag-execution-stuck.yaml", [world.scrape])


async def test_dry_run_plans_lock_release_agent_restart_and_resume(world: World, temporal_client: Client) -> None:
    """The plan names the lock, exactly agent a7's pod and the resume call; nothing is changed anywhere."""
    await stuck_agent(world)
    async with running(world, temporal_client, Mode.DRY_RUN) as p:
        [state] = await p.runs()
    steps = {s.id: s for s in state.steps}
    assert state.status == "succeeded", state.reason
    assert steps["release-lock"].targets == [f"key {LOCK}"]
    assert [t.split(" uid")[0] for t in steps["restart-agent"].targets] == ["pod greenlang/agent-a7-0"]
    assert steps["resume"].status == "dry_run" and steps["cancel"].status == "skipped"
    assert steps["reduce-concurrency"].status == "skipped"
    assert "timeout waiting for ERP" in str(steps["agent-logs"].result)
    assert world.orchestrator.writes == [] and await world.cache.get(LOCK) == "agent-a7-0"
    assert ("greenlang", "agent-a7-0") in world.kube.pods


async def test_live_releases_restarts_and_resumes_once(world: World, temporal_client: Client) -> None:
    """After approval: the dead holder's lock is released, agent a7's pod restarted, the execution resumed once."""
    await stuck_agent(world)
    async with running(world, temporal_client, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        await p.approve(waiting.run_id)
        [state] = await p.runs(status="succeeded")
    assert world.orchestrator.writes == [("resume", "exec-7c1f")]
    assert world.orchestrator.executions["exec-7c1f"].status == "completed"
    assert await world.cache.get(LOCK) is None
    assert sorted(name for _, name in world.kube.pods) == ["agent-a8-0"]
    assert next(s for s in state.steps if s.id == "execution-after").status == "ok"


async def test_healthy_execution_means_no_write(world: World, temporal_client: Client) -> None:
    """For an execution that already finished (alert posted by hand), nothing is released, restarted or resumed."""
    world.orchestrator.finished("exec-done")
    world.kube.add_pod("greenlang", "agent-a7-0", {"agent-id": "a7"}, ready=True)
    async with running(world, temporal_client, Mode.AUTO) as p:
        p.fire(
            {
                "alertname": "OrchestratorExecutionTimeout",
                "execution_id": "exec-done",
                "dag_id": "scope3-monthly",
                "namespace": "greenlang",
            }
        )
        [state] = await p.runs()
    assert state.status == "succeeded", state.reason
    assert all(s.status == "skipped" for s in state.steps if s.phase == "act")
    assert world.orchestrator.writes == [] and not any(m != "GET" for m, _, _ in world.kube.requests)


async def test_lock_release_and_restart_wait_for_approval(world: World, temporal_client: Client) -> None:
    """Deleting the lock and the pod waits for an approval; nothing is touched before it arrives."""
    await stuck_agent(world)
    async with running(world, temporal_client, Mode.AUTO) as p:
        [waiting] = await p.runs(status="awaiting_approval")
        assert waiting.gate is not None
        assert [w.step for w in waiting.gate.request.writes if w.gated] == ["release-lock", "restart-agent"]
        assert await world.cache.get(LOCK) == "agent-a7-0" and world.orchestrator.writes == []
        assert not any(m == "DELETE" and "dryRun=All" not in q for m, _, q in world.kube.requests)
        assert ("greenlang", "agent-a7-0") in world.kube.pods  # only the server-side dry-run was sent
        await p.approve(waiting.run_id)
        await p.runs(status="succeeded")
    assert await world.cache.get(LOCK) is None and world.orchestrator.writes == [("resume", "exec-7c1f")]
