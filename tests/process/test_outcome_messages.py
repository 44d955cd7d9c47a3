"""Outcome messages as deployed: `remediate serve` with Slack (a local stand-in that records calls) and a generic
webhook notifier (a local endpoint that records POSTs)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from tests.support.deployment import AUTH, alert, env, finished, until, write_config
from tests.support.fake_slack import FakeSlack
from tests.support.processes import start
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving


@dataclass
class Hook:
    """The generic webhook's receiver: every body with its Idempotency-Key."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.posts.append((request.headers.get("idempotency-key", ""), json.loads(await request.body())))
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])

    def outcomes(self, run_id: str) -> list[dict[str, Any]]:
        return [body for _, body in self.posts if body.get("kind") == "outcome" and body["run_id"] == run_id]


async def test_a_run_that_writes_gets_one_message_updated_as_it_goes_on_slack_and_the_webhook(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """A write that succeeds: one Slack message posted as it starts acting and updated with the outcome, and two
    webhook POSTs (sequence 1 then 2) for the same run; a failed write is announced as failed; a playbook with
    `notify: {on: []}` writes without a word."""
    target, slack, hook = RailTarget(), FakeSlack(), Hook()
    queue = f"notify-{uuid.uuid4().hex[:8]}"
    target.failing.add("n2")
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "loud.yaml").write_text(playbook("notify-loud", "NotifyLoud"))
    (books / "quiet.yaml").write_text(playbook("notify-quiet", "NotifyQuiet", extra="notify: {on: []}"))
    async with serving(target.app()) as url, serving(slack.app()) as slack_url, serving(hook.app()) as hook_url:
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
        settings |= {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "REMEDIATE_SLACK_CHANNEL": "C1",
            "REMEDIATE_SLACK_API_URL": f"{slack_url}/api",
            "REMEDIATE_NOTIFY_WEBHOOK_URL": f"{hook_url}/hook",
        }
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                for name, key in (("NotifyLoud", "n1"), ("NotifyLoud", "n2"), ("NotifyQuiet", "q1")):
                    await http.post("/alertmanager", json=alert(name, key))
            loud = await finished(temporal_client, queue, "notify-loud", 2)
            await finished(temporal_client, queue, "notify-quiet", 1)
            ok = next(s for s in loud if s.labels["key"] == "n1")
            failed = next(s for s in loud if s.labels["key"] == "n2")
            assert (ok.status, failed.status) == ("succeeded", "failed")
            await until(lambda: len(hook.outcomes(ok.run_id)) == 2 and len(hook.outcomes(failed.run_id)) == 2)
        finally:
            await service.terminate()
    assert target.writes["q1"] == 1  # the quiet playbook wrote …
    assert not [b for _, b in hook.posts if "notify-quiet" in json.dumps(b)]  # … and said nothing
    assert not [m for m in slack.messages() if "notify-quiet" in json.dumps(m)]

    first, last = hook.outcomes(ok.run_id)
    assert (first["sequence"], first["ended"], first["status"]) == (1, False, "acting")
    assert (last["sequence"], last["ended"], last["status"]) == (2, True, "succeeded")
    (wrote,) = last["writes"]
    assert wrote.startswith("fix: http.request on target, 1 target(s): POST http") and wrote.endswith("/fix/n1")
    keys = [key for key, body in hook.posts if body.get("run_id") == ok.run_id]
    assert keys == [f"{ok.run_id}/outcome/1", f"{ok.run_id}/outcome/2"]
    assert hook.outcomes(failed.run_id)[-1]["status"] == "failed"

    posted = [m for m in slack.messages("chat.postMessage") if ok.run_id in json.dumps(m)]
    updated = [m for m in slack.messages("chat.update") if ok.run_id in json.dumps(m)]
    assert len(posted) == 1 and "in progress" in json.dumps(posted[0]) and posted[0]["channel"] == "C1"
    assert len(updated) == 1 and "succeeded" in updated[0]["text"] and "/fix/n1" in json.dumps(updated[0])
    failed_posts = [m for m in slack.calls if failed.run_id in json.dumps(m[1])]
    assert [name for name, _ in failed_posts] == ["chat.postMessage", "chat.update"]
    assert "failed" in failed_posts[-1][1]["text"]
