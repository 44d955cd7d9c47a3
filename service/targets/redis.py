"""Redis and BullMQ actions: capped SCAN, compare-and-delete, and stalled-job recovery as BullMQ does it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from pydantic import JsonValue
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from service.config import resolve_secret
from service.playbooks.systems.redis import (
    REDIS,
    BullCounts,
    BullStalled,
    Delete,
    DeleteParams,
    Expire,
    ExpireParams,
    Get,
    KeyParams,
    QueueParams,
    RecoverParams,
    RecoverStalled,
    RedisConnection,
    Scan,
    ScanParams,
    StalledParams,
    Ttl,
)
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult, per_target
from service.targets.base import ConnectionAdapter
from service.vocabulary.errors import PermanentStepError, RetryableStepError

T = TypeVar("T")

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


# Set a TTL only if the key still holds the value seen at diagnosis (and, if asked, only if it has none yet).
COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[3] == '1' and redis.call('PTTL', KEYS[1]) >= 0 then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


def _text(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """The one place redis errors become step errors: a lost connection or a timeout is worth a retry."""
    try:
        yield
    except (RedisConnectionError, RedisTimeout) as exc:
        raise RetryableStepError(f"redis {what}: {exc}") from exc
    except RedisError as exc:
        raise PermanentStepError(f"redis {what}: {exc}") from exc


async def _call(what: str, pending: Awaitable[T]) -> T:
    """Await one redis call inside the error map."""
    with _errors(what):
        return await pending


class RedisAdapter(ConnectionAdapter[RedisConnection, "aioredis.Redis"]):
    """One client per connection, opened on first use."""

    system = REDIS

    def actions(self) -> dict[str, Action[Any]]:
        return specs(
            Action(Scan, self._scan),
            Action(Get, self._get),
            Action(Ttl, self._ttl),
            Action(BullStalled, self._stalled),
            Action(BullCounts, self._counts),
            Action(Delete, self._delete),
            Action(Expire, self._expire),
            Action(RecoverStalled, self._recover),
        )

    async def _open(self, name: str, conn: RedisConnection) -> aioredis.Redis:
        return aioredis.Redis.from_url(resolve_secret(conn.url), socket_timeout=conn.socket_timeout)

    async def _close(self, client: aioredis.Redis) -> None:
        await client.aclose()

    async def ping(self, connection: str) -> None:
        await _call("ping", (await self.client(connection)).ping())

    async def _scan(self, request: StepRequest, params: ScanParams) -> StepResult:
        client, cursor = await self.client(request.connection), 0
        keys: list[str | None] = []
        while True:
            cursor, batch = await _call("scan", client.scan(cursor, match=params.match, count=params.count))
            keys.extend(_text(k) for k in batch)
            if cursor == 0 or len(keys) > params.limit:
                break
        truncated = len(keys) > params.limit
        found: list[JsonValue] = [k for k in sorted(k for k in keys if k is not None)[: params.limit]]
        return StepResult(
            data={"matches": found, "count": len(found), "truncated": truncated},
            summary=f"{len(found)} key(s) matching {params.match}" + (" (truncated)" if truncated else ""),
        )

    async def _get(self, request: StepRequest, params: KeyParams) -> StepResult:
        value = _text(await _call("get", (await self.client(request.connection)).get(params.key)))
        return StepResult(
            data={"key": params.key, "value": value, "exists": value is not None}, summary=f"{params.key} = {value!r}"
        )

    async def _ttl(self, request: StepRequest, params: KeyParams) -> StepResult:
        ttl = int(await _call("ttl", (await self.client(request.connection)).ttl(params.key)))
        meaning = {-1: "no expiry", -2: "missing"}.get(ttl, f"{ttl}s left")
        return StepResult(data={"key": params.key, "ttl": ttl}, summary=f"{params.key}: {meaning}")

    async def _stalled(self, request: StepRequest, params: StalledParams) -> StepResult:
        client, base = await self.client(request.connection), f"{params.prefix}:{params.queue}"
        active = [_text(i) for i in await _call("lrange", client.lrange(f"{base}:active", 0, params.limit - 1))]
        jobs: list[JsonValue] = []
        for job_id in active:
            if await _call("exists", client.exists(f"{base}:{job_id}:lock")):
                continue
            fields = {
                _text(k): _text(v) for k, v in (await _call("hgetall", client.hgetall(f"{base}:{job_id}"))).items()
            }
            jobs.append(
                {
                    "queue": params.queue,
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

    async def _counts(self, request: StepRequest, params: QueueParams) -> StepResult:
        client, base = await self.client(request.connection), f"{params.prefix}:{params.queue}"
        counts: dict[str, JsonValue] = {}
        for state in STATES:
            key = f"{base}:{state}"
            kind = _text(await _call("type", client.type(key)))
            size = {"list": client.llen, "zset": client.zcard, "set": client.scard}.get(kind or "none")
            counts[state] = int(await _call("count", size(key))) if size else 0
        return StepResult(data=counts, summary=", ".join(f"{k} {v}" for k, v in counts.items()))

    async def _delete(self, request: StepRequest, params: DeleteParams) -> StepResult:
        targets = params.targets()
        client, outcomes = await self.client(request.connection), []
        for ref in targets:
            if request.dry_run:
                current = _text(await _call("get", client.get(ref.key)))
                outcome = "would be deleted" if current == ref.value else "would be kept: value changed"
            else:
                deleted = await _call("compare-and-delete", client.eval(COMPARE_AND_DELETE, 1, ref.key, ref.value))
                outcome = "deleted" if deleted else await self._not_deleted(client, ref.key)
            outcomes.append((f"key {ref.key}", outcome))
        verb = "planned" if request.dry_run else "compare-and-delete"
        return per_target(outcomes, f"{verb} {len(targets)} key(s)", request.dry_run)

    async def _not_deleted(self, client: aioredis.Redis, key: str) -> str:
        # Gone already (an earlier attempt deleted it) reads differently from a lock someone holds again.
        if not await _call("exists", client.exists(key)):
            return "already gone"
        return "kept: the value changed since diagnosis (re-acquired)"

    async def _expire(self, request: StepRequest, params: ExpireParams) -> StepResult:
        targets, ttl = params.targets(), params.ttl_ms()
        client, outcomes = await self.client(request.connection), []
        for ref in targets:
            if request.dry_run:
                current = _text(await _call("get", client.get(ref.key)))
                outcome = f"would expire in {params.ttl}" if current == ref.value else "would be kept: value changed"
            else:
                only = str(int(params.only_without_ttl))
                expire = client.eval(COMPARE_AND_EXPIRE, 1, ref.key, ref.value, str(ttl), only)
                done = int(await _call("compare-and-expire", expire))
                outcome = {1: f"expires in {params.ttl}", 0: "kept: it already expires"}.get(
                    done, "kept: the value changed since diagnosis (or the key is gone)"
                )
            outcomes.append((f"key {ref.key}", outcome))
        verb = "planned" if request.dry_run else "compare-and-expire"
        return per_target(outcomes, f"{verb} {len(targets)} key(s), ttl {params.ttl}", request.dry_run)

    async def _recover(self, request: StepRequest, params: RecoverParams) -> StepResult:
        targets = params.targets()
        client, outcomes = await self.client(request.connection), []
        for job in targets:
            base = f"{params.prefix}:{job.queue}"
            if request.dry_run:
                stalled = not await _call("exists", client.exists(f"{base}:{job.id}:lock"))
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
                    await _call(
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
