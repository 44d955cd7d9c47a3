"""Histories recorded by earlier versions of the code replay on this one: no run in flight breaks on an upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from service.app.worker import RUN_WORKFLOWS, workflow_runner
from tests.support.paths import DATA

HISTORIES = sorted((DATA / "histories").glob("*/*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_histories_are_recorded() -> None:
    """The replay test has histories of every scenario to replay (python -m tests.support.histories records them)."""
    names = {path.stem for path in HISTORIES}
    assert {"dry-run-run", "wrote-run", "approved-run", "bad-render-run", "dry-run-delivery"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recorded_history_replays(path: Path) -> None:
    """A run or delivery recorded before a change replays on the current workflow code without a nondeterminism."""
    history = _history(path)
    replayer = Replayer(
        workflows=list(RUN_WORKFLOWS), workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"
