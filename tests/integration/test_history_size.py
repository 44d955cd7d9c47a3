"""What a run and its delivery write to Temporal history, measured on a real run (issue 13, item 3)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx2
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from service.alerts.webhook import Alert, WebhookMessage
from service.durable.activities import RESULT_LIMIT
from service.playbooks.loader import load_playbooks
from service.runs.delivery import Delivery
from service.runs.intake import Receiver, SeenRuns
from service.runs.policy import Mode
from service.runs.state import RunStart
from tests.support.jobs import seed_jobs
from tests.support.paths import DATA
from tests.support.stack import TOKEN, run_handle, running_stack

# Budgets for the example playbook (one read, one write, one verify, dry-run), with room for small changes; a
# history that outgrows them has picked up something it should not carry.
RUN_BUDGET = 16 * 1024
DELIVERY_BUDGET = 6 * 1024


async def history_bytes(client: Client, workflow_id: str) -> Counter[str]:
    """Bytes of history per event type."""
    sizes: Counter[str] = Counter()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        sizes[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += event.ByteSize()
    return sizes


def alert(queue: str) -> dict[str, object]:
    return {
        "status": "firing",
        "labels": {"alertname": "JobsStuck", "queue": queue, "severity": "warning"},
        "startsAt": datetime.now(UTC).isoformat(),
        "fingerprint": uuid.uuid4().hex[:16],
    }


async def test_a_run_and_its_delivery_stay_within_their_history_budgets(temporal_client: Client, jobs_db: str) -> None:
    """A one-read, one-write, one-verify run writes under 16 KiB of history and its delivery under 6 KiB; the
    breakdown per event type is printed (pytest -s) so a change that grows it shows where."""
    seed_jobs(jobs_db, stuck=[1, 2])
    queue = f"hist-{uuid.uuid4().hex[:8]}"
    body = {"version": "4", "status": "firing", "alerts": [alert("q1")]}
    async with (
        running_stack(
            temporal_client, DATA / "jobs-config.yaml", DATA / "playbooks", Mode.DRY_RUN, task_queue=queue
        ) as stack,
        httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        assert (await http.post("/alertmanager", json=body)).json()["started"] == 1
        a = Alert.model_validate(body["alerts"][0])
        run_id = f"stuck-jobs/{a.fingerprint}/{a.starts_at_unix}"
        await (await run_handle(temporal_client, run_id)).result()
        [delivery] = [
            e
            async for e in temporal_client.list_workflows(
                f"TaskQueue = '{queue}' AND WorkflowType = 'DeliveryWorkflow'"
            )
        ]
        await temporal_client.get_workflow_handle(delivery.id).result()
    started = await anext(aiter(temporal_client.get_workflow_handle(run_id).fetch_history_events()))
    pinned = RunStart.model_validate_json(started.workflow_execution_started_event_attributes.input.payloads[0].data)
    assert pinned.first_attempt  # a new id: the run skips counting earlier attempts through visibility
    run, carried = await history_bytes(temporal_client, run_id), await history_bytes(temporal_client, delivery.id)
    for name, sizes in (("run", run), ("delivery", carried)):
        print(f"\n{name}: {sum(sizes.values())} bytes of history")
        for kind, size in sizes.most_common():
            print(f"  {kind:<40} {size:>7}")
    assert sum(run.values()) < RUN_BUDGET, run
    assert sum(carried.values()) < DELIVERY_BUDGET, carried


async def test_a_delivery_carries_each_playbook_once_however_many_alerts_it_matches() -> None:
    """Fifty alerts matched by one playbook: the delivery holds the playbook once, and rebuilds fifty run inputs."""
    carried: list[Delivery] = []

    class Keep:
        async def deliver(self, delivery: Delivery) -> bool:
            carried.append(delivery)
            return True

    receiver = Receiver(load_playbooks([DATA / "playbooks"]), Keep(), Mode.DRY_RUN, SeenRuns(100))
    message = WebhookMessage.model_validate(
        {"version": "4", "status": "firing", "alerts": [alert(f"q{i}") for i in range(50)]}
    )
    counts = await receiver.receive(message)
    assert counts == {"started": 50, "duplicates": 0, "resolved": 0, "unmatched": 0}
    [delivery] = carried
    assert len(delivery.terms) == 1 and len(delivery.alerts) == 50 and len(delivery.runs()) == 50
    one_run = delivery.runs()[0].model_dump_json()
    # Fifty separate run inputs would carry the playbook fifty times; the delivery is far smaller than that.
    assert len(delivery.model_dump_json()) < 50 * len(one_run) / 3
    assert len(delivery.model_dump_json()) < RESULT_LIMIT
