"""Redis and BullMQ actions against a real Redis server (with KEYS disabled)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.playbooks.systems.redis import RedisConnection
from service.playbooks.templating import render
from service.runs.registry import Registry
from service.runs.state import StepRequest, StepResult
from service.targets.redis import RedisAdapter
from service.vocabulary.errors import GuardViolation
from tests.support.servers import Redis


@pytest.fixture
async def rds(redis_server: Redis, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[aioredis.Redis, Registry]]:
    monkeypatch.setenv("TEST_REDIS_URL", redis_server.url)
    adapter = RedisAdapter({"cache": RedisConnection(type="redis", url="env:TEST_REDIS_URL")})
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    yield client, Registry([adapter.actions()], require_all=False)
    await adapter.close()
    await client.aclose()


async def call(registry: Registry, action: str, dry_run: bool = False, **params: Any) -> Any:
    result: StepResult = await registry.dispatch(
        StepRequest(run_id="r", step_id="s", action=action, connection="cache", params=params, dry_run=dry_run)
    )
    return result


async def test_scan_is_capped_and_never_uses_keys(rds: tuple[aioredis.Redis, Registry]) -> None:
    """SCAN returns at most `limit` keys and says when it stopped early (KEYS is disabled on this server)."""
    client, registry = rds
    for i in range(30):
        await client.set(f"gl:orchestrator:lock:exec-{i}", "worker-1")
    await client.set("other:key", "x")
    result = await call(registry, "redis.scan", match="gl:orchestrator:lock:*", limit=10, count=5)
    assert result.data["count"] == 10 and result.data["truncated"] is True
    everything = await call(registry, "redis.scan", match="gl:orchestrator:lock:*", limit=100)
    assert everything.data["count"] == 30 and everything.data["truncated"] is False


async def test_get_and_ttl_distinguish_missing_from_no_expiry(rds: tuple[aioredis.Redis, Registry]) -> None:
    """TTL is -1 for a key without expiry, -2 for a missing key, seconds otherwise."""
    client, registry = rds
    await client.set("lock:a", "holder-1")
    await client.set("lock:b", "holder-2", ex=100)
    assert (await call(registry, "redis.ttl", key="lock:a")).data["ttl"] == -1
    assert (await call(registry, "redis.ttl", key="lock:missing")).data["ttl"] == -2
    assert 0 < (await call(registry, "redis.ttl", key="lock:b")).data["ttl"] <= 100
    assert (await call(registry, "redis.get", key="lock:a")).data == {
        "key": "lock:a",
        "value": "holder-1",
        "exists": True,
    }


async def test_compare_and_delete_spares_a_lock_reacquired_since_diagnosis(
    rds: tuple[aioredis.Redis, Registry],
) -> None:
    """A lock taken by another holder between diagnosis and action is not deleted; the stale one is."""
    client, registry = rds
    await client.set("gl:orchestrator:lock:exec-1", "worker-dead")
    await client.set("gl:orchestrator:lock:exec-2", "worker-dead")
    seen = [
        {"key": "gl:orchestrator:lock:exec-1", "value": "worker-dead"},
        {"key": "gl:orchestrator:lock:exec-2", "value": "worker-dead"},
    ]
    await client.set("gl:orchestrator:lock:exec-2", "worker-new")  # re-acquired after diagnosis
    dry = await call(registry, "redis.delete", dry_run=True, keys=seen, max_targets=2)
    assert [r["outcome"] for r in dry.data["results"]] == ["would be deleted", "would be kept: value changed"]
    assert await client.exists("gl:orchestrator:lock:exec-1") == 1
    done = await call(registry, "redis.delete", keys=seen, max_targets=2)
    assert done.data["results"][0]["outcome"] == "deleted"
    assert done.data["results"][1]["outcome"].startswith("kept")
    assert await client.get("gl:orchestrator:lock:exec-2") == "worker-new"


async def test_delete_refuses_empty_and_oversized_target_lists(rds: tuple[aioredis.Redis, Registry]) -> None:
    """No keys means nothing to do (never 'all keys'); more keys than max_targets changes nothing."""
    client, registry = rds
    await client.set("a", "1")
    await client.set("b", "1")
    with pytest.raises(GuardViolation, match="empty"):
        await call(registry, "redis.delete", keys=[], max_targets=1)
    with pytest.raises(GuardViolation, match="over max_targets"):
        await call(
            registry, "redis.delete", keys=[{"key": "a", "value": "1"}, {"key": "b", "value": "1"}], max_targets=1
        )
    assert await client.exists("a", "b") == 2


async def _bull_queue(client: aioredis.Redis, queue: str) -> None:
    """Active jobs 1, 2, 3 of a BullMQ queue; only job 1 still holds its lock (2 and 3 stalled)."""
    base = f"bull:{queue}"
    for job_id in ("1", "2", "3"):
        await client.hset(
            f"{base}:{job_id}", mapping={"name": "run", "data": "{}", "processedOn": "1", "attemptsMade": "0"}
        )
        await client.lpush(f"{base}:active", job_id)
    await client.set(f"{base}:1:lock", "token-1", px=30000)
    await client.lpush(f"{base}:wait", "9")
    await client.zadd(f"{base}:completed", {"7": 1})


async def test_bullmq_stalled_jobs_are_found_and_moved_back_to_wait(rds: tuple[aioredis.Redis, Registry]) -> None:
    """Active jobs without a lock are stalled; recovery moves exactly those to wait, as BullMQ does."""
    client, registry = rds
    await _bull_queue(client, "runs")
    stalled = await call(registry, "bullmq.stalled", queue="runs")
    assert sorted(j["id"] for j in stalled.data["jobs"]) == ["2", "3"]
    counts = await call(registry, "bullmq.counts", queue="runs")
    assert counts.data["active"] == 3 and counts.data["wait"] == 1 and counts.data["completed"] == 1
    await call(registry, "bullmq.recover_stalled", dry_run=True, jobs=stalled.data["jobs"], max_targets=5)
    assert await client.llen("bull:runs:active") == 3
    done = await call(registry, "bullmq.recover_stalled", jobs=stalled.data["jobs"], max_targets=5)
    assert [r["outcome"] for r in done.data["results"]] == ["moved to wait", "moved to wait"]
    assert await client.lrange("bull:runs:active", 0, -1) == ["1"]
    assert sorted(await client.lrange("bull:runs:wait", 0, -1)) == ["2", "3", "9"]
    assert await client.hget("bull:runs:2", "stc") == "1"


async def test_bullmq_fail_with_reason_and_race_with_a_new_lock(rds: tuple[aioredis.Redis, Registry]) -> None:
    """Failing stalled jobs records the reason; a job that got its lock back meanwhile is left alone."""
    client, registry = rds
    await _bull_queue(client, "runs")
    stalled = (await call(registry, "bullmq.stalled", queue="runs")).data["jobs"]
    await client.set("bull:runs:3:lock", "token-new", px=30000)  # a worker picked job 3 up again
    done = await call(registry, "bullmq.recover_stalled", jobs=stalled, max_targets=5, to="failed", reason="Stalled")
    outcomes = {r["target"]: r["outcome"] for r in done.data["results"]}
    assert outcomes == {"job runs/2": "moved to failed", "job runs/3": "kept: locked again"}
    assert await client.zrange("bull:runs:failed", 0, -1) == ["2"]
    assert await client.hget("bull:runs:2", "failedReason") == "Stalled"
    assert sorted(await client.lrange("bull:runs:active", 0, -1)) == ["1", "3"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=30))
async def test_scan_pattern_values_match_literally(rds: tuple[aioredis.Redis, Registry], label: str) -> None:
    """A label rendered into a MATCH pattern matches only itself: `*` or `[a-z]` in a label widen nothing."""
    client, registry = rds
    marker = uuid.uuid4().hex[:6]
    await client.set(f"lock:{marker}:{label}", "1")
    await client.set(f"lock:{marker}:zzz-other", "1")
    pattern = render("lock:" + marker + ":{{ v }}", {"v": label}, escape="glob")
    result = await call(registry, "redis.scan", match=pattern, limit=10)
    assert result.data["matches"] == [f"lock:{marker}:{label}"]


async def test_a_retried_write_after_it_completed_changes_nothing_more(rds: tuple[aioredis.Redis, Registry]) -> None:
    """The same compare-and-delete and stalled-job recovery sent again (a retry after a lost worker) are no-ops."""
    client, registry = rds
    await client.set("gl:lock:exec-1", "agent-7")
    key = [{"key": "gl:lock:exec-1", "value": "agent-7"}]
    first = await call(registry, "redis.delete", keys=key, max_targets=1)
    again = await call(registry, "redis.delete", keys=key, max_targets=1)
    assert [r["outcome"] for r in (first.data["results"][0], again.data["results"][0])] == ["deleted", "already gone"]
    base = "bull:q"
    await client.rpush(f"{base}:active", "9")
    await client.hset(f"{base}:9", mapping={"name": "run", "data": "{}", "processedOn": "1", "attemptsMade": "0"})
    jobs = [{"queue": "q", "id": "9"}]
    await call(registry, "bullmq.recover_stalled", jobs=jobs, max_targets=1)
    retried = await call(registry, "bullmq.recover_stalled", jobs=jobs, max_targets=1)
    assert retried.data["results"][0]["outcome"] == "kept: no longer active"
    assert await client.lrange(f"{base}:wait", 0, -1) == ["9"] and await client.hget(f"{base}:9", "stc") == "1"


async def test_expire_gives_a_stuck_lock_a_ttl_only_while_it_is_the_one_diagnosed(
    rds: tuple[aioredis.Redis, Registry],
) -> None:
    """redis.expire sets a TTL on a lock with none (dry-run changes nothing); a re-acquired lock and a lock that
    already expires are kept, and a retry after success changes nothing more."""
    client, registry = rds
    await client.set("gl:lock:exec-1", "agent-dead")
    await client.set("gl:lock:exec-2", "agent-dead")
    await client.set("gl:lock:exec-3", "agent-dead", ex=50)
    seen = [{"key": f"gl:lock:exec-{i}", "value": "agent-dead"} for i in (1, 2, 3)]
    await client.set("gl:lock:exec-2", "agent-new")  # re-acquired after diagnosis
    dry = await call(registry, "redis.expire", dry_run=True, keys=seen, max_targets=3, ttl="5m")
    assert [r["outcome"] for r in dry.data["results"]] == [
        "would expire in 0:05:00",
        "would be kept: value changed",
        "would expire in 0:05:00",
    ]
    assert await client.ttl("gl:lock:exec-1") == -1
    done = await call(registry, "redis.expire", keys=seen, max_targets=3, ttl="5m")
    assert [r["outcome"] for r in done.data["results"]] == [
        "expires in 0:05:00",
        "kept: the value changed since diagnosis (or the key is gone)",
        "kept: it already expires",
    ]
    assert 290 < await client.ttl("gl:lock:exec-1") <= 300
    assert await client.ttl("gl:lock:exec-2") == -1 and 0 < await client.ttl("gl:lock:exec-3") <= 50
    retried = await call(registry, "redis.expire", keys=seen[:1], max_targets=1, ttl="5m")
    assert retried.data["results"][0]["outcome"] == "kept: it already expires"
    assert done.blast_radius == "3 target(s); cap: max_targets 3"
    with pytest.raises(GuardViolation, match="empty"):
        await call(registry, "redis.expire", keys=[], max_targets=1, ttl="5m")
