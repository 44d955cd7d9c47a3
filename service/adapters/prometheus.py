"""Prometheus instant queries: samples as floats; an empty result is an answer, not an error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from pydantic import JsonValue

from service.config import PrometheusConnection, resolve_secret
from service.errors import ConfigError, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult
from service.steps import Params, PrometheusQueryParams


def _samples(result_type: str, result: Any) -> list[JsonValue]:
    if result_type in ("scalar", "string"):
        return [{"metric": {}, "value": float(result[1]) if result_type == "scalar" else result[1]}]
    if result_type == "vector":
        return [{"metric": dict(r.get("metric", {})), "value": float(r["value"][1])} for r in result]
    if result_type == "matrix":
        return [{"metric": dict(r.get("metric", {})), "values": [float(v[1]) for v in r["values"]]} for r in result]
    raise PermanentStepError(f"unknown Prometheus result type {result_type!r}")


class PrometheusAdapter:
    """One client per Prometheus connection."""

    def __init__(self, connections: Mapping[str, PrometheusConnection]) -> None:
        self._connections = dict(connections)
        self._clients: dict[str, httpx2.AsyncClient] = {}

    def actions(self) -> dict[str, Handler]:
        return {"prometheus.query": self._query}

    def _client(self, name: str) -> httpx2.AsyncClient:
        conn = self._connections.get(name)
        if conn is None:
            raise ConfigError(f"no prometheus connection named {name!r}")
        client = self._clients.get(name)
        if client is None:
            headers: dict[str, str] = {}
            auth = None
            if conn.auth and conn.auth.bearer:
                headers["Authorization"] = f"Bearer {resolve_secret(conn.auth.bearer)}"
            if conn.auth and conn.auth.username and conn.auth.password:
                auth = httpx2.BasicAuth(conn.auth.username, resolve_secret(conn.auth.password))
            client = httpx2.AsyncClient(
                base_url=conn.url.rstrip("/"), headers=headers, auth=auth, follow_redirects=False
            )
            self._clients[name] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def ping(self, name: str) -> None:
        try:
            (await self._client(name).get("/-/ready", timeout=5.0)).raise_for_status()
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"prometheus {name}: {exc}") from exc

    async def _query(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, PrometheusQueryParams)  # noqa: S101 - the registry validated it
        client = self._client(request.connection)
        try:
            response = await client.get(
                "/api/v1/query", params={"query": params.query}, timeout=request.timeout_seconds
            )
            payload = response.json()
        except (httpx2.TimeoutException, httpx2.ConnectError) as exc:
            raise RetryableStepError(f"prometheus {request.connection}: {exc}") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise PermanentStepError(f"prometheus {request.connection}: {exc}") from exc
        if payload.get("status") != "success":
            raise PermanentStepError(f"prometheus query failed: {payload.get('errorType')}: {payload.get('error')}")
        data = payload["data"]
        samples = _samples(data["resultType"], data["result"])
        return StepResult(
            data={"samples": samples, "empty": not samples, "result_type": data["resultType"]},
            summary=f"{len(samples)} sample(s)" if samples else "empty result",
        )
