"""Redis and BullMQ actions: capped SCAN, compare-and-delete, and stalled-job recovery as BullMQ does it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import JsonValue
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from service.config import RedisConnection, resolve_secret
from service.errors import ConfigError, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult, per_target
from service.step_base import Params, bounded_targets
from service.steps_redis import (
    DeleteParams,
    JobRef,
    KeyParams,
    KeyValue,
    QueueParams,
    RecoverParams,
    ScanParams,
    StalledParams,
)

# Delete only if the key still holds the value seen at diagnosis: a lock re-acquired since then survives.
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
"""
# As BullMQ's stalled checker: only an active job whose lock is gone moves, back to wait or to failed.
RECOVER_STALLED = """
local active, wait, failed, job, lock, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, to, reason, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', lock) == 1 then return 'locked' end
if redis.call('LREM', active, 1, id) == 0 then return 'not_active' end
redis.call('HINCRBY', job, 'stc', 1)
if to == 'failed' then
  redis.call('HSET', job, 'failedReason', reason, 'finishedOn', now)
  redis.call('ZADD', failed, now, id)
  redis.call('XADD', events, '*', 'event', 'failed', 'jobId', id, 'failedReason', reason, 'prev', 'active')
  return 'failed'
end
redis.call('RPUSH', wait, id)
redis.call('XADD', events, '*', 'event', 'stalled', 'jobId', id)
redis.call('XADD', events, '*', 'event', 'waiting', 'jobId', id, 'prev', 'active')
return 'wait'
"""
STATES = ("wait", "active", "paused", "prioritized", "waiting-children", "delayed", "completed", "failed")


def _text(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisAdapter:
    """One client per connection, opened on first use."""

    def __init__(self, connections: Mapping[str, RedisConnection]) -> None:
        self._connections = dict(connections)
        self._clients: dict[str, aioredis.Redis] = {}

    def actions(self) -> dict[str, Handler]:
        return {
            "redis.scan": self._scan,
            "redis.get": self._get,
            "redis.ttl": self._ttl,
            "bullmq.stalled": self._stalled,
            "bullmq.counts": self._counts,
            "redis.delete": self._delete,
            "bullmq.recover_stalled": self._recover,
        }

    def _client(self, name: str) -> aioredis.Redis:
        client = self._clients.get(name)
        if client is None:
            conn = self._connections.get(name)
            if conn is None:
                raise ConfigError(f"no redis connection named {name!r}")
            client = aioredis.Redis.from_url(resolve_secret(conn.url), socket_timeout=conn.socket_timeout)
            self._clients[name] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def ping(self, name: str) -> None:
        await self._run(name, self._client(name).ping())

    async def _run(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except (RedisConnectionError, RedisTimeout) as exc:
            raise RetryableStepError(f"redis {what}: {exc}") from exc
        except RedisError as exc:
            raise PermanentStepError(f"redis {what}: {exc}") from exc

    async def _scan(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ScanParams)  # noqa: S101 - the registry validated it
        client, cursor = self._client(request.connection), 0
        keys: list[str | None] = []
        while True:
            cursor, batch = await self._run("scan", client.scan(cursor, match=params.match, count=params.count))
            keys.extend(_text(k) for k in batch)
            if cursor == 0 or len(keys) > params.limit:
                break
        truncated = len(keys) > params.limit
        found: list[JsonValue] = [k for k in sorted(k for k in keys if k is not None)[: params.limit]]
        return StepResult(
            data={"matches": found, "count": len(found), "truncated": truncated},
            summary=f"{len(found)} key(s) matching {params.match}" + (" (truncated)" if truncated else ""),
        )

    async def _get(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, KeyParams)  # noqa: S101 - the registry validated it
        value = _text(await self._run("get", self._client(request.connection).get(params.key)))
        return StepResult(
            data={"key": params.key, "value": value, "exists": value is not None}, summary=f"{params.key} = {value!r}"
        )

    async def _ttl(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, KeyParams)  # noqa: S101 - the registry validated it
        ttl = int(await self._run("ttl", self._client(request.connection).ttl(params.key)))
        meaning = {-1: "no expiry", -2: "missing"}.get(ttl, f"{ttl}s left")
        return StepResult(data={"key": params.key, "ttl": ttl}, summary=f"{params.key}: {meaning}")

    async def _stalled(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, StalledParams)  # noqa: S101 - the registry validated it
        client, base = self._client(request.connection), f"{params.prefix}:{params.queue}"
        active = [_text(i) for i in await self._run("lrange", client.lrange(f"{base}:active", 0, params.limit - 1))]
        jobs: list[JsonValue] = []
        for job_id in active:
            if await self._run("exists", client.exists(f"{base}:{job_id}:lock")):
                continue
            fields = {
                _text(k): _text(v) for k, v in (await self._run("hgetall", client.hgetall(f"{base}:{job_id}"))).items()
            }
            jobs.append(
                {
                    "queue": str(params.queue),
                    "id": job_id,
                    "name": fields.get("name"),
                    "processed_on": fields.get("processedOn"),
                    "attempts_made": fields.get("attemptsMade"),
                }
            )
        return StepResult(
            data={"jobs": jobs, "count": len(jobs), "active": len(active)},
            summary=f"{len(jobs)} stalled of {len(active)} active job(s) in {params.queue}",
        )

    async def _counts(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, QueueParams)  # noqa: S101 - the registry validated it
        client, base = self._client(request.connection), f"{params.prefix}:{params.queue}"
        counts: dict[str, JsonValue] = {}
        for state in STATES:
            key = f"{base}:{state}"
            kind = _text(await self._run("type", client.type(key)))
            size = {"list": client.llen, "zset": client.zcard, "set": client.scard}.get(kind or "none")
            counts[state] = int(await self._run("count", size(key))) if size else 0
        return StepResult(data=counts, summary=", ".join(f"{k} {v}" for k, v in counts.items()))

    async def _delete(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, DeleteParams)  # noqa: S101 - the registry validated it
        targets: list[KeyValue] = list(bounded_targets(list(params.keys), params.max_targets, "keys"))  # type: ignore[arg-type]
        client, outcomes = self._client(request.connection), []
        for ref in targets:
            if request.dry_run:
                current = _text(await self._run("get", client.get(ref.key)))
                outcome = "would be deleted" if current == ref.value else "would be kept: value changed"
            else:
                deleted = await self._run("compare-and-delete", client.eval(COMPARE_AND_DELETE, 1, ref.key, ref.value))
                outcome = "deleted" if deleted else await self._not_deleted(client, ref.key)
            outcomes.append((f"key {ref.key}", outcome))
        verb = "planned" if request.dry_run else "compare-and-delete"
        return per_target(outcomes, f"{verb} {len(targets)} key(s)", request.dry_run)

    async def _not_deleted(self, client: aioredis.Redis, key: str) -> str:
        # Gone already (an earlier attempt deleted it) reads differently from a lock someone holds again.
        if not await self._run("exists", client.exists(key)):
            return "already gone"
        return "kept: the value changed since diagnosis (re-acquired)"

    async def _recover(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, RecoverParams)  # noqa: S101 - the registry validated it
        targets: list[JobRef] = list(bounded_targets(list(params.jobs), params.max_targets, "jobs"))  # type: ignore[arg-type]
        client, outcomes = self._client(request.connection), []
        for job in targets:
            base = f"{params.prefix}:{job.queue}"
            if request.dry_run:
                stalled = not await self._run("exists", client.exists(f"{base}:{job.id}:lock"))
                outcome = f"would move to {params.to}" if stalled else "would be kept: locked again"
            else:
                keys = [
                    f"{base}:active",
                    f"{base}:wait",
                    f"{base}:failed",
                    f"{base}:{job.id}",
                    f"{base}:{job.id}:lock",
                    f"{base}:events",
                ]
                moved = _text(
                    await self._run(
                        "recover",
                        client.eval(
                            RECOVER_STALLED,
                            len(keys),
                            *keys,
                            job.id,
                            params.to,
                            params.reason,
                            str(int(time.time() * 1000)),
                        ),
                    )
                )
                outcome = {
                    "wait": "moved to wait",
                    "failed": "moved to failed",
                    "locked": "kept: locked again",
                    "not_active": "kept: no longer active",
                }.get(moved or "", str(moved))
            outcomes.append((f"job {job.queue}/{job.id}", outcome))
        verb = "planned" if request.dry_run else "recovered"
        return per_target(outcomes, f"{verb} {len(targets)} stalled job(s) to {params.to}", request.dry_run)
