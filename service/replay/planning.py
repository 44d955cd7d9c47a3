"""What a replayed run would write: from the playbook's caps alone (`--reads skip`), or by the engine's own dry run
over recorded or live reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import JsonValue

from service.playbooks.step_base import parse_rendered
from service.playbooks.steps import StepBase, WriteStep, approval_of, approval_rule_of
from service.runs.engine import Run
from service.runs.state import Executor, RunInput, StepRequest, StepResult
from service.runs.step_runner import Stop
from service.vocabulary.errors import PermanentStepError
from service.vocabulary.modes import Mode


@dataclass(frozen=True)
class Plan:
    """A run's writes as replay counts them: how many, over how many targets, and why a person would be asked."""

    key: str  # the cooldown key, rendered as the run would render it
    writes: int = 0
    targets: int = 0  # the caps' bound (reads skipped) or the targets the dry run found
    approval: str = ""  # "", "mode", "step" (a write needs one), "conditional" (required_if, undecided)
    failed: str = ""  # the run could not plan (a template, a read): it would end failed, writing nothing


class Planner(Protocol):
    async def plan(self, start: RunInput) -> Plan: ...


class _Clock:
    """Reads in replay take no time on its clock: the governor sees each run ask when it starts."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        return None


async def _no_reads(step: StepBase, request: StepRequest) -> StepResult:
    raise PermanentStepError("replay with --reads skip runs no step")


def listed_targets(step: StepBase, rendered: dict[str, JsonValue]) -> list[str]:
    """A write's targets as its rendered parameters list them (pods, sessions, keys, jobs, workflows), one per
    item, as live would name them; none when only the system knows them (an UPDATE's rows)."""
    params = parse_rendered(step.params_model(), rendered)
    targets = getattr(params, "targets", None)
    if not callable(targets):
        return []
    return [json.dumps(ref.model_dump(mode="json"), sort_keys=True) for ref in targets()]


def reads_only(execute: Executor) -> Executor:
    """`--reads live`: read steps go to the system; a write is planned from its parameters and never sent, not even
    in its dry-run form."""

    async def run(step: StepBase, request: StepRequest) -> StepResult:
        if step.effect != "write":
            return await execute(step, request)
        return StepResult(
            targets=listed_targets(step, request.params), dry_run=True, summary="planned by replay; not sent"
        )

    return run


def bound(step: StepBase) -> int:
    """The most targets one write can touch, from its caps: max_targets (else one), times max_items per item."""
    per_call = step.params.most()
    each = step.each() if isinstance(step, WriteStep) else None
    return per_call * (each[1] if each else 1)


def _approval(start: RunInput, needs: list[str]) -> str:
    if start.mode == Mode.APPROVE:
        return "mode"
    return "step" if "step" in needs else "conditional" if "conditional" in needs else ""


class CapsPlanner:
    """`--reads skip`: every write of the playbook is planned, bounded by its caps; nothing is read."""

    async def plan(self, start: RunInput) -> Plan:
        run = Run(start, _no_reads, _Clock(datetime.now(UTC)))
        try:
            run.render_inputs()
            key = run.cooldown_key()
        except Stop as stop:
            return Plan(key="", failed=stop.reason)
        writes = [s for s in start.playbook.act if s.effect == "write"]
        needs = [
            "conditional" if approval_rule_of(s) is not None else "step" if approval_of(s) == "required" else ""
            for s in writes
        ]
        return Plan(
            key=key, writes=len(writes), targets=sum(bound(s) for s in writes), approval=_approval(start, needs)
        )


class EnginePlanner:
    """`--reads recorded` or `--reads live`: the engine's own dry run of the run, through the executor `reads` gives
    for it (None: this playbook has nothing to read with, so its caps bound it)."""

    def __init__(self, reads: Callable[[RunInput], Executor | None]) -> None:
        self.reads, self.caps = reads, CapsPlanner()

    async def plan(self, start: RunInput) -> Plan:
        execute = self.reads(start)
        if execute is None:
            return await self.caps.plan(start)
        run = Run(start.model_copy(update={"mode": Mode.DRY_RUN}), execute, _Clock(start.alert.startsAt))
        state = await run.execute_run()
        if state.status != "succeeded":
            return Plan(key="", failed=f"{state.status}: {state.reason}")
        try:
            key = run.cooldown_key()
        except Stop as stop:
            return Plan(key="", failed=stop.reason)
        planned = [r for r in state.steps if r.effect == "write" and r.status == "dry_run"]
        steps = {s.id: s for s in start.playbook.act}
        needs = ["step" if (r.approval_decided or r.approval or "").startswith("required") else "" for r in planned]
        return Plan(
            key=key,
            writes=len(planned),
            targets=sum(len(r.targets) or bound(steps[r.id]) for r in planned),  # none listed: the caps bound it
            approval=_approval(start, needs),
        )
