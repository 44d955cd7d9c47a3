"""HTTP actions against a configured base URL: GET reads, other methods write and are never sent in dry-run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import unquote

import httpx2
from pydantic import JsonValue

from service.config import HttpConnection, resolve_secret
from service.errors import ConfigError, GuardViolation, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult
from service.steps import HttpRequestParams, Params

TEXT_KEPT = 4096  # characters of a non-JSON body kept in the run record


def _query(query: Mapping[str, JsonValue]) -> list[tuple[str, str | int | float | bool | None]]:
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, "" if item is None else item if isinstance(item, str) else json.dumps(item)))
    return pairs


def _auth_headers(conn: HttpConnection) -> dict[str, str]:
    headers = dict(conn.headers)
    if conn.auth and conn.auth.bearer:
        headers["Authorization"] = f"Bearer {resolve_secret(conn.auth.bearer)}"
    return headers


def _basic(conn: HttpConnection) -> httpx2.BasicAuth | None:
    if conn.auth and conn.auth.username and conn.auth.password:
        return httpx2.BasicAuth(conn.auth.username, resolve_secret(conn.auth.password))
    return None


class HttpAdapter:
    """One client per connection; redirects are never followed (a redirect could leave the base URL)."""

    def __init__(self, connections: Mapping[str, HttpConnection]) -> None:
        self._connections = dict(connections)
        self._clients: dict[str, httpx2.AsyncClient] = {}

    def actions(self) -> dict[str, Handler]:
        return {"http.request": self._request}

    def _client(self, name: str) -> tuple[HttpConnection, httpx2.AsyncClient]:
        conn = self._connections.get(name)
        if conn is None:
            raise ConfigError(f"no http connection named {name!r}")
        client = self._clients.get(name)
        if client is None:
            client = httpx2.AsyncClient(
                base_url=conn.base_url.rstrip("/"),
                headers=_auth_headers(conn),
                auth=_basic(conn),
                follow_redirects=False,
                verify=conn.verify_tls,
            )
            self._clients[name] = client
        return conn, client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def ping(self, name: str) -> None:
        _, client = self._client(name)
        try:
            await client.request("HEAD", "/", timeout=5.0)
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"http {name}: {exc}") from exc

    def _url(self, conn: HttpConnection, client: httpx2.AsyncClient, method: str, path: str) -> httpx2.URL:
        """The URL exactly as the client will send it, refused unless it stays under the connection's base URL."""
        url = client.build_request(method, path).url
        base = httpx2.URL(conn.base_url)
        prefix = base.path.rstrip("/") + "/"
        segments = [unquote(s) for s in url.raw_path.decode("ascii", "replace").split("?")[0].split("/")[1:]]
        if (
            (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port)
            or not (url.path + "/").startswith(prefix)
            or any(s in (".", "..") for s in segments)
        ):
            raise GuardViolation(f"{method} {url} is not under {conn.base_url}; nothing was sent")
        return url

    async def _request(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, HttpRequestParams)  # noqa: S101 - the registry validated it
        conn, client = self._client(request.connection)
        url = self._url(conn, client, params.method, params.path)
        target = f"{params.method} {url.copy_with(query=None)}"
        write = params.method != "GET"
        if write and request.attempt > 1 and not params.idempotent and not request.dry_run:
            raise PermanentStepError(
                f"{target}: attempt {request.attempt} of a write to a target not marked `idempotent: true`; "
                "the earlier attempt may have been applied, so it is not sent again (at most once)"
            )
        if params.method != "GET" and request.dry_run:
            return StepResult(
                data={
                    "dry_run": True,
                    "method": params.method,
                    "url": str(url),
                    "query": dict(params.query),
                    "body": params.body,
                },
                summary=f"would send {target}; not sent (dry-run)",
                targets=[target],
                dry_run=True,
            )
        try:
            # Every write carries its key; a target that honours it applies a retried request once.
            headers = {**params.headers, "Idempotency-Key": request.key} if write else params.headers
            response = await client.request(
                params.method,
                url,
                params=_query(params.query),
                headers=headers,
                json=params.body if params.body is not None else None,
                timeout=request.timeout_seconds,
            )
        except httpx2.TimeoutException as exc:
            if not write or params.idempotent:
                raise RetryableStepError(f"{target}: timed out") from exc
            raise PermanentStepError(f"{target}: timed out; the request may have been applied") from exc
        except httpx2.ConnectError as exc:
            raise RetryableStepError(f"{target}: cannot connect: {exc}") from exc
        except httpx2.HTTPError as exc:
            raise PermanentStepError(f"{target}: {exc}") from exc
        body = response.content[: conn.max_response_bytes]
        data: dict[str, JsonValue] = {"status": response.status_code, "url": str(response.url)}
        try:
            data["json"] = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            data["json"] = None
            data["text"] = body.decode("utf-8", "replace")[:TEXT_KEPT]
        accepted = params.expect_status or list(range(200, 300))
        if response.status_code not in accepted:
            problem = f"{target}: status {response.status_code}, expected {params.expect_status or '2xx'}"
            if response.status_code >= 500 and params.method == "GET":
                raise RetryableStepError(problem)
            raise PermanentStepError(problem)
        note = "" if not write or params.idempotent else "at most once: the target is not marked idempotent"
        return StepResult(
            data=data, summary=f"{target} -> {response.status_code}", targets=[target] if write else [], note=note
        )
