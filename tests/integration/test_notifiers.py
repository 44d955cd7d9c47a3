"""Several notifiers as one, over real HTTP: one tool down never loses the others' messages, all down is retried."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.notify.notifiers import AllNotifiers
from service.notify.webhook import WebhookNotifier
from service.vocabulary.errors import NotifyError
from service.vocabulary.outcomes import OutcomeNotice
from tests.support.servers import free_port, serving


def endpoint(status: int, received: list[tuple[str, dict[str, object]]]) -> Starlette:
    """A chat or paging tool's webhook that answers `status` and records what it was sent, with its key."""

    async def hook(request: Request) -> Response:
        received.append((request.headers.get("idempotency-key", ""), await request.json()))
        return JSONResponse({}, status)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


OUTCOME = OutcomeNotice(run_id="p/fp/1", playbook="p", alertname="A", mode="auto", status="succeeded", sequence=2)


async def test_one_tool_down_is_logged_and_the_others_still_get_every_message() -> None:
    """A 503 from one webhook does not fail the message: the other tool gets it, keyed, and its id is kept."""
    good: list[tuple[str, dict[str, object]]] = []
    down: list[tuple[str, dict[str, object]]] = []
    async with serving(endpoint(200, good)) as ok_url, serving(endpoint(503, down)) as down_url:
        both = AllNotifiers([WebhookNotifier(f"{down_url}/hook"), WebhookNotifier(f"{ok_url}/hook")])
        try:
            ref = await both.report(OUTCOME)
            await both.announce("kill switch on")
        finally:
            await both.close()
    assert ref.id == "p/fp/1" and ref.notifier == "webhook"
    assert [(key, body["kind"]) for key, body in good] == [("p/fp/1/outcome/2", "outcome"), ("", "announcement")]
    assert len(down) == 2  # it was asked, and answered 503


async def test_every_tool_down_fails_the_message_so_the_run_retries_it() -> None:
    """When no tool takes the message (a 5xx, a refused connection), the failure is raised as retryable."""
    down: list[tuple[str, dict[str, object]]] = []
    async with serving(endpoint(502, down)) as down_url:
        both = AllNotifiers([WebhookNotifier(f"{down_url}/hook"), WebhookNotifier(f"http://127.0.0.1:{free_port()}/")])
        try:
            with pytest.raises(NotifyError) as raised:
                await both.report(OUTCOME)
        finally:
            await both.close()
    assert raised.value.retryable and "502" in str(raised.value)


async def test_a_tool_that_refuses_the_message_is_not_asked_again() -> None:
    """A 4xx other than 429 is the tool refusing this message: not worth a retry."""
    refused: list[tuple[str, dict[str, object]]] = []
    async with serving(endpoint(400, refused)) as url:
        only = WebhookNotifier(f"{url}/hook")
        try:
            with pytest.raises(NotifyError) as raised:
                await only.announce("hello")
        finally:
            await only.close()
    assert not raised.value.retryable and len(refused) == 1
