"""`remediate runs list` output: columns that stay aligned whatever the names' lengths."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import cast

import pytest

from service.cli.commands import _show_runs
from service.runs.listing import RunQuery, RunsPage, RunSummary
from service.temporal.client import TemporalRuns


class ListedRuns:
    """The one call `runs list` makes, answering fixed summaries."""

    def __init__(self, runs: list[RunSummary]) -> None:
        self.runs = runs

    async def list(self, query: RunQuery) -> RunsPage:
        return RunsPage(self.runs)


async def test_long_playbook_and_alert_names_keep_the_columns_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    """A 40-character playbook name widens its column instead of pushing the rest of its row out of line."""
    at = datetime(2026, 12, 5, tzinfo=UTC)
    runs = [
        RunSummary(f"{name}/abc/{i}", "succeeded", name, alert, "dry-run", at, at)
        for i, (name, alert) in enumerate(
            [("postgres-idle-in-transaction-terminator", "PostgresIdleInTransactionTooLong"), ("short", "A")]
        )
    ]
    args = argparse.Namespace(
        runs_command="list", stuck=False, limit=50, playbook=None, since=None, status=None, alert=None
    )
    assert await _show_runs(args, cast(TemporalRuns, ListedRuns(runs))) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert len({line.index("dry-run") for line in rows}) == 1
    assert header.index("MODE") == rows[0].index("dry-run")
