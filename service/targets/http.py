"""HTTP actions against a configured base URL: GET reads, other methods write and are never sent in dry-run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import httpx2
from pydantic import JsonValue

from service.playbooks.systems.http import HTTP, HttpConnection, HttpRequest, HttpRequestParams
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult
from service.targets.base import ConnectionAdapter, auth_headers, basic_auth, http_errors
from service.vocabulary.errors import GuardViolation, PermanentStepError, RetryableStepError

TEXT_KEPT = 4096  # characters of a non-JSON body kept in the run record


def _query(query: Mapping[str, JsonValue]) -> list[tuple[str, str | int | float | bool | None]]:
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, "" if item is None else item if isinstance(item, str) else json.dumps(item)))
    return pairs


def new_client(conn: HttpConnection) -> httpx2.AsyncClient:
    """The client of one connection: its base URL, auth and headers; redirects never followed."""
    return httpx2.AsyncClient(
        base_url=conn.base_url.rstrip("/"),
        headers=auth_headers(conn.auth, conn.headers),
        auth=basic_auth(conn.auth),
        follow_redirects=False,
        verify=conn.verify_tls,
    )


class HttpAdapter(ConnectionAdapter[HttpConnection, httpx2.AsyncClient]):
    """One client per connection; redirects are never followed (a redirect could leave the base URL)."""

    system = HTTP

    def actions(self) -> dict[str, Action[Any]]:
        return specs(Action(HttpRequest, self._request))

    async def _open(self, name: str, conn: HttpConnection) -> httpx2.AsyncClient:
        return new_client(conn)

    async def _close(self, client: httpx2.AsyncClient) -> None:
        await client.aclose()

    async def ping(self, connection: str) -> None:
        client = await self.client(connection)
        with http_errors(f"http {connection}"):
            await client.request("HEAD", "/", timeout=5.0)

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

    async def _request(self, request: StepRequest, params: HttpRequestParams) -> StepResult:
        conn, client = self.connection(request.connection), await self.client(request.connection)
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
        # Every write carries its key; a target that honours it applies a retried request once.
        headers = {**params.headers, "Idempotency-Key": request.key} if write else params.headers
        with http_errors(target, may_repeat=not write or params.idempotent):
            response = await client.request(
                params.method,
                url,
                params=_query(params.query),
                headers=headers,
                json=params.body if params.body is not None else None,
                timeout=request.timeout_seconds,
            )
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
