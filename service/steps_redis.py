"""Redis and BullMQ actions: SCAN with a cap (never KEYS), compare-and-delete, stalled-job recovery."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from service.step_base import Approval, MaxTargets, Params, StepBase, TargetRef, Template, WriteStep

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


class DeleteParams(Params):
    literal_fields = frozenset({"max_targets"})

    keys: list[KeyValue] | Template
    max_targets: MaxTargets


class RecoverParams(Params):
    literal_fields = frozenset({"max_targets", "to", "prefix"})

    jobs: list[JobRef] | Template
    max_targets: MaxTargets
    to: Literal["wait", "failed"] = "wait"
    reason: str = Field(default="job stalled", max_length=500)
    prefix: Prefix = "bull"


class _Redis(StepBase):
    connection_type = "redis"


class _RedisWrite(WriteStep):
    connection_type = "redis"


class Scan(_Redis):
    action: Literal["redis.scan"]
    with_: ScanParams = Field(alias="with")


class Get(_Redis):
    action: Literal["redis.get"]
    with_: KeyParams = Field(alias="with")


class Ttl(_Redis):
    action: Literal["redis.ttl"]
    with_: KeyParams = Field(alias="with")


class BullStalled(_Redis):
    action: Literal["bullmq.stalled"]
    with_: StalledParams = Field(alias="with")


class BullCounts(_Redis):
    action: Literal["bullmq.counts"]
    with_: QueueParams = Field(alias="with")


class Delete(_RedisWrite):
    default_approval = "required"
    action: Literal["redis.delete"]
    with_: DeleteParams = Field(alias="with")


class RecoverStalled(_RedisWrite):
    default_approval = "none"
    action: Literal["bullmq.recover_stalled"]
    with_: RecoverParams = Field(alias="with")

    def safe_default_approval(self) -> Approval:
        return "required" if self.with_.to == "failed" else "none"  # failing jobs loses work


REDIS_STEP = Scan | Get | Ttl | BullStalled | BullCounts | Delete | RecoverStalled
REDIS_STEPS: tuple[type[StepBase], ...] = (Scan, Get, Ttl, BullStalled, BullCounts, Delete, RecoverStalled)
