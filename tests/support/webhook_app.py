"""The webhook app alone, and hostile bodies to throw at it."""

from __future__ import annotations

import json

from hypothesis import strategies as st
from starlette.testclient import TestClient

from service.playbooks.loader import load_playbooks
from service.runs.delivery import Delivery
from service.runs.policy import Mode
from service.temporal.client import TemporalRuns
from service.web.app import Receiver, SeenRuns, create_app
from service.web.credentials import WebAuth
from tests.support.paths import DATA
from tests.support.stack import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


PLAYBOOKS = load_playbooks([DATA / "playbooks"])


class Started(TemporalRuns):
    """Stands in for Temporal: every delivery is accepted at once."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def deliver(self, delivery: Delivery) -> bool:
        self.started.extend(run.run_id for run in delivery.runs())
        return True


def app() -> TestClient:
    runs = Started()
    receiver = Receiver(PLAYBOOKS, runs, Mode.DRY_RUN, SeenRuns(100))
    return TestClient(create_app(receiver, WebAuth(token=TOKEN), runs), raise_server_exceptions=False)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


ALERTISH = st.fixed_dictionaries(
    {"version": st.sampled_from(["4", "3", 4]), "status": st.sampled_from(["firing", "resolved", "x"])},
    optional={
        "alerts": st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.sampled_from(["firing", "resolved", 1]),
                    "labels": st.fixed_dictionaries(
                        {"alertname": st.sampled_from(["JobsStuck", "Other"]), "severity": st.just("critical")}
                    )
                    | st.dictionaries(st.text(max_size=10), st.text(max_size=30) | JSON, max_size=4),
                    "startsAt": st.sampled_from(["2026-11-23T10:00:00Z", "yesterday", 5]),
                    "fingerprint": st.from_regex(r"[0-9a-f]{1,16}", fullmatch=True) | st.text(max_size=70),
                },
                optional={"annotations": JSON, "endsAt": JSON},
            ),
            max_size=3,
        )
    },
)


BODIES = st.one_of(
    st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()), ALERTISH.map(lambda v: json.dumps(v).encode())
)
