"""Log lines for people (text) or machines (REMEDIATE_LOG_FORMAT=json), each carrying the run it concerns."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from temporalio import activity
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from service.vocabulary.redact import install

LogFormat = Literal["text", "json"]
RUN_WORKFLOW = "RemediationWorkflow"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class StepContext:
    step: str
    action: str


_STEP: ContextVar[StepContext | None] = ContextVar("remediate_step", default=None)


@contextmanager
def in_step(step: str, action: str) -> Iterator[None]:
    """Every line logged while a step runs (ours or a library's, in this task) names the step and its action."""
    token = _STEP.set(StepContext(step, action))
    try:
        yield
    finally:
        _STEP.reset(token)


class RunFields(logging.Filter):
    """Adds run_id, playbook, step and action to a record, from wherever they are known: the step being run, the
    activity's workflow (activities of a run), or the workflow logger's own context (workflow code)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = ""
        workflow = getattr(record, "temporal_workflow", None)
        if isinstance(workflow, dict) and workflow.get("workflow_type") == RUN_WORKFLOW:
            run_id = str(workflow.get("workflow_id", ""))
        elif activity.in_activity():
            info = activity.info()
            if info.workflow_type == RUN_WORKFLOW:
                run_id = info.workflow_id or ""
        step = _STEP.get()
        record.run_id = run_id
        record.playbook = run_id.split("/", 1)[0] if run_id else ""
        record.step = step.step if step and run_id else ""
        record.action = step.action if step and run_id else ""
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run's fields when it concerns a run."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("run_id", "playbook", "step", "action"):
            value = getattr(record, field, "")
            if value:
                line[field] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def forward_core_logs() -> None:
    """Temporal's core (Rust) logs through Python logging too, so they get the same format and redaction; before
    any client exists (a process's runtime is chosen when its first client connects)."""
    core = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core)), error_if_already_set=False)


def configure(fmt: LogFormat = "text") -> None:
    """The root handler's format and filters: run fields, then redaction (so no secret reaches either format)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=TEXT)
    root.setLevel(logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, RunFields) for f in handler.filters):
            handler.addFilter(RunFields())
        handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT))
    install(root)
