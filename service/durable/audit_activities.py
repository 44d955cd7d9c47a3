"""The activity that records a run: its snapshot in the audit store (scrubbed, idempotent by record key) and, at
its end, its outcome in the metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.runs.audit import RECORD_AUDIT, AuditSnapshot, AuditStore, Scrubber, events_of
from service.runs.state import RunState
from service.vocabulary.errors import AuditRejected, AuditUnavailable


class AuditActivities:
    """One per worker. Without a store, only a run's end is recorded (in the metrics); `appended` is told how many
    new records each write added (zero for a repeat)."""

    def __init__(
        self,
        store: AuditStore | None,
        scrubber: Scrubber,
        appended: Callable[[int], None] = lambda _n: None,
        ended: Callable[[RunState], None] = lambda _s: None,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        self._store, self._scrubber, self._appended, self._ended = store, scrubber, appended, ended
        self._failed = failed  # counted, so an audit trail with gaps is seen in the metrics

    @activity.defn(name=RECORD_AUDIT)
    async def record_audit(self, snapshot: AuditSnapshot) -> int:
        """Write the run as it is now and every record it implies that the store does not have yet."""
        if snapshot.final and activity.info().attempt == 1:  # counted once, even if the store makes it retry
            self._ended(snapshot.state)
        if self._store is None:
            return 0
        state = self._scrubber.state(snapshot.state)
        try:
            added = await self._store.append(snapshot.model_copy(update={"state": state}), events_of(state))
        except AuditUnavailable as exc:
            self._failed()
            rejected = isinstance(exc, AuditRejected)  # the data, not the store: a retry cannot help
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=rejected) from exc
        self._appended(added)
        return added

    def all(self) -> list[Callable[..., Any]]:
        return [self.record_audit]
