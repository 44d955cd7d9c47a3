"""Issue 9, item 1: a label value can never move an HTTP write off the path the playbook names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.playbooks.systems.http import HttpConnection, HttpRequest
from service.playbooks.templating import render
from service.runs.registry import Registry
from service.runs.state import StepRequest
from service.targets.http import HttpAdapter, new_client
from service.vocabulary.errors import GuardViolation, StepError, TemplateError
from tests.support.servers import serving

BASE = "http://127.0.0.1:9/api/v2"
TEMPLATES = ["/jobs/{{ v }}/cancel", "/jobs/{{ v }}{{ w }}/cancel", "/{{ v }}/{{ w }}", "/x{{ v }}"]


@pytest.fixture
async def target() -> AsyncIterator[tuple[list[str], Registry]]:
    seen: list[str] = []

    async def anything(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        return JSONResponse({})

    async with serving(Starlette(routes=[Route("/{p:path}", anything, methods=["GET", "POST", "DELETE"])])) as url:
        adapter = HttpAdapter({"api": HttpConnection(type="http", base_url=f"{url}/api/v2")})
        yield seen, Registry([adapter.actions()], require_all=False)
        await adapter.close()


async def _send(registry: Registry, template: str, method: str = "POST", **labels: str) -> Any:
    path = render(template, labels, escape="url")
    return await registry.dispatch(
        StepRequest(
            run_id="r", step_id="s", action="http.request", connection="api", params={"method": method, "path": path}
        )
    )


@pytest.mark.parametrize(
    ("template", "labels"),
    [
        ("/jobs/{{ v }}/cancel", {"v": ".."}),
        ("/jobs/{{ v }}/cancel", {"v": "."}),
        ("/jobs/{{ v }}/cancel", {"v": ""}),
        ("/jobs/{{ v }}/cancel", {"v": "a/b"}),
        ("/jobs/{{ v }}/cancel", {"v": "a\\b"}),
    ],
)
async def test_dot_empty_and_separator_values_are_refused_before_any_request(
    target: tuple[list[str], Registry], template: str, labels: dict[str, str]
) -> None:
    """Reproduction: `v=..` used to send `POST <base>/cancel`; now the value is refused and nothing is sent."""
    seen, registry = target
    with pytest.raises(TemplateError, match="one URL path segment"):
        await _send(registry, template, **labels)
    assert seen == []


async def test_two_dot_values_that_join_into_a_step_up_are_refused(target: tuple[list[str], Registry]) -> None:
    """Reproduction: two labels `.` and `.` joined into `..` left the base URL. Each value is refused, and the
    final URL is checked as the client will send it (here a playbook's own `..` is caught there)."""
    seen, registry = target
    with pytest.raises(TemplateError, match="one URL path segment"):
        await _send(registry, "/jobs/{{ v }}{{ w }}/cancel", "DELETE", v=".", w=".")
    with pytest.raises(GuardViolation, match="is not under"):
        await _send(registry, "/../../{{ v }}", "DELETE", v="x")
    assert seen == []


async def test_encoded_dots_stay_data_in_one_segment(target: tuple[list[str], Registry]) -> None:
    """`%2e%2e` is sent as the literal text of one segment, under the base path."""
    seen, registry = target
    await _send(registry, "/jobs/{{ v }}/cancel", v="%2e%2e")
    assert seen == ["POST /api/v2/jobs/%2e%2e/cancel"]


def test_http_writes_need_approval_unless_the_playbook_says_otherwise() -> None:
    """Reproduction: HTTP writes defaulted to `approval: none`; now they default to `required` like other writes."""
    step = HttpRequest.model_validate(
        {"id": "x", "action": "http.request", "connection": "api", "with": {"method": "POST", "path": "/a"}}
    )
    assert step.safe_default_approval() == "required"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TEMPLATES), st.text(max_size=12), st.text(max_size=12))
def test_a_rendered_path_never_leaves_the_base_url(template: str, v: str, w: str) -> None:
    """Property: whatever the label values, the URL the client would send is under base_url, or nothing is sent."""
    adapter = HttpAdapter({"api": HttpConnection(type="http", base_url=BASE)})
    conn = adapter.connection("api")
    client = new_client(conn)
    try:
        path = render(template, {"v": v, "w": w}, escape="url")
        url = adapter._url(conn, client, "DELETE", str(path))
    except (TemplateError, StepError):
        return
    assert url.host == "127.0.0.1" and url.port == 9
    assert url.path.startswith("/api/v2/")
    assert ".." not in httpx2.URL(str(url)).path.split("/")
