"""Property checks at scale (not in CI): each property of the security suite for 10^5 generated examples.

    .venv/bin/python -m tests.bench.properties [--examples 100000]

Prints, per property, how many examples ran and how they were answered. Any violation raises at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from service.playbooks.sql_check import REFUSED_FUNCTIONS, check
from service.playbooks.systems.http import HttpConnection
from service.playbooks.templating import render
from service.targets.http import HttpAdapter, new_client
from service.vocabulary.errors import StepError, TemplateError
from tests.support.slack_signing import client, signed_headers
from tests.support.webhook_app import AUTH, BODIES, JSON, app

# Slack-shaped payloads, so the parser past the signature is exercised too, not only its first refusal.
PAYLOADS = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "user": st.fixed_dictionaries({"id": st.text(max_size=12)}) | JSON,
        "actions": st.lists(
            st.fixed_dictionaries(
                {
                    "action_id": st.sampled_from(["approve", "reject", "other"]),
                    "value": st.sampled_from(['{"run": "p/f/1", "gate": "act"}', "[]", '"x"', "{}"])
                    | st.text(max_size=20),
                    "action_ts": st.text(max_size=12),
                }
            )
            | JSON,
            max_size=3,
        )
        | JSON,
    }
).map(lambda p: urlencode({"payload": json.dumps(p)}).encode())


def run(name: str, examples: int, prop: Callable[[Counter[str]], Callable[..., None]]) -> None:
    counts: Counter[str] = Counter()
    test = settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))(
        prop(counts)
    )
    began = time.monotonic()
    test()
    total = counts.pop("examples")
    print(f"{name}: {total} examples in {time.monotonic() - began:.0f}s, {dict(counts)}", flush=True)


class Direct:
    """The app called in process through ASGI on one event loop: the same handlers, without a server per call."""

    def __init__(self, test_client: TestClient) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=test_client.app), base_url="http://t")

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> int:
        return self.loop.run_until_complete(self.http.post(path, content=content, headers=headers)).status_code


def webhook(counts: Counter[str]) -> Callable[..., None]:
    http = Direct(app())

    @given(BODIES)
    def prop(body: bytes) -> None:
        counts["examples"] += 1
        code = http.post("/alertmanager", content=body, headers=AUTH)
        assert code < 500
        counts[str(code)] += 1

    return prop


def slack(counts: Counter[str]) -> Callable[..., None]:
    http = Direct(client()[0])

    @given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode) | PAYLOADS)
    def prop(raw: bytes) -> None:
        counts["examples"] += 1
        code = http.post("/slack/interactions", content=raw, headers=signed_headers(raw))
        assert code < 500
        counts[str(code)] += 1

    return prop


def paths(counts: Counter[str]) -> Callable[..., None]:
    adapter = HttpAdapter({"api": HttpConnection(type="http", base_url="http://127.0.0.1:9/api/v2")})
    conn = adapter.connection("api")
    http = new_client(conn)

    @given(
        st.sampled_from(["/jobs/{{ v }}/cancel", "/jobs/{{ v }}{{ w }}/x", "/{{ v }}/{{ w }}", "/x{{ v }}"]),
        st.text(max_size=12),
        st.text(max_size=12),
    )
    def prop(template: str, v: str, w: str) -> None:
        counts["examples"] += 1
        try:
            url = adapter._url(conn, http, "DELETE", str(render(template, {"v": v, "w": w}, escape="url")))
        except (TemplateError, StepError):
            counts["refused"] += 1
            return
        assert url.host == "127.0.0.1" and url.port == 9 and url.path.startswith("/api/v2/")
        counts["under base_url"] += 1

    return prop


def sql(counts: Counter[str]) -> Callable[..., None]:
    spellings = ["{f}", "pg_catalog.{f}", '"{f}"', 'pg_catalog."{f}"', "{F}"]
    shapes = ["select {c}", "select ({c})::text", "select * from {c} as t", "select 1 where {c} is not null"]

    @given(
        st.sampled_from(sorted(REFUSED_FUNCTIONS)),
        st.sampled_from(spellings),
        st.sampled_from(shapes),
        st.text(max_size=30),
    )
    def prop(function: str, spelling: str, shape: str, tail: str) -> None:
        counts["examples"] += 1
        call = spelling.format(f=function, F=function.upper()) + "(1)"
        assert check(shape.format(c=call), "query")[1]
        counts["refused function"] += 1
        second = f"select 1; {tail}"
        if check(second, "query")[1]:
            counts["refused second statement"] += 1
        else:  # only when nothing after the semicolon is a statement
            assert not tail.strip(" ;\n\t\r\x0b\x0c") or check(tail, "query")[1] or tail.strip().startswith("--")
            counts["no second statement"] += 1

    return prop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--only", choices=["sql", "paths", "slack", "webhook"], action="append")
    args = parser.parse_args()
    chosen = {"sql": sql, "paths": paths, "slack": slack, "webhook": webhook}
    for name in args.only or list(chosen):
        run(name, args.examples, chosen[name])


if __name__ == "__main__":
    main()
