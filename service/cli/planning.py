"""`remediate plan`: a run in this process, always dry: real diagnosis, every write in its dry-run form."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from service.alerts.webhook import Alert, WebhookMessage, run_id
from service.app.compose import Adapters
from service.cli.report import format_state
from service.config_file import ConfigFile
from service.playbooks.playbook import Playbook, matching
from service.playbooks.steps import StepBase
from service.runs.engine import Run
from service.runs.registry import Registry
from service.runs.state import Executor, RunInput, RunState, StepRequest, StepResult
from service.vocabulary.errors import ConfigError, PermanentStepError
from service.vocabulary.modes import Mode


def read_alerts(path: Path) -> list[Alert]:
    data = path.read_text(encoding="utf-8")
    try:
        return WebhookMessage.model_validate_json(data).alerts
    except ValidationError:
        try:
            return [Alert.model_validate_json(data)]
        except ValidationError as exc:
            raise ConfigError(f"{path}: neither a webhook message nor an alert: {exc.errors()[0]['msg']}") from exc


class _LocalClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def local_executor(registry: Registry) -> Executor:
    async def execute(step: StepBase, request: StepRequest) -> StepResult:
        try:
            return await registry.dispatch(request)
        except ConfigError as exc:
            raise PermanentStepError(f"configuration: {exc}") from exc

    return execute


def _hints(state: RunState, connections: ConfigFile) -> list[str]:
    """For each connection a step could not use for want of configuration: exactly what to set."""
    hints: list[str] = []
    for record in state.steps:
        error = record.error or ""
        # A secret that is not set, or one of the dev connections' placeholder hosts (*.invalid never resolves).
        if record.status != "failed" or not (error.startswith("configuration:") or ".invalid" in error):
            continue
        conn = connections.connections.get(record.connection)
        kind = conn.type if conn else "unknown"
        secrets = sorted(set(re.findall(r"env:([A-Za-z_][A-Za-z0-9_]*)", record.error or "")))
        how = f"set {', '.join(secrets)}, or " if secrets else ""
        hint = (
            f"connection {record.connection!r} ({kind}): {how}define it in the file REMEDIATE_CONFIG names "
            f"(docs/configuration.md#{kind})"
        )
        if hint not in hints:
            hints.append(hint)
    return hints


async def plan(alert_file: Path, playbooks: list[Playbook], adapters: Adapters, connections: ConfigFile) -> int:
    """Every playbook the alerts match, run as a dry run here: real reads, writes only in dry-run form."""
    worst, execute = 0, local_executor(adapters.registry())
    try:
        for alert in read_alerts(alert_file):
            found = matching(playbooks, alert)
            print(
                f"alert {alert.alertname} ({alert.status}, fingerprint {alert.fingerprint}): "
                f"{len(found)} matching playbook(s): {', '.join(p.name for p in found) or 'none'}"
            )
            for playbook in found:
                # Plan is always a dry run: reads are real, writes run only in their dry-run form.
                run = Run(
                    RunInput(
                        run_id=run_id(playbook.name, alert),
                        playbook=playbook,
                        alert=alert,
                        mode=Mode.DRY_RUN if playbook.mode != Mode.OFF else Mode.OFF,
                    ),
                    execute,
                    _LocalClock(),
                )
                state = await run.execute_run()
                print(format_state(state))
                for hint in _hints(state, connections):
                    print(f"  to plan this for real: {hint}")
                worst = max(worst, 0 if state.status == "succeeded" else 1)
    finally:
        await adapters.close()
    return worst
