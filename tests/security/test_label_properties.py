"""Issue 20: any label value Alertmanager could send (and some it never would) is data. Generated values go through
the webhook route, the run (templates rendered and sent to a real HTTP target by the real adapter, as `remediate
plan` runs it) and both audit stores: no 5xx, every run ends, every run is recorded and reads back."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.alerts.webhook import Alert, run_id
from service.playbooks.loader import load_file
from service.playbooks.shelf import SHELF
from service.playbooks.steps import StepBase
from service.playbooks.systems.http import HttpConnection
from service.runs.audit import FINAL, AuditSnapshot, Scrubber, events_of
from service.runs.delivery import Delivery
from service.runs.engine import Run
from service.runs.intake import Receiver, SeenRuns
from service.runs.policy import Mode
from service.runs.registry import Registry
from service.runs.state import RunInput, StepRequest, StepResult
from service.stores.postgres import PostgresAuditStore
from service.stores.sqlite import SqliteAuditStore
from service.targets.http import HttpAdapter
from service.temporal.client import TemporalRuns
from service.vocabulary.errors import ConfigError, PermanentStepError
from service.web.app import create_app
from service.web.credentials import WebAuth
from tests.support.jobs import new_database
from tests.support.rail_target import RailTarget
from tests.support.servers import Postgres, serving

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("REMEDIATE_PROPERTY_EXAMPLES", "200"))  # 10,000 once, by hand; 200 in CI
PLAYBOOK = """
name: label-probe
match: {alertname: LabelProbe}
inputs:
  v: "{{ alert.labels.v }}"
  size: "{{ alert.labels.v | length }}"
  loud: "{{ alert.labels.v | upper }}"
  number: "{{ alert.labels.v | int }}"
diagnose:
  - id: check
    action: http.request
    connection: target
    with: {path: "/check/{{ inputs.v }}", query: {v: "{{ inputs.loud }}", n: "{{ inputs.number }}"}}
act:
  - id: fix
    action: http.request
    connection: target
    when: "inputs.size | int >= 0 and alert.labels.v != 'never'"
    approval: none
    with: {method: POST, path: "/fix/{{ inputs.v }}", body: {label: "{{ alert.labels.v }}", all: "{{ alert.labels }}"}}
"""


class Recording:
    """Where the webhook's deliveries go in this test: kept, so each alert can be run here."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> bool:
        self.deliveries.append(delivery)
        return True


class NoTemporal(TemporalRuns):
    """The run API is not exercised here; the webhook route never calls it."""

    def __init__(self) -> None:
        pass


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        return None


values = st.one_of(
    st.text(max_size=64),
    st.text(alphabet=st.sampled_from("\x00\x01\n\r\t\\\"'/%.<>&{}|*?[]^$ \u2028\ufeff\U0001f525é"), max_size=32),
    st.just(""),
    st.sampled_from([".", "..", "/", "nul\x00x", "1e999", "9" * 400, "{{ 7 * 7 }}", "<!channel>"]),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(min_value=15_000, max_value=16_384)),
)
names = st.one_of(st.text(min_size=1, max_size=32), st.sampled_from(["bad\x00name", "a.b", "__class__", "v "]))


@pytest.fixture(scope="module")
async def stores(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Any]]:
    pg = PostgresAuditStore(new_database(postgres))
    await pg.migrate()
    lite = SqliteAuditStore(tmp_path_factory.mktemp("audit") / "audit.db")
    yield [pg, lite]
    await pg.close()
    await lite.close()


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[str]:
    async with serving(RailTarget().app()) as url:
        yield url


class Harness:
    """The webhook route, the run's executor (the real HTTP adapter) and both audit stores, built once."""

    def __init__(self, books: Path, target: str, stores: list[Any]) -> None:
        (books / "probe.yaml").write_text(PLAYBOOK)
        playbook, problems = load_file(books / "probe.yaml", {"target": "http"})
        assert playbook is not None, problems
        self.adapter = HttpAdapter({"target": HttpConnection(type="http", base_url=target)})
        self.registry = Registry([self.adapter.actions()], require_all=False)
        self.recording = Recording()
        receiver = Receiver([playbook], self.recording, Mode.DRY_RUN, SeenRuns(0))
        self.app = create_app(receiver, WebAuth(), NoTemporal())
        self.stores, self.scrubber = stores, Scrubber(["a-configured-secret"])

    async def execute(self, step: StepBase, request: StepRequest) -> StepResult:
        try:
            return await self.registry.dispatch(request)
        except ConfigError as exc:
            raise PermanentStepError(str(exc)) from exc


@pytest.fixture(scope="module")
async def harness(stores: list[Any], target: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    built = Harness(tmp_path_factory.mktemp("books"), target, stores)
    yield built
    await built.adapter.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    value=values,
    extra=st.dictionaries(names, values, max_size=3),
    surrogate=st.sampled_from(["", "\\ud800", "\\udfff", "\\udc80x"]),
)
async def test_generated_labels_never_5xx_and_every_run_ends_recorded(
    harness: Harness, value: str, extra: dict[str, str], surrogate: str
) -> None:
    """For every generated message: the webhook answers 200 or a reasoned 4xx; each accepted alert's run ends with a
    final status; both audit stores take its records and give the run back."""
    labels = {**extra, "alertname": "LabelProbe", "v": value}
    alert = {"status": "firing", "labels": labels, "startsAt": "2026-12-01T00:00:00Z"}
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    raw = json.dumps({"version": "4", "status": "firing", "alerts": [alert]})
    if surrogate:  # a lone surrogate, as only a JSON escape can carry one
        raw = raw.replace('"v": "', f'"v": "{surrogate}', 1)
    harness.recording.deliveries.clear()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=harness.app), base_url="http://t") as http:
        answer = await http.post("/alertmanager", content=raw.encode())
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        assert 400 <= answer.status_code < 500 and answer.json()["error"], answer.text
        return
    assert surrogate == "", "a lone surrogate is no Unicode text and is refused"
    (delivery,) = harness.recording.deliveries
    for run_input in delivery.runs():
        state = await Run(run_input.resolved(SHELF), harness.execute, Clock()).execute_run()
        assert state.status in FINAL, state
        for store in harness.stores:
            snapshot = AuditSnapshot(seq=1, state=harness.scrubber.state(state), final=True)
            await store.append(snapshot, events_of(snapshot.state))
            back = await store.run(state.run_id)
            assert back is not None and back.status == state.status


def test_a_recorded_nul_is_a_visible_escape() -> None:
    """What the stores keep of a NUL: the text `\\u0000`, never the byte (Postgres text cannot hold it)."""
    alert = Alert(
        status="firing", labels={"alertname": "X", "v": "a\x00b"}, startsAt="2026-12-01T00:00:00Z", fingerprint="f1"
    )
    state = Run(
        RunInput(run_id=run_id("p", alert), playbook=_tiny(), alert=alert, mode=Mode.DRY_RUN), _never, Clock()
    ).state
    assert Scrubber().state(state).labels["v"] == "a\\u0000b"


def _tiny() -> Any:
    from service.playbooks.playbook import Playbook

    return Playbook.model_validate({"name": "p", "match": {"alertname": "X"}})


async def _never(step: StepBase, request: StepRequest) -> StepResult:
    raise AssertionError("no step runs here")
