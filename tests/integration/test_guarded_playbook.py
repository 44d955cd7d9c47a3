"""A playbook mixing Kubernetes and Redis actions, run through Temporal: typed targets survive the trip."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio as aioredis
from temporalio.client import Client

from service.playbooks import templating
from service.runs.policy import Mode
from service.runs.state import RunState
from tests.support.fake_kube import FakeKube
from tests.support.servers import Redis, serving
from tests.support.stack import TOKEN, run_result, running_stack

PLAYBOOK = """
name: agent-stuck
match: {alertname: AgentStuck}
inputs:
  agent: "{{ alert.labels.agent_id }}"
  lock: "gl:orchestrator:lock:{{ alert.labels.execution_id }}"
diagnose:
  - id: agents
    action: k8s.get_pods
    connection: cluster
    with: {namespace: greenlang, selector: {agent-id: "{{ inputs.agent }}"}}
  - id: lock
    action: redis.get
    connection: cache
    with: {key: "{{ inputs.lock }}"}
act:
  - id: restart-agent
    action: k8s.delete_pods
    connection: cluster
    approval: none
    when: "steps.agents.pods | rejectattr('ready') | list | length > 0"
    with:
      pods: "{{ steps.agents.pods | rejectattr('ready') | list }}"
      max_targets: 2
  - id: release-lock
    action: redis.delete
    connection: cache
    approval: none
    when: "steps.lock.exists"
    with:
      keys: [{key: "{{ inputs.lock }}", value: "{{ steps.lock.value }}"}]
      max_targets: 1
"""


@pytest.fixture
async def world(
    tmp_path: Path, redis_server: Redis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FakeKube, aioredis.Redis, Path]]:
    fake = FakeKube()
    async with serving(fake.app()) as url:
        (tmp_path / "kubeconfig").write_text(fake.kubeconfig(url))
        monkeypatch.setenv("CACHE_URL", redis_server.url)
        (tmp_path / "config.yaml").write_text(
            f"connections:\n  cluster: {{type: kubernetes, kubeconfig: {tmp_path / 'kubeconfig'}}}\n"
            "  cache: {type: redis, url: 'env:CACHE_URL'}\n"
        )
        (tmp_path / "playbooks").mkdir()
        (tmp_path / "playbooks" / "agent.yaml").write_text(PLAYBOOK)
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        yield fake, client, tmp_path
        await client.aclose()


async def run_alert(temporal_client: Client, base: Path, mode: Mode, execution: str) -> RunState:
    starts = datetime.now(UTC)
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "AgentStuck", "agent_id": "a7", "execution_id": execution},
        "startsAt": starts.isoformat(),
        "fingerprint": uuid.uuid4().hex[:16],
    }
    message: dict[str, Any] = {"version": "4", "status": "firing", "alerts": [alert]}
    async with (
        running_stack(
            temporal_client, base / "config.yaml", base / "playbooks", mode, task_queue=f"g-{uuid.uuid4().hex[:8]}"
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        # Forget every template compiled at load time: the workflow must compile inside Temporal's sandbox.
        templating._compiled_expression.cache_clear()
        templating._compiled_template.cache_clear()
        assert (await http.post("/alertmanager", json=message)).json()["started"] == 1
        run_id = f"agent-stuck/{alert['fingerprint']}/{int(starts.timestamp())}"
        state = await run_result(temporal_client, run_id)
        return state


async def test_live_run_deletes_only_the_unready_agent_and_releases_the_stale_lock(
    temporal_client: Client, world: tuple[FakeKube, aioredis.Redis, Path]
) -> None:
    """Exactly the crash-looping pod of agent a7 is deleted and the lock seen at diagnosis is released."""
    fake, cache, base = world
    fake.add_pod("greenlang", "agent-a7-1", {"agent-id": "a7"}, ready=False)
    fake.add_pod("greenlang", "agent-a7-2", {"agent-id": "a7"}, ready=True)
    fake.add_pod("greenlang", "agent-a8-1", {"agent-id": "a8"}, ready=False)
    await cache.set("gl:orchestrator:lock:exec-1", "agent-a7-1")
    state = await run_alert(temporal_client, base, Mode.AUTO, "exec-1")
    assert state.status == "succeeded", state.reason
    assert sorted(name for _, name in fake.pods) == ["agent-a7-2", "agent-a8-1"]
    assert await cache.exists("gl:orchestrator:lock:exec-1") == 0
    restart = next(s for s in state.steps if s.id == "restart-agent")
    assert len(restart.targets) == 1 and restart.targets[0].startswith("pod greenlang/agent-a7-1 uid ")


async def test_dry_run_plans_the_same_targets_and_changes_nothing(
    temporal_client: Client, world: tuple[FakeKube, aioredis.Redis, Path]
) -> None:
    """Dry-run names the same pod (server-side dryRun=All) and the lock, and both are still there after."""
    fake, cache, base = world
    fake.add_pod("greenlang", "agent-a7-1", {"agent-id": "a7"}, ready=False)
    await cache.set("gl:orchestrator:lock:exec-2", "agent-a7-1")
    state = await run_alert(temporal_client, base, Mode.DRY_RUN, "exec-2")
    assert state.status == "succeeded"
    steps = {s.id: s for s in state.steps}
    assert steps["restart-agent"].status == "dry_run" and steps["release-lock"].status == "dry_run"
    assert steps["restart-agent"].result["results"][0]["outcome"] == "would be deleted"  # type: ignore[index,call-overload]
    assert ("greenlang", "agent-a7-1") in fake.pods and await cache.get("gl:orchestrator:lock:exec-2") == "agent-a7-1"


async def test_healthy_agents_mean_no_write(
    temporal_client: Client, world: tuple[FakeKube, aioredis.Redis, Path]
) -> None:
    """With every agent pod ready and no lock, both writes are skipped and nothing is sent."""
    fake, _, base = world
    fake.add_pod("greenlang", "agent-a7-1", {"agent-id": "a7"}, ready=True)
    state = await run_alert(temporal_client, base, Mode.AUTO, "exec-3")
    assert state.status == "succeeded" and {s.id: s.status for s in state.steps if s.phase == "act"} == {
        "restart-agent": "skipped",
        "release-lock": "skipped",
    }
    assert not any(method == "DELETE" for method, _, _ in fake.requests)


LOCK_TTL = """
name: lock-without-ttl
match: {alertname: LockWithoutTtl}
inputs:
  lock: "gl:orchestrator:lock:{{ alert.labels.execution_id }}"
diagnose:
  - id: lock
    action: redis.get
    connection: cache
    with: {key: "{{ inputs.lock }}"}
  - id: ttl
    action: redis.ttl
    connection: cache
    with: {key: "{{ inputs.lock }}"}
act:
  - id: give-ttl
    action: redis.expire
    connection: cache
    when: "steps.lock.exists and steps.ttl.ttl == -1"
    with:
      keys: [{key: "{{ inputs.lock }}", value: "{{ steps.lock.value }}"}]
      max_targets: 1
      ttl: 10m
"""


async def test_a_lock_left_without_a_ttl_gets_one_through_a_real_run(
    temporal_client: Client, world: tuple[FakeKube, aioredis.Redis, Path]
) -> None:
    """redis.expire end to end: webhook, Temporal run, the activity against real Redis; the record names the key."""
    _, cache, base = world
    (base / "playbooks" / "lock-ttl.yaml").write_text(LOCK_TTL)
    await cache.set("gl:orchestrator:lock:exec-9", "agent-a7-1")
    starts = datetime.now(UTC)
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "LockWithoutTtl", "execution_id": "exec-9"},
        "startsAt": starts.isoformat(),
        "fingerprint": uuid.uuid4().hex[:16],
    }
    async with (
        running_stack(
            temporal_client, base / "config.yaml", base / "playbooks", Mode.AUTO, task_queue=f"g-{uuid.uuid4().hex[:8]}"
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        message = {"version": "4", "status": "firing", "alerts": [alert]}
        assert (await http.post("/alertmanager", json=message)).json()["started"] == 1
        run_id = f"lock-without-ttl/{alert['fingerprint']}/{int(starts.timestamp())}"
        state = await run_result(temporal_client, run_id)
    assert state.status == "succeeded", state.reason
    step = next(s for s in state.steps if s.id == "give-ttl")
    assert step.status == "ok" and step.targets == ["key gl:orchestrator:lock:exec-9"]
    assert step.blast_radius == "1 target(s); cap: max_targets 1"
    assert 590 < await cache.ttl("gl:orchestrator:lock:exec-9") <= 600
    assert await cache.get("gl:orchestrator:lock:exec-9") == "agent-a7-1"
