"""The activity that appends a run's snapshot to the audit store: scrubbed, and idempotent by record key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from service.audit import RECORD_AUDIT, AuditSnapshot, AuditStore, Scrubber, events_of
from service.errors import AuditUnavailable


class AuditActivities:
    """One per worker; `appended` is told how many new records each call added (zero for a repeat)."""

    def __init__(
        self, store: AuditStore, scrubber: Scrubber, appended: Callable[[int], None] = lambda _n: None
    ) -> None:
        self._store, self._scrubber, self._appended = store, scrubber, appended

    @activity.defn(name=RECORD_AUDIT)
    async def record_audit(self, snapshot: AuditSnapshot) -> int:
        """Write the run as it is now and every record it implies that the store does not have yet."""
        state = self._scrubber.state(snapshot.state)
        events = events_of(state)
        try:
            added = await self._store.append(snapshot.model_copy(update={"state": state}), events)
        except AuditUnavailable as exc:
            raise ApplicationError(str(exc), type="AuditUnavailable") from exc
        self._appended(added)
        return added

    def all(self) -> list[Callable[..., Any]]:
        return [self.record_audit]
