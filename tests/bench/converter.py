"""Converter bench (issue 23): what one run costs in playbook bytes through Temporal and in SQL parses.

Run: .venv/bin/python -m tests.bench.converter [--runs 5]

Starts a Postgres and the Temporal dev server, then the composed service (web + worker, in this process, as
`remediate serve` runs it) with the shipped `stuck-jobs` playbook in dry-run, and sends one alert per run. For each
finished run it reads the histories of the run and of its delivery and prints:

  payload bytes   every payload of both histories (inputs, results, markers, signals), per run
  playbook bytes  the part of those payloads that is a playbook (each copy counted), per run, in copies
                  carried as objects (the converter decodes them into a Playbook, validators and all) or as
                  documents (JSON text the converter leaves alone; the process's shelf decodes one once)
  SQL parses      calls to pglast's parser in this process while the runs went (after loading), per run

These are the figures issue 23's item 3 (the playbook by reference, parameters typed once) must bring down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx2
import psycopg
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from service.cli.devserver import start_dev_server
from service.playbooks import sql_check
from service.runs.policy import Mode
from tests.support.jobs import JOBS_SCHEMA, new_database, seed_jobs
from tests.support.messages import message
from tests.support.paths import DATA
from tests.support.servers import scratch, start_postgres
from tests.support.stack import TOKEN, run_handle, running_stack


def payloads(value: Any) -> Iterator[Payload]:
    """Every Payload inside a history event (a protobuf message), however deeply it sits."""
    if isinstance(value, Payload):
        yield value
        return
    for _, field in value.ListFields() if hasattr(value, "ListFields") else ():
        if hasattr(field, "keys"):  # a map of payloads (memo, headers)
            children = list(field.values())
        elif hasattr(field, "__len__") and not isinstance(field, str | bytes):  # a repeated field
            children = list(field)
        else:
            children = [field]
        for child in children:
            yield from payloads(child)


def _is_playbook(data: Any) -> bool:
    return isinstance(data, dict) and "match" in data and "act" in data and "name" in data


def playbook_bytes(data: Any) -> tuple[int, int, int]:
    """(bytes, copies as objects, copies as text) of the playbook documents inside a decoded payload: any object
    with `name`, `match` and `act`, or a string holding one as JSON (a document, which the converter leaves as text).
    An object is what the data converter decodes into a Playbook model, validators and all; text it does not."""
    if _is_playbook(data):
        return len(json.dumps(data, separators=(",", ":"))), 1, 0
    if isinstance(data, str) and data.startswith("{") and '"match"' in data:
        try:
            inner = json.loads(data)
        except ValueError:
            return 0, 0, 0
        return (len(data), 0, 1) if _is_playbook(inner) else (0, 0, 0)
    if isinstance(data, dict):
        found = [playbook_bytes(v) for v in data.values()]
    elif isinstance(data, list):
        found = [playbook_bytes(v) for v in data]
    else:
        return 0, 0, 0
    return sum(f[0] for f in found), sum(f[1] for f in found), sum(f[2] for f in found)


async def history_figures(client: Client, workflow_id: str) -> tuple[int, int, int, int]:
    """(payload bytes, playbook bytes, playbook copies as objects, as text) of one workflow's history."""
    total = document = objects = texts = 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        for payload in payloads(event):
            total += len(payload.data)
            try:
                decoded = json.loads(payload.data)
            except ValueError:
                continue
            b, o, t = playbook_bytes(decoded)
            document, objects, texts = document + b, objects + o, texts + t
    return total, document, objects, texts


def _decodes() -> int:
    """Playbook documents this process's shelf has decoded (none before the shelf existed: the bench runs on both)."""
    try:
        from service.playbooks.shelf import SHELF  # absent in the code before item 3
    except ImportError:
        return 0
    return SHELF.decoded


async def main(runs: int) -> None:
    pg = start_postgres(scratch("converter-pg"))
    env = await start_dev_server()
    parses, decoded = [0], [0]
    real = vars(sql_check)["parse_sql"]

    def counted(text: str) -> Any:
        parses[0] += 1
        return real(text)

    try:
        dsn = new_database(pg)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(JOBS_SCHEMA)
        seed_jobs(dsn, stuck=[1, 2])
        os.environ["JOBS_DB_DSN"] = dsn
        queue = f"conv-{uuid.uuid4().hex[:6]}"
        config, books = DATA / "jobs-config.yaml", DATA / "playbooks"
        run_ids = []
        async with (
            running_stack(env.client, config, books, Mode.DRY_RUN, task_queue=queue) as stack,
            httpx2.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        ):
            vars(sql_check)["parse_sql"] = counted  # loading is done: count what runs cost
            shelved, cpu = _decodes(), time.process_time()
            try:
                for _ in range(runs):
                    body = message()
                    assert (await http.post("/alertmanager", json=body)).status_code == 200
                    alert = body["alerts"][0]  # type: ignore[index]
                    starts = int(datetime.fromisoformat(alert["startsAt"]).timestamp())
                    run_id = f"stuck-jobs/{alert['fingerprint']}/{starts}"
                    await (await run_handle(env.client, run_id)).result()
                    run_ids.append(run_id)
            finally:
                vars(sql_check)["parse_sql"] = real
                decoded[0], cpu = _decodes() - shelved, time.process_time() - cpu
            deliveries = [
                e.id
                async for e in env.client.list_workflows(f"TaskQueue = '{queue}' AND WorkflowType = 'DeliveryWorkflow'")
            ]
        total = document = objects = texts = 0
        for workflow_id in [*run_ids, *deliveries]:
            t, d, o, x = await history_figures(env.client, workflow_id)
            total, document, objects, texts = total + t, document + d, objects + o, texts + x
        print(f"{runs} runs of stuck-jobs (dry-run), {len(deliveries)} deliveries; per run:")
        print(f"  payload bytes     {total / runs:,.0f}")
        print(f"  playbook bytes    {document / runs:,.0f} in {(objects + texts) / runs:.1f} copies")
        print(f"    as objects      {objects / runs:.1f} (decoded into a Playbook model, validators and all)")
        print(f"    as documents    {texts / runs:.1f} (text, decoded once per process: {decoded[0]} decode(s) here)")
        print(f"  SQL parses        {parses[0] / runs:.1f} (pglast, in this process, after loading)")
        print(f"  CPU               {cpu / runs * 1000:.0f} ms (this process: web, worker and client)")
    finally:
        await env.shutdown()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
