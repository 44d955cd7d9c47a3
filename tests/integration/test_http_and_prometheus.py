"""http.request against a real local HTTP server and prometheus.query against a real Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.playbooks.system import HttpAuth
from service.playbooks.systems.http import HttpConnection
from service.playbooks.systems.prometheus import PrometheusConnection
from service.runs.registry import Registry
from service.runs.state import StepRequest
from service.targets.http import HttpAdapter
from service.targets.prometheus import PrometheusAdapter
from service.vocabulary.errors import PermanentStepError, RetryableStepError
from tests.support.servers import Prometheus, free_port, serving


class Target:
    """A target HTTP API that records every request it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str | None]] = []
        self.keys: list[str | None] = []

    def app(self) -> Starlette:
        async def anything(request: Request) -> Response:
            self.seen.append(
                (request.method, request.url.path, request.url.query, request.headers.get("authorization"))
            )
            self.keys.append(request.headers.get("idempotency-key"))
            if request.url.path.endswith("/redirect"):
                return RedirectResponse("http://example.invalid/", 302)
            if request.url.path.endswith("/fail"):
                return JSONResponse({"error": "no"}, 409)
            return JSONResponse({"path": request.url.path, "body": (await request.body()).decode()})

        return Starlette(routes=[Route("/{rest:path}", anything, methods=["GET", "POST", "PUT", "DELETE"])])


@pytest.fixture
async def target(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Target, Registry]]:
    recorder = Target()
    monkeypatch.setenv("TARGET_TOKEN", "s3cret")
    async with serving(recorder.app()) as url:
        adapter = HttpAdapter(
            {"api": HttpConnection(type="http", base_url=f"{url}/base", auth=HttpAuth(bearer="env:TARGET_TOKEN"))}
        )
        yield recorder, Registry([adapter.actions()], require_all=False)
        await adapter.close()


def _req(dry_run: bool = False, **params: object) -> StepRequest:
    return StepRequest(run_id="r", step_id="s", action="http.request", connection="api", params=params, dry_run=dry_run)


async def test_get_reads_json_under_the_base_url_with_auth(target: tuple[Target, Registry]) -> None:
    """A GET goes to base URL + path with the connection's token and returns parsed JSON."""
    recorder, registry = target
    result = await registry.dispatch(_req(method="GET", path="/api/x%2Fy", query={"status": "running"}))
    assert result.data["status"] == 200 and result.data["json"] == {"path": "/base/api/x/y", "body": ""}
    assert recorder.seen[0][2] == "status=running" and recorder.seen[0][3] == "Bearer s3cret"


async def test_writes_are_not_sent_in_dry_run(target: tuple[Target, Registry]) -> None:
    """A POST in dry-run is planned with its full URL and never reaches the target."""
    recorder, registry = target
    result = await registry.dispatch(_req(dry_run=True, method="POST", path="/api/workflows/1/cancel"))
    assert result.dry_run and recorder.seen == []
    assert result.targets == [f"POST {result.data['url']}"]


async def test_redirects_are_not_followed_and_unexpected_status_fails(target: tuple[Target, Registry]) -> None:
    """A redirect is an unexpected status, never a hop elsewhere; a 409 fails a write."""
    recorder, registry = target
    with pytest.raises(PermanentStepError, match="status 302"):
        await registry.dispatch(_req(method="GET", path="/redirect"))
    with pytest.raises(PermanentStepError, match="status 409"):
        await registry.dispatch(_req(method="POST", path="/fail", body={"a": 1}))
    accepted = await registry.dispatch(_req(method="POST", path="/fail", expect_status=[409]))
    assert accepted.data["status"] == 409
    assert [s[0] for s in recorder.seen] == ["GET", "POST", "POST"]


async def test_writes_carry_their_idempotency_key_and_only_idempotent_ones_are_retried(
    target: tuple[Target, Registry],
) -> None:
    """Every write sends Idempotency-Key <run>/<step>; attempt 2 goes out only when the step says `idempotent`."""
    recorder, registry = target
    await registry.dispatch(_req(method="GET", path="/jobs/1"))
    await registry.dispatch(_req(method="POST", path="/jobs/1/cancel"))
    retry = _req(method="POST", path="/jobs/1/cancel").model_copy(update={"attempt": 2})
    with pytest.raises(PermanentStepError, match="not marked `idempotent: true`"):
        await registry.dispatch(retry)
    retry.params["idempotent"] = True
    await registry.dispatch(retry)
    assert recorder.keys == [None, "r/s", "r/s"]


@pytest.fixture
async def prom(prometheus: Prometheus) -> AsyncIterator[Registry]:
    adapter = PrometheusAdapter({"prom": PrometheusConnection(type="prometheus", url=prometheus.url)})
    yield Registry([adapter.actions()], require_all=False)
    await adapter.close()


async def test_prometheus_instant_query_returns_floats(prom: Registry) -> None:
    """A real Prometheus answers `up` for itself with a float sample."""
    query = StepRequest(
        run_id="r", step_id="s", action="prometheus.query", connection="prom", params={"query": 'up{job="targets"}'}
    )
    for _ in range(50):
        result = await prom.dispatch(query)
        if not result.data["empty"]:
            break
        await asyncio.sleep(0.2)
    sample = result.data["samples"][0]  # type: ignore[index]
    assert sample["value"] == 1.0  # type: ignore[index,call-overload]


async def test_prometheus_empty_result_is_an_answer(prom: Registry) -> None:
    """A query matching nothing returns empty=True instead of failing."""
    result = await prom.dispatch(
        StepRequest(
            run_id="r",
            step_id="s",
            action="prometheus.query",
            connection="prom",
            params={"query": 'up{job="no-such-job"}'},
        )
    )
    assert result.data["empty"] is True and result.data["samples"] == []


async def test_prometheus_bad_query_fails_clearly(prom: Registry) -> None:
    """A PromQL syntax error is a permanent failure that quotes Prometheus' reason."""
    with pytest.raises(PermanentStepError, match="bad_data"):
        await prom.dispatch(
            StepRequest(run_id="r", step_id="s", action="prometheus.query", connection="prom", params={"query": "up{"})
        )


async def test_prometheus_scalar_string_and_range_results_keep_their_shape(prom: Registry) -> None:
    """A scalar is a float sample, a string stays text, a range vector keeps its values in order, as floats."""

    async def ask(query: str) -> dict[str, object]:
        request = StepRequest(
            run_id="r", step_id="s", action="prometheus.query", connection="prom", params={"query": query}
        )
        return (await prom.dispatch(request)).data  # type: ignore[return-value]

    assert await ask("scalar(vector(2.5))") == {
        "samples": [{"metric": {}, "value": 2.5}], "empty": False, "result_type": "scalar"
    }  # fmt: skip
    assert (await ask('"ready"'))["samples"] == [{"metric": {}, "value": "ready"}]
    for _ in range(50):  # the target has been scraped at least once: a range holds a value
        ranged = await ask('up{job="targets"}[5m]')
        if not ranged["empty"]:
            break
        await asyncio.sleep(0.2)
    assert ranged["result_type"] == "matrix"
    assert all(v == 1.0 for v in ranged["samples"][0]["values"])  # type: ignore[index]


async def test_prometheus_readiness_is_its_own_ready_endpoint(prometheus: Prometheus) -> None:
    """/readyz pings Prometheus' /-/ready; one that does not answer is a retryable failure that names it."""
    up = PrometheusAdapter({"prom": PrometheusConnection(type="prometheus", url=prometheus.url)})
    down = PrometheusAdapter({"gone": PrometheusConnection(type="prometheus", url=f"http://127.0.0.1:{free_port()}")})
    try:
        await up.ping("prom")
        with pytest.raises(RetryableStepError, match="prometheus gone: cannot connect"):
            await down.ping("gone")
    finally:
        await up.close()
        await down.close()
