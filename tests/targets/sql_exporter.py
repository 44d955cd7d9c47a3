"""A tiny postgres_exporter stand-in: one gauge per row of a query, computed from the real database at scrape time."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class SqlExporter:
    """`query` returns label columns then a final `value` column."""

    dsn: str
    metric: str
    query: str

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            lines = [f"# TYPE {self.metric} gauge"]
            try:
                with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
                    cur.execute(sql.SQL(self.query))  # a fixed test query, not user input
                    names = [d.name for d in cur.description or []]
                    for row in cur.fetchall():
                        labels = ",".join(f'{n}="{v}"' for n, v in zip(names[:-1], row[:-1], strict=True))
                        lines.append(f"{self.metric}{{{labels}}} {float(row[-1])}")
            except psycopg.errors.UndefinedTable:
                pass  # the test has not built its tables yet
            return PlainTextResponse("\n".join(lines) + "\n")

        return Starlette(routes=[Route("/metrics", metrics)])
