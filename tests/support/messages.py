"""Webhook messages as Alertmanager sends them for the jobs playbooks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def message(
    status: str = "firing",
    fingerprint: str | None = None,
    starts: str | None = None,
    queue: str = "q1",
    severity: str = "warning",
) -> dict[str, object]:
    fingerprint = fingerprint or uuid.uuid4().hex[:16]
    starts = starts or datetime.now(UTC).isoformat()
    return {
        "version": "4",
        "status": status,
        "receiver": "remediate",
        "groupKey": "g",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "JobsStuck", "queue": queue, "severity": severity},
                "annotations": {},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fingerprint,
            }
        ],
    }
