"""`remediate plan`: a run in this process, always dry: real diagnosis, every write in its dry-run form."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from service.alerts import Alert, WebhookMessage, run_id
from service.compose import Adapters
from service.engine import Run
from service.errors import ConfigError, PermanentStepError
from service.modes import Mode
from service.playbook import Playbook, matching
from service.registry import Registry
from service.report import format_state
from service.runs import Executor, RunInput, StepRequest, StepResult
from service.steps import StepBase


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


def _local_executor(registry: Registry) -> Executor:
    async def execute(step: StepBase, request: StepRequest) -> StepResult:
        try:
            return await registry.dispatch(request)
        except ConfigError as exc:
            raise PermanentStepError(f"configuration: {exc}") from exc

    return execute


async def plan(alert_file: Path, playbooks: list[Playbook], adapters: Adapters) -> int:
    """Every playbook the alerts match, run as a dry run here: real reads, writes only in dry-run form."""
    worst, execute = 0, _local_executor(adapters.registry())
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
                worst = max(worst, 0 if state.status == "succeeded" else 1)
    finally:
        await adapters.close()
    return worst
