"""The audit trail's commands: `migrate audit`, `audit export`, and the run reader `runs` and approvals use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO

from service.config import Settings
from service.runs.audit import AuditQuery
from service.stores.postgres import SCHEMA, PostgresAuditStore
from service.stores.setup import audit_store, ready_store
from service.temporal.client import TemporalRuns, connect
from service.temporal.run_records import AuditedRuns
from service.vocabulary.errors import ConfigError
from service.vocabulary.redact import redact


@asynccontextmanager
async def runs_reader(settings: Settings) -> AsyncIterator[TemporalRuns]:
    """Runs as the audit store has them when REMEDIATE_DATABASE_URL is set, else as Temporal still has them."""
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    store = await ready_store(settings)
    if store is None:
        yield TemporalRuns(client, settings.task_queue)
        return
    try:
        yield AuditedRuns(client, settings.task_queue, store)
    finally:
        await store.close()


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    """`remediate migrate audit`: create the audit tables in REMEDIATE_DATABASE_URL (or print their SQL)."""
    if args.print_sql:
        print(SCHEMA.strip())
        return 0
    store = audit_store(settings)
    if store is None:
        raise ConfigError("REMEDIATE_DATABASE_URL is not set: it names the audit store (postgresql://…)")
    try:
        if isinstance(store, PostgresAuditStore):
            await store.migrate()
    finally:
        await store.close()
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    print(f"audit store is ready at {redact(url)}: runs are recorded there as they go")
    return 0


async def export(args: argparse.Namespace, settings: Settings, since: datetime | None) -> int:
    """`remediate audit export`: every record since a time, oldest first, as JSON Lines."""
    store = await ready_store(settings)
    if store is None:
        raise ConfigError("REMEDIATE_DATABASE_URL is not set: it names the audit store to export from")
    out = _sink(args.output)
    count = 0
    try:
        async for event in store.events(AuditQuery(playbook=args.playbook, since=since)):
            out.write(event.model_dump_json() + "\n")
            count += 1
    finally:
        await store.close()
        if out is not sys.stdout:
            out.close()
    print(f"{count} record(s) exported", file=sys.stderr)
    return 0


def _sink(path: str | None) -> TextIO:
    return Path(path).open("w", encoding="utf-8") if path else sys.stdout  # closed by the caller
