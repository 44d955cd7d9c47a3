"""Issue 9, items 3, 4 and 5: hostile webhook bodies, big messages and values, query strings, and regexes that
would stall a backtracking engine all get a prompt, reasoned answer, never a 5xx or a wedged run."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from temporalio.client import Client
from temporalio.worker import Worker

from service.alerts.webhook import Alert, WebhookMessage
from service.durable.delivery_activities import DeliveryActivities
from service.durable.delivery_workflow import DeliveryWorkflow
from service.playbooks.playbook import LabelMatcher
from service.runs.delivery import DeliveryCounts
from service.runs.policy import Mode
from service.temporal.client import TemporalRuns
from tests.support.crash import webhook_message
from tests.support.paths import DATA
from tests.support.processes import start
from tests.support.stack import TOKEN, running_stack
from tests.support.webhook_app import AUTH, BODIES, app


def alert(labels: dict[str, str], fingerprint: str | None = None) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "JobsStuck", "severity": "critical", **labels},
        "startsAt": datetime.now(UTC).isoformat(),
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }


def test_a_huge_label_value_is_refused_with_the_field_named() -> None:
    """Reproduction: a 600 KB label was accepted and wedged its run; now 400 naming the label."""
    reply = app().post(
        "/alertmanager",
        json={"version": "4", "status": "firing", "alerts": [alert({"q": "x" * 600_000})]},
        headers=AUTH,
    )
    assert reply.status_code in (400, 413)
    small = app().post(
        "/alertmanager", json={"version": "4", "status": "firing", "alerts": [alert({"q": "x" * 20_000})]}, headers=AUTH
    )
    assert small.status_code == 400 and "labels.q" in small.json()["error"] and "16384" in small.json()["error"]


@pytest.mark.parametrize("limit", ["abc", "1.5", "1e3", "9" * 5000, "0", "-1", "١٢"])
def test_hostile_query_parameters_get_400(limit: str) -> None:
    """Reproduction: `?limit=abc` (or 1.5, 1e3, 5,000 digits) answered 500; now 400 with the rule."""
    reply = app().get("/api/v1/runs", params={"limit": limit}, headers=AUTH)
    assert reply.status_code == 400 and "limit" in reply.json()["error"]


def test_a_backtracking_regex_cannot_stall_matching() -> None:
    """Reproduction: `v=~"(a|aa)+"` against 39 characters blocked the loop for 20 s in Python's re; RE2 is linear,
    so a value 25 times longer answers at once (Python's re would not finish in the suite's timeout)."""
    matcher = LabelMatcher.parse('v=~"(a|aa)+"')
    assert not matcher.matches({"v": "a" * 1000 + "b"}) and matcher.matches({"v": "a" * 1000})


def test_matchers_are_anchored_and_refuse_what_re2_cannot_compile() -> None:
    """As Alertmanager: `=~"warn"` does not match `warning`; backreferences are a load-time error."""
    assert not LabelMatcher.parse('s=~"warn"').matches({"s": "warning"})
    with pytest.raises(ValueError, match="RE2"):
        LabelMatcher.parse(r"s=~(a)\1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_no_webhook_body_gets_a_5xx(body: bytes) -> None:
    """Property: any body, authenticated, is answered 200 or 4xx with a reason, never 5xx."""
    reply = app().post("/alertmanager", content=body, headers=AUTH)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["error"]


async def test_a_thousand_matching_alerts_in_one_message_are_acked_at_once_and_each_run_starts_once(
    temporal_client: Client, jobs_db: str
) -> None:
    """Reproduction: 1,000 alerts answered 503 after 5 s with about a fifth started; now one durable start answers
    200 at once, a resend to another replica is one duplicate start, and the delivery starts each run once."""
    message = {"version": "4", "status": "firing", "alerts": [alert({"queue": f"q{i}"}) for i in range(1000)]}
    queue = f"big-{uuid.uuid4().hex[:8]}"
    replies = []
    for _ in range(2):  # two web replicas: the second has no memory of the first's runs
        async with (
            running_stack(
                temporal_client,
                DATA / "jobs-config.yaml",
                DATA / "playbooks",
                Mode.DRY_RUN,
                task_queue=queue,
                worker=False,
                # One dedupe window for the whole test (a delivery's id is bucketed by it): the resend lands in the
                # same bucket however long the second replica takes to start on a busy machine.
                dedupe_ttl=1e9,
            ) as stack,
            httpx2.AsyncClient(base_url=stack.url, headers=AUTH, timeout=30) as http,
        ):
            reply = await http.post("/alertmanager", json=message)
            assert reply.status_code == 200, reply.text
            replies.append(reply.json())
    assert replies[0]["started"] == 1000 and replies[1] == {**replies[0], "started": 0, "duplicates": 1000}, replies
    deliveries_query = f"TaskQueue = '{queue}' AND WorkflowType = 'DeliveryWorkflow'"
    [delivery] = [e async for e in temporal_client.list_workflows(deliveries_query)]
    # Only the delivery side runs here: every run is started (and stays open, since no run worker polls).
    activities = DeliveryActivities(TemporalRuns(temporal_client, queue)).all()
    async with Worker(temporal_client, task_queue=queue, workflows=[DeliveryWorkflow], activities=activities):
        counts = await temporal_client.get_workflow_handle(delivery.id, result_type=DeliveryCounts).result()
        assert counts == DeliveryCounts(started=1000), counts
    query = f"TaskQueue = '{queue}' AND WorkflowType = 'RemediationWorkflow'"
    for _ in range(50):  # visibility catches up within moments
        if (runs := (await temporal_client.count_workflows(query)).count) == 1000:
            break
        await asyncio.sleep(0.1)
    assert runs == 1000


@pytest.mark.process
async def test_stalled_and_dropped_clients_cost_a_timeout_not_a_traceback(
    temporal_env_address: str, tmp_path: Path
) -> None:
    """Reproduction: bodies had no read timeout and dropped connections logged tracebacks; now a stalled body gets
    408 after REMEDIATE_BODY_TIMEOUT and a client that goes away is simply forgotten."""
    env = {
        "REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address,
        "REMEDIATE_PLAYBOOKS": str(DATA / "playbooks"),
        "REMEDIATE_CONFIG": str(DATA / "jobs-config.yaml"),
        "REMEDIATE_WEBHOOK_TOKEN": TOKEN,
        "REMEDIATE_BODY_TIMEOUT": "1",
    }
    service = start("web", ["serve", "--web-only"], env, tmp_path)
    try:
        await service.wait_log("listening on")
        await asyncio.sleep(1)
        head = (
            f"POST /alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"version"'
        ).encode()
        stalled = socket.create_connection(("127.0.0.1", service.port))
        stalled.sendall(head)
        stalled.settimeout(5)
        assert b" 408 " in stalled.recv(1000).split(b"\r\n")[0] + b" "
        stalled.close()
        for _ in range(20):
            dropped = socket.create_connection(("127.0.0.1", service.port))
            dropped.sendall(head)
            dropped.close()
        await asyncio.sleep(1)
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{service.url}/healthz")).status_code == 200
    finally:
        assert await service.terminate() == 0
    assert "Traceback" not in service.text(), service.text()[-3000:]


def test_alerts_over_the_documented_sizes_name_their_field() -> None:
    """16 KB per value, 256 KB per alert: the model names what is over."""
    with pytest.raises(ValueError, match=r"annotations\.d"):
        Alert.model_validate({**alert({}), "annotations": {"d": "x" * 17_000}})
    with pytest.raises(ValueError, match="per alert"):
        Alert.model_validate({**alert({f"k{i}": "x" * 16_000 for i in range(17)})})
    WebhookMessage.model_validate(webhook_message({"alertname": "A"}, "f1", "2026-11-23T10:00:00Z"))
