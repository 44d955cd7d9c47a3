"""Prometheus instant queries: samples as floats; an empty result is an answer, not an error."""

from __future__ import annotations

from typing import Any

import httpx2
from pydantic import JsonValue

from service.playbooks.systems.prometheus import (
    PROMETHEUS,
    PrometheusConnection,
    PrometheusQuery,
    PrometheusQueryParams,
)
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult
from service.targets.base import ConnectionAdapter, http_client, http_errors
from service.vocabulary.errors import PermanentStepError


def _samples(result_type: str, result: Any) -> list[JsonValue]:
    if result_type in ("scalar", "string"):
        return [{"metric": {}, "value": float(result[1]) if result_type == "scalar" else result[1]}]
    if result_type == "vector":
        return [{"metric": dict(r.get("metric", {})), "value": float(r["value"][1])} for r in result]
    if result_type == "matrix":
        return [{"metric": dict(r.get("metric", {})), "values": [float(v[1]) for v in r["values"]]} for r in result]
    raise PermanentStepError(f"unknown Prometheus result type {result_type!r}")


class PrometheusAdapter(ConnectionAdapter[PrometheusConnection, httpx2.AsyncClient]):
    """One client per Prometheus connection."""

    system = PROMETHEUS

    def actions(self) -> dict[str, Action[Any]]:
        return specs(Action(PrometheusQuery, self._query))

    async def _open(self, name: str, conn: PrometheusConnection) -> httpx2.AsyncClient:
        return http_client(conn.url, conn.auth)

    async def _close(self, client: httpx2.AsyncClient) -> None:
        await client.aclose()

    async def ping(self, connection: str) -> None:
        client = await self.client(connection)
        with http_errors(f"prometheus {connection}"):
            (await client.get("/-/ready", timeout=5.0)).raise_for_status()

    async def _query(self, request: StepRequest, params: PrometheusQueryParams) -> StepResult:
        client = await self.client(request.connection)
        with http_errors(f"prometheus {request.connection}"):
            response = await client.get(
                "/api/v1/query", params={"query": params.query}, timeout=request.timeout_seconds
            )
            payload = response.json()
        if payload.get("status") != "success":
            raise PermanentStepError(f"prometheus query failed: {payload.get('errorType')}: {payload.get('error')}")
        data = payload["data"]
        samples = _samples(data["resultType"], data["result"])
        return StepResult(
            data={"samples": samples, "empty": not samples, "result_type": data["resultType"]},
            summary=f"{len(samples)} sample(s)" if samples else "empty result",
        )
