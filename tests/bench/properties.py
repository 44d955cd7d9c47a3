"""Property checks at scale (not in CI): each property of the security suite for 10^5 generated examples.

    .venv/bin/python -m tests.bench.properties [--examples 100000]

Prints, per property, how many examples ran and how they were answered. Any violation raises at once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.adapters.http import HttpAdapter
from service.config import HttpConnection
from service.errors import StepError, TemplateError
from service.sql_check import REFUSED_FUNCTIONS, check
from service.templating import render
from tests.security.test_slack_input import _signed
from tests.security.test_webhook_input import ALERTISH, AUTH, JSON, app
from tests.unit.test_slack import client


def run(name: str, examples: int, prop: Callable[[Counter[str]], Callable[..., None]]) -> None:
    counts: Counter[str] = Counter()
    test = settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))(
        prop(counts)
    )
    began = time.monotonic()
    test()
    total = sum(counts.values())
    print(f"{name}: {total} examples in {time.monotonic() - began:.0f}s, {dict(counts)}", flush=True)


def webhook(counts: Counter[str]) -> Callable[..., None]:
    http = app()

    @given(
        st.one_of(
            st.binary(max_size=300),
            JSON.map(lambda v: json.dumps(v).encode()),
            ALERTISH.map(lambda v: json.dumps(v).encode()),
        )
    )
    def prop(body: bytes) -> None:
        code = http.post("/alertmanager", content=body, headers=AUTH).status_code
        assert code < 500
        counts[str(code)] += 1

    return prop


def slack(counts: Counter[str]) -> Callable[..., None]:
    http, _ = client()

    @given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
    def prop(raw: bytes) -> None:
        code = http.post("/slack/interactions", content=raw, headers=_signed(raw)).status_code
        assert code < 500
        counts[str(code)] += 1

    return prop


def paths(counts: Counter[str]) -> Callable[..., None]:
    adapter = HttpAdapter({"api": HttpConnection(type="http", base_url="http://127.0.0.1:9/api/v2")})
    conn, http = adapter._client("api")

    @given(
        st.sampled_from(["/jobs/{{ v }}/cancel", "/jobs/{{ v }}{{ w }}/x", "/{{ v }}/{{ w }}", "/x{{ v }}"]),
        st.text(max_size=12),
        st.text(max_size=12),
    )
    def prop(template: str, v: str, w: str) -> None:
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
