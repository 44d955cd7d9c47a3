"""Alertmanager's API v2: is an occurrence still firing, and silences that name the run holding them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx2

from service.playbooks.systems.alertmanager import ALERTMANAGER, AlertmanagerConnection
from service.rails.governance import AlertQuery, SilenceRef, SilenceRequest
from service.runs.registry import Action
from service.targets.base import ConnectionAdapter, http_client, http_errors
from service.vocabulary.errors import PermanentStepError


def _filters(labels: dict[str, str]) -> list[tuple[str, str | int | float | bool | None]]:
    # Alertmanager's matcher syntax: a double-quoted value with \\ and \" escaped.
    quoted = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in labels.items()}
    return [("filter", f'{k}="{v}"') for k, v in sorted(quoted.items())]


_SILENCE_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def comment_for(run_id: str) -> str:
    return f"remediate run {run_id} is fixing this; expires when the run ends"


class AlertmanagerAdapter(ConnectionAdapter[AlertmanagerConnection, httpx2.AsyncClient]):
    """One client per Alertmanager connection; no playbook actions, only what the rails need."""

    system = ALERTMANAGER

    def actions(self) -> dict[str, Action[Any]]:
        return {}

    async def _open(self, name: str, conn: AlertmanagerConnection) -> httpx2.AsyncClient:
        return http_client(conn.url, conn.auth, conn.timeout)

    async def _close(self, client: httpx2.AsyncClient) -> None:
        await client.aclose()

    async def ping(self, connection: str) -> None:
        client = await self.client(connection)
        with http_errors(f"alertmanager {connection}"):
            (await client.get("/-/ready")).raise_for_status()

    async def firing(self, query: AlertQuery) -> bool:
        """Whether an alert with exactly these labels is active (silenced or inhibited still counts as firing)."""
        client = await self.client(query.connection)
        with http_errors(f"alertmanager {query.connection}: reading alerts"):
            response = await client.get(
                "/api/v2/alerts",
                params=[("active", True), ("silenced", True), ("inhibited", True), *_filters(query.labels)],
            )
            response.raise_for_status()
            alerts: list[dict[str, Any]] = response.json()
            now = datetime.now(UTC)
            return any(dict(a["labels"]) == query.labels and datetime.fromisoformat(a["endsAt"]) > now for a in alerts)

    async def silence(self, request: SilenceRequest) -> SilenceRef:
        """Create the run's silence, or find the one an earlier attempt of this call created (safe to retry)."""
        client = await self.client(request.connection)
        comment = comment_for(request.run_id)
        with http_errors(f"alertmanager {request.connection}: silencing"):
            listed = await client.get("/api/v2/silences", params=_filters(request.labels))
            listed.raise_for_status()
            for found in listed.json():
                if found.get("comment") == comment and found.get("status", {}).get("state") == "active":
                    return SilenceRef(connection=request.connection, id=str(found["id"]))
            created = await client.post(
                "/api/v2/silences",
                json={
                    "matchers": [
                        {"name": k, "value": v, "isRegex": False, "isEqual": True}
                        for k, v in sorted(request.labels.items())
                    ],
                    "startsAt": datetime.now(UTC).isoformat(),
                    "endsAt": request.until.isoformat(),
                    "createdBy": "remediate",
                    "comment": comment,
                },
            )
            created.raise_for_status()
            return SilenceRef(connection=request.connection, id=str(created.json()["silenceID"]))

    async def expire(self, ref: SilenceRef) -> None:
        """Expire the silence now; one that is already expired or gone is done."""
        client = await self.client(ref.connection)
        with http_errors(f"alertmanager {ref.connection}: expiring silence {ref.id}"):
            if not _SILENCE_ID.fullmatch(ref.id):
                raise PermanentStepError(f"not an Alertmanager silence id: {ref.id[:80]!r}")
            response = await client.delete(f"/api/v2/silence/{ref.id}")
            if response.status_code in (404, 500) and "expired" in response.text.lower():
                return
            if response.status_code == 404:
                return
            response.raise_for_status()
