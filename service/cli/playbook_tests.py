"""`remediate test`: a playbook run offline against recorded read results, its plan checked like a rule test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.alerts.webhook import Alert
from service.cli.test_files import tests_in
from service.playbooks.playbook import Playbook
from service.playbooks.step_base import approval_rule_of, parse_rendered
from service.playbooks.steps import StepBase
from service.replay.planning import listed_targets
from service.runs.engine import Run
from service.runs.state import Executor, RunInput, RunState, StepRequest, StepResult
from service.vocabulary.approvals import Decision, Gate
from service.vocabulary.errors import PermanentStepError
from service.vocabulary.modes import Mode, effective_mode

TESTER = "remediate-test"


class Recorded(BaseModel):
    """What one step returns in the test: its data (rows, json, samples, …) and, for a write, its targets."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, JsonValue] = Field(default_factory=dict)
    targets: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="The step fails with this message instead.")


class Expect(BaseModel):
    """What the run must come to; every field left out is not checked."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    writes: list[str] | None = Field(default=None, description="Ids of the writes made, in order (for_each once).")
    approval: list[str] | None = Field(default=None, description="Writes that waited for a human at the gate.")
    params: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict, description="Per write: rendered parameters it must include (first call)."
    )
    targets: dict[str, list[str]] = Field(default_factory=dict, description="Per write: its targets, exactly.")
    reason_contains: str | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(description="The alert's labels (alertname included).")
    annotations: dict[str, str] = Field(default_factory=dict)
    mode: Mode = Mode.AUTO
    approve: bool = Field(default=True, description="Whether the tester approves at the gate (else rejects).")
    results: dict[str, Recorded | list[Recorded]] = Field(
        default_factory=dict, description="Per step id: what it returns; a list answers successive calls in turn."
    )
    expect: Expect


class TestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: str
    cases: list[Case] = Field(min_length=1)


@dataclass
class Outcome:
    file: Path
    playbook: str
    case: str
    failures: list[str]


class _Recorded:
    """The executor: answers each step from the case's recordings and remembers every call."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.calls: list[StepRequest] = []
        self.seen: dict[str, int] = {}

    async def __call__(self, step: StepBase, request: StepRequest) -> StepResult:
        self.calls.append(request)
        parse_rendered(step.params_model(), request.params)  # what the real action would refuse
        answers = self.case.results.get(step.id)
        if answers is None:
            if step.effect == "write":
                return StepResult(targets=_targets_of(step, request), dry_run=request.dry_run)
            raise _Missing(f"no recorded result for read step {step.id!r}")
        if isinstance(answers, list):
            index = self.seen.get(step.id, 0)
            self.seen[step.id] = index + 1
            answer = answers[min(index, len(answers) - 1)]
        else:
            answer = answers
        if answer.error is not None:
            raise PermanentStepError(answer.error)
        return StepResult(data=answer.data, targets=answer.targets, dry_run=request.dry_run)


class _Missing(Exception):
    """A read step the case recorded nothing for."""


def _targets_of(step: StepBase, request: StepRequest) -> list[str]:
    """An unrecorded write's targets as live would list them: one per item of its target list (`backends`, `pods`,
    …, capped and never empty, as live); a write whose targets only the system knows must have them recorded when
    its approval counts them, or its gate would be decided differently offline."""
    if listed := listed_targets(step, request.params):
        return listed
    rule = approval_rule_of(step)
    if rule is not None and "targets" in rule:
        raise _Missing(f"no recorded result for write {step.id!r}, whose approval.required_if counts its targets")
    return []


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        return None  # retries and back-offs are instant offline


async def run_case(playbook: Playbook, case: Case) -> tuple[RunState, _Recorded, list[str]]:
    alert = Alert.model_validate(
        {
            "status": "firing",
            "labels": case.labels,
            "annotations": case.annotations,
            "startsAt": datetime.now(UTC).isoformat(),
            "fingerprint": "0000000000000000",
        }
    )
    gated: list[str] = []

    async def gatekeeper(gate: Gate) -> None:
        gated.extend(w.step for w in gate.request.writes if w.gated)
        verdict = "approve" if case.approve else "reject"
        for n in range(gate.request.min_approvals):
            gate.apply(Decision(verdict=verdict, user=f"{TESTER}-{n}", decision_id=f"test-{n}"))

    approvers = [f"{TESTER}-{n}" for n in range(5)]
    executor = _Recorded(case)
    run = Run(
        RunInput(
            run_id=f"{playbook.name}/test",
            playbook=playbook,
            alert=alert,
            mode=effective_mode(case.mode, playbook.mode),  # as intake does: a playbook only lowers the mode
            approvers=approvers,
        ),
        executor,
        _Clock(),
        gatekeeper=gatekeeper,
    )
    state = await run.execute_run()
    return state, executor, gated


def _subset(want: Mapping[str, JsonValue], got: Mapping[str, JsonValue]) -> bool:
    """Every key of `want` is in `got` with that value (dicts compared the same way, deeper)."""
    for key, value in want.items():
        found = got.get(key)
        if isinstance(value, dict) and isinstance(found, dict):
            if not _subset(value, found):
                return False
        elif key not in got or found != value:
            return False
    return True


def check(state: RunState, executor: _Recorded, gated: list[str], expect: Expect) -> list[str]:
    failures = []
    if expect.status is not None and state.status != expect.status:
        failures.append(f"status: expected {expect.status}, got {state.status} ({state.reason})")
    if expect.reason_contains is not None and expect.reason_contains not in state.reason:
        failures.append(f"reason: expected it to contain {expect.reason_contains!r}, got {state.reason!r}")
    made = [r.step_id.partition("[")[0] for r in executor.calls if not r.dry_run and _is_write(state, r.step_id)]
    made = [s for i, s in enumerate(made) if i == 0 or made[i - 1] != s]
    if expect.writes is not None and made != expect.writes:
        failures.append(f"writes: expected {expect.writes}, made {made}")
    if expect.approval is not None and sorted(set(gated)) != sorted(expect.approval):
        failures.append(f"approval: expected {sorted(expect.approval)} to wait at the gate, got {sorted(set(gated))}")
    for step, params in expect.params.items():
        call = next((r for r in executor.calls if r.step_id.partition("[")[0] == step and not r.dry_run), None)
        call = call or next((r for r in executor.calls if r.step_id.partition("[")[0] == step), None)
        if call is None:
            failures.append(f"params of {step}: it was never called")
        elif not _subset(params, call.params):
            failures.append(f"params of {step}: expected to include {params}, got {call.params}")
    for step, targets in expect.targets.items():
        record = next((r for r in state.steps if r.id == step), None)
        if record is None or record.targets != targets:
            failures.append(f"targets of {step}: expected {targets}, got {record.targets if record else 'no step'}")
    return failures


def _is_write(state: RunState, step_id: str) -> bool:
    record = next((r for r in state.steps if r.id == step_id.partition("[")[0]), None)
    return record is not None and record.effect == "write"


def load_test_file(path: Path) -> TestFile:
    try:
        data: Any = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        return TestFile.model_validate(data)
    except (OSError, YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from exc


async def run_file(path: Path, playbooks: Sequence[Playbook]) -> list[Outcome]:
    test = load_test_file(path)
    playbook = next((p for p in playbooks if p.name == test.playbook), None)
    if playbook is None:
        return [Outcome(path, test.playbook, "-", [f"no playbook named {test.playbook!r} is loaded"])]
    outcomes = []
    for case in test.cases:
        try:
            state, executor, gated = await run_case(playbook, case)
            failures = check(state, executor, gated, case.expect)
        except _Missing as exc:
            failures = [str(exc)]
        outcomes.append(Outcome(path, playbook.name, case.name, failures))
    return outcomes


def recorded_cases(dirs: Sequence[Path]) -> dict[str, Case]:
    """Each playbook's reads as its tests recorded them, for `remediate replay --reads recorded`: its first case that
    expects a write (else its first case)."""
    found: dict[str, Case] = {}
    for path in (f for d in dirs for f in tests_in(d)):
        test = load_test_file(path)
        if test.playbook not in found:
            found[test.playbook] = next((c for c in test.cases if c.expect.writes), test.cases[0])
    return found


def recording(case: Case) -> Executor:
    """An executor that answers from one case's recordings (a fresh one per run: it counts calls)."""
    return _Recorded(case)
