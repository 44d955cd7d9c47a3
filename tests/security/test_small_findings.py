"""Issue 20's smaller findings, one test each: escaped Slack fallbacks, exact loopback, prose left unmasked, a
readiness reason that says something, and a 1,000-alert message counted as started."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient
from temporalio.client import Client

from service.notify.slack.messages import SlackNotifier
from service.runs.policy import Mode
from service.vocabulary.approvals import Gate, GateRequest, Notice
from service.vocabulary.outcomes import OutcomeNotice
from service.vocabulary.redact import redact
from service.web.app import health_routes
from service.web.credentials import is_loopback
from tests.support.deployment import many, write_config
from tests.support.fake_slack import FakeSlack
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving
from tests.support.stack import TOKEN, running_stack

HOSTILE = "<!channel> <https://evil.example|click> & <@U_BOSS>"


async def test_slack_fallback_text_is_escaped_like_the_blocks() -> None:
    """The top-level `text` (what notifications show) of an approval request and of an outcome message carries a
    hostile alertname as text: no @channel, no link, no mention."""
    slack = FakeSlack()
    async with serving(slack.app()) as url:
        notifier = SlackNotifier("xoxb-test", "C1", api_url=f"{url}/api")
        gate = Gate(
            request=GateRequest(
                run_id="p/f/1",
                playbook="p",
                alertname=HOSTILE,
                labels={"v": HOSTILE},
                diagnosis=[],
                writes=[],
                approvers=["U1"],
                min_approvals=1,
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
        )
        await notifier.publish(Notice(gate=gate, channel="C1"))
        await notifier.report(
            OutcomeNotice(run_id="p/f/1", playbook="p", alertname=HOSTILE, mode="auto", status="failed", reason=HOSTILE)
        )
        await notifier.close()
    texts = [body["text"] for _, body in slack.calls]
    assert len(texts) == 2
    for text in texts:
        assert "<!channel>" not in text and "<https://" not in text and "<@U_BOSS>" not in text
        assert "&lt;!channel&gt;" in text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.1.nip.io", False),
        ("localhost.example.invalid", False),
        ("0.0.0.0", False),  # noqa: S104 - a host name under test, not a bind
        ("10.0.0.1", False),
    ],
)
def test_loopback_is_an_address_not_a_prefix(host: str, loopback: bool) -> None:
    """Only a loopback address or `localhost` itself counts: a name that starts like one is another host."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("basic functionality is restored", False),
        ("the basic building blocks", False),
        ("bearer instruments", False),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", True),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", True),
        ("Bearer s3cr3t-t0ken", True),
    ],
)
def test_redaction_masks_credentials_not_prose(text: str, masked: bool) -> None:
    """`Basic`/`Bearer` followed by a credential is masked; the same words in a sentence are left alone."""
    assert ("***" in redact(text)) is masked, redact(text)


def test_readiness_names_a_failure_that_has_no_message() -> None:
    """A ping that times out with an empty message is reported as `failed: TimeoutError`, never `failed: `."""

    async def slow() -> None:
        raise TimeoutError

    app = Starlette(routes=health_routes({"target": slow}, CollectorRegistry()))
    answer = TestClient(app).get("/readyz").json()
    assert answer["checks"]["target"] == "failed: TimeoutError" and answer["ready"] is False


async def test_a_thousand_alert_message_is_answered_as_started(
    temporal_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message of 1,000 new alerts answers `started: 1000`; the same message again answers `duplicates: 1000`."""
    monkeypatch.setenv("ONCALL_TOKEN", "oncall-token-0123456789")
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "big.yaml").write_text(playbook("big-message", "BigMessage"))
    async with serving(RailTarget().app()) as url:
        config = write_config(tmp_path / "c.yaml", url, "one")
        queue = f"big-{uuid.uuid4().hex[:8]}"
        async with (
            running_stack(temporal_client, config, books, Mode.DRY_RUN, task_queue=queue, dedupe_ttl=60) as stack,
            httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
        ):
            message = many("BigMessage", [f"k{i}" for i in range(1000)])
            first = (await http.post("/alertmanager", json=message)).json()
            again = (await http.post("/alertmanager", json=message)).json()
            await asyncio.sleep(0)
    assert first == {"started": 1000, "duplicates": 0, "resolved": 0, "unmatched": 0}
    assert again["duplicates"] == 1000 and again["started"] == 0
