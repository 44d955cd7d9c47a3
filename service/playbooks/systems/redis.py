"""Redis and BullMQ actions: SCAN with a cap (never KEYS), compare-and-delete, stalled-job recovery."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from service.playbooks.step_base import (
    Approval,
    Capped,
    Duration,
    Params,
    StepBase,
    TargetRef,
    Template,
    WriteStep,
    bounded_targets,
    typed,
)
from service.playbooks.system import ConnectionModel, System
from service.vocabulary.secrets import SecretRef

Key = Annotated[str, Field(min_length=1, max_length=1024)]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
Prefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
JobId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]


class KeyValue(TargetRef):
    """A key and the value seen at diagnosis: deletion happens only if the value is still the same."""

    key: Key
    value: str


class JobRef(TargetRef):
    """One BullMQ job of one queue."""

    queue: QueueName | Template
    id: JobId | Template


class ScanParams(Params):
    literal_fields = frozenset({"limit", "count"})
    escapes = {"match": "glob"}

    match: str = Field(min_length=1, description="MATCH pattern; templated values match literally.")
    limit: int = Field(ge=1, le=10_000, description="Required: the most keys returned.")
    count: int = Field(default=200, ge=1, le=10_000, description="SCAN COUNT hint per call.")


class KeyParams(Params):
    key: Key


class QueueParams(Params):
    queue: QueueName | Template
    prefix: Prefix = "bull"


class StalledParams(QueueParams):
    literal_fields = frozenset({"limit"})

    limit: int = Field(default=1000, ge=1, le=10_000)


class DeleteParams(Capped):
    """Keys to delete, each only while it still holds the value seen at diagnosis."""

    literal_fields = frozenset({"max_targets"})

    keys: list[KeyValue] | Template

    def targets(self) -> Sequence[KeyValue]:
        return bounded_targets(typed(self.keys, "keys"), self.max_targets, "keys")


class ExpireParams(DeleteParams):
    """Keys to give a time to live, each only while it still holds the value seen at diagnosis."""

    literal_fields = frozenset({"max_targets", "ttl", "only_without_ttl"})

    ttl: Duration = Field(description="The time to live to set, from now.")
    only_without_ttl: bool = Field(
        default=True, description="Leave a key that already expires alone (a retry then changes nothing)."
    )

    def ttl_ms(self) -> int:
        return max(int(self.ttl / timedelta(milliseconds=1)), 1)


class RecoverParams(Capped):
    """Stalled BullMQ jobs to move back to wait (or to failed), each only while still active and unlocked."""

    literal_fields = frozenset({"max_targets", "to", "prefix"})

    jobs: list[JobRef] | Template
    to: Literal["wait", "failed"] = "wait"
    reason: str = Field(default="job stalled", max_length=500)
    prefix: Prefix = "bull"

    def targets(self) -> Sequence[JobRef]:
        return bounded_targets(typed(self.jobs, "jobs"), self.max_targets, "jobs")


class _Redis(StepBase):
    connection_type = "redis"


class _RedisWrite(WriteStep):
    connection_type = "redis"


class Scan(_Redis):
    """Keys matching a pattern by SCAN with a cap (never KEYS); templated values match literally."""

    returns = "`matches`, `count`, `truncated`"
    dry_run_behaviour = "runs"
    action: Literal["redis.scan"]
    with_: ScanParams = Field(alias="with")


class Get(_Redis):
    """One key's value."""

    returns = "`key`, `value`, `exists`"
    dry_run_behaviour = "runs"
    action: Literal["redis.get"]
    with_: KeyParams = Field(alias="with")


class Ttl(_Redis):
    """One key's time to live in seconds (-1: no expiry, -2: missing)."""

    returns = "`key`, `ttl`"
    dry_run_behaviour = "runs"
    action: Literal["redis.ttl"]
    with_: KeyParams = Field(alias="with")


class BullStalled(_Redis):
    """Active BullMQ jobs whose lock key is gone: stalled, as BullMQ's own checker sees them."""

    returns = "`jobs[{queue, id, name, processed_on, attempts_made}]`, `count`, `active`"
    dry_run_behaviour = "runs"
    action: Literal["bullmq.stalled"]
    with_: StalledParams = Field(alias="with")


class BullCounts(_Redis):
    """Jobs per state of one BullMQ queue."""

    returns = "`wait`, `active`, `paused`, `prioritized`, `waiting-children`, `delayed`, `completed`, `failed`"
    dry_run_behaviour = "runs"
    action: Literal["bullmq.counts"]
    with_: QueueParams = Field(alias="with")


class Delete(_RedisWrite):
    """Delete keys by compare-and-delete: only while each still holds the value seen at diagnosis."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned; says which would be deleted and which kept"
    default_approval = "required"
    action: Literal["redis.delete"]
    with_: DeleteParams = Field(alias="with")


class Expire(_RedisWrite):
    """Set a time to live on keys (a lock left without one) with compare-and-expire: a re-acquired lock is kept."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned; says which would expire and which be kept"

    default_approval = "none"  # the key stays until the TTL runs out: nothing is lost now
    action: Literal["redis.expire"]
    with_: ExpireParams = Field(alias="with")


class RecoverStalled(_RedisWrite):
    """Move stalled BullMQ jobs back to wait (or to failed) in one atomic script, as BullMQ does."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "planned; says which would move"
    approval_rule = "required for `to: failed`, else none"
    default_approval = "none"
    action: Literal["bullmq.recover_stalled"]
    with_: RecoverParams = Field(alias="with")

    def safe_default_approval(self) -> Approval:
        return "required" if self.with_.to == "failed" else "none"  # failing jobs loses work


REDIS_STEPS: tuple[type[StepBase], ...] = (Scan, Get, Ttl, BullStalled, BullCounts, Delete, Expire, RecoverStalled)


class RedisConnection(ConnectionModel):
    """A Redis server; the URL is a secret reference because it may carry a password."""

    type: Literal["redis"]
    url: SecretRef
    socket_timeout: float = Field(default=5.0, gt=0)


REDIS = System(RedisConnection, REDIS_STEPS)
