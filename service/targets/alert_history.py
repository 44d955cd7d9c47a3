"""Alert history from Prometheus: the `ALERTS` series' raw samples a chunk at a time, and what its rules say."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx2

from service.targets.base import http_errors
from service.vocabulary.errors import ConfigError

CHUNK = timedelta(hours=6)  # one query's range: a fortnight is 56 queries, each a bounded answer
QUERY = 'ALERTS{alertstate="firing"}'


@dataclass(frozen=True)
class RuleFacts:
    """One alerting rule: its group's evaluation interval, and its annotations that hold no template."""

    interval: float
    annotations: dict[str, str]


@dataclass(frozen=True)
class Chunk:
    """Every raw sample of the firing `ALERTS` series in (until - CHUNK, until]."""

    until: datetime
    series: list[tuple[dict[str, str], list[float]]]


class AlertHistory:
    """Reads one Prometheus over HTTP; errors name the server and what to check."""

    def __init__(self, url: str, client: httpx2.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx2.AsyncClient(base_url=self.url, timeout=60.0)

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        with http_errors(f"prometheus {self.url}"):
            response = await self._client.get(path, params=params)
            payload = response.json()
        if payload.get("status") != "success":
            raise ConfigError(f"prometheus {self.url}: {payload.get('errorType')}: {payload.get('error')}")
        return payload["data"]

    async def rules(self) -> dict[str, RuleFacts]:
        """Alerting rules by alert name: how often each is evaluated, and its static annotations (a runbook_url)."""
        data = await self._get("/api/v1/rules", {"type": "alert"})
        found: dict[str, RuleFacts] = {}
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                annotations = {k: str(v) for k, v in (rule.get("annotations") or {}).items() if "{{" not in str(v)}
                found[str(rule.get("name", ""))] = RuleFacts(float(group.get("interval") or 60), annotations)
        return found

    async def chunks(self, start: datetime, end: datetime) -> AsyncIterator[Chunk]:
        """The history in order, one range query per CHUNK: memory holds one chunk, never the fortnight."""
        until = start
        while until < end:
            span = min(CHUNK, end - until)
            until += span
            data = await self._get(
                "/api/v1/query", {"query": f"{QUERY}[{int(span.total_seconds())}s]", "time": f"{until.timestamp():.3f}"}
            )
            yield Chunk(
                until,
                [
                    ({str(k): str(v) for k, v in item["metric"].items()}, [float(t) for t, _ in item["values"]])
                    for item in data.get("result", [])
                ],
            )
