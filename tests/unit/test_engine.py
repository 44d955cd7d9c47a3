"""The run engine (pure core): phases, modes, conditions, resolution and verify polling."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import JsonValue

from service.alerts.webhook import Alert
from service.cli.report import format_state
from service.playbooks.loader import load_playbooks
from service.playbooks.playbook import Playbook
from service.playbooks.step_base import ApprovalRule
from service.playbooks.steps import StepBase
from service.runs.engine import Run, item_key
from service.runs.policy import Answer, Mode, ModeLadder, effective_mode
from service.runs.state import RunInput, StepRequest, StepResult
from service.targets.postgres.ledger import row_targets
from service.vocabulary.approvals import Decision, Gate
from service.vocabulary.errors import PermanentStepError
from service.vocabulary.targets import name_of

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = load_playbooks([ROOT / "playbooks" / "stuck-jobs.yaml"], {"jobs-db": "postgres"})[0]
ALERT = Alert.model_validate(
    {
        "status": "firing",
        "labels": {"alertname": "JobsStuck", "queue": "q1", "severity": "warning"},
        "startsAt": "2026-11-23T04:00:00Z",
        "fingerprint": "f1",
    }
)


class Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> datetime:
        return datetime(2026, 11, 23, tzinfo=UTC)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class Script:
    """Answers steps from a script and records every request (a stand-in for the activity, not for Postgres)."""

    def __init__(self, stuck: list[int], left_after: list[int] | None = None) -> None:
        self.stuck, self.left = stuck, list(left_after or [0])
        self.requests: list[StepRequest] = []

    async def __call__(self, step: StepBase, request: StepRequest) -> StepResult:
        self.requests.append(request)
        if request.step_id == "stuck":
            return StepResult(data={"rows": [{"id": i} for i in self.stuck]})
        if request.step_id == "requeue":
            return StepResult(data={"rowcount": len(self.stuck)}, dry_run=request.dry_run)
        return StepResult(data={"rows": [{"n": self.left.pop(0) if len(self.left) > 1 else self.left[0]}]})


async def _run(mode: Mode, script: Script, resolved: bool = False) -> tuple[Run, Clock]:
    clock = Clock()
    run = Run(RunInput(run_id="r", playbook=PLAYBOOK, alert=ALERT, mode=mode), script, clock, resolved=lambda: resolved)
    await run.execute_run()
    return run, clock


async def test_dry_run_diagnoses_and_sends_writes_only_in_dry_run_form() -> None:
    """In dry-run, reads are real, the write goes out flagged dry_run, and verify does not run."""
    script = Script([1, 2])
    run, _ = await _run(Mode.DRY_RUN, script)
    assert run.state.status == "succeeded" and "dry-run" in run.state.reason
    write = next(r for r in script.requests if r.step_id == "requeue")
    assert write.dry_run and write.params["params"] == {"ids": [1, 2]}
    assert [r.step_id for r in script.requests] == ["stuck", "requeue"]


async def test_auto_acts_then_verifies() -> None:
    """In auto, the write runs for real once and verify passes."""
    script = Script([1, 2])
    run, _ = await _run(Mode.AUTO, script)
    assert run.state.status == "succeeded"
    assert [(r.step_id, r.dry_run) for r in script.requests] == [
        ("stuck", False),
        ("requeue", False),
        ("none-left", False),
    ]


async def test_nothing_stuck_means_no_write() -> None:
    """A false `when` skips the write; the run records why."""
    script = Script([])
    run, _ = await _run(Mode.AUTO, script)
    record = next(r for r in run.state.steps if r.id == "requeue")
    assert record.status == "skipped" and "when is false" in record.summary
    assert "requeue" not in [r.step_id for r in script.requests]


async def test_verify_polls_until_its_expectation_holds() -> None:
    """verify retries with its interval until `expect` is true."""
    script = Script([1], left_after=[1, 1, 0])
    run, clock = await _run(Mode.AUTO, script)
    assert run.state.status == "succeeded"
    assert clock.slept == [2.0, 2.0]


async def test_verify_that_never_holds_fails_the_run() -> None:
    """After its attempts, an unmet expectation fails the run with the reason."""
    run, clock = await _run(Mode.AUTO, Script([1], left_after=[1]))
    assert run.state.status == "failed" and "expect not met after 5" in run.state.reason
    assert len(clock.slept) == 4


async def test_resolved_before_action_skips_writes() -> None:
    """A resolved alert stops the run before any write."""
    script = Script([1])
    run, _ = await _run(Mode.AUTO, script, resolved=True)
    assert run.state.status == "resolved_before_action"
    assert [r.step_id for r in script.requests] == ["stuck"]


async def test_a_playbook_whose_fix_resolves_its_alert_goes_on_after_resolved() -> None:
    """With `stop_when_resolved: false`, a resolved alert is recorded and the writes still run."""
    script, clock = Script([1]), Clock()
    playbook = PLAYBOOK.model_copy(update={"stop_when_resolved": False})
    run = Run(
        RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.AUTO), script, clock, resolved=lambda: True
    )
    await run.execute_run()
    assert run.state.status == "succeeded" and run.state.resolved
    assert [r.step_id for r in script.requests] == ["stuck", "requeue", "none-left"]


async def test_mode_off_is_recorded_not_dropped() -> None:
    """Mode off ends the run as blocked_by_policy without touching anything."""
    script = Script([1])
    run, _ = await _run(Mode.OFF, script)
    assert run.state.status == "blocked_by_policy" and script.requests == []


async def test_required_approval_without_approvers_blocks_every_write() -> None:
    """A write that needs approval, in a run with no approvers, blocks the act phase entirely."""
    playbook = PLAYBOOK.model_copy(update={"act": [PLAYBOOK.act[0].model_copy(update={"approval": "required"})]})
    script = Script([1])
    run = Run(RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.AUTO), script, Clock())
    await run.execute_run()
    assert run.state.status == "blocked_by_policy"
    assert [r.step_id for r in script.requests] == ["stuck"]


async def test_a_failing_step_fails_the_run_with_its_error() -> None:
    """A step error ends the run as failed and names the step."""

    async def broken(step: StepBase, request: StepRequest) -> StepResult:
        raise PermanentStepError("connection refused")

    run = Run(RunInput(run_id="r", playbook=PLAYBOOK, alert=ALERT, mode=Mode.AUTO), broken, Clock())
    await run.execute_run()
    assert run.state.status == "failed" and "stuck" in run.state.reason


@pytest.mark.parametrize(
    ("ceiling", "own", "expected"),
    [
        (Mode.DRY_RUN, Mode.AUTO, Mode.DRY_RUN),
        (Mode.AUTO, Mode.DRY_RUN, Mode.DRY_RUN),
        (Mode.AUTO, None, Mode.AUTO),
        (Mode.OFF, Mode.AUTO, Mode.OFF),
        (Mode.AUTO, Mode.OFF, Mode.OFF),
    ],
)
def test_service_mode_is_a_ceiling(ceiling: Mode, own: Mode | None, expected: Mode) -> None:
    """A playbook's mode can only lower the service mode."""
    assert effective_mode(ceiling, own) == expected


class Growing(Script):
    """Diagnosis finds more stuck rows the second time (after approval) than the approver saw."""

    def __init__(self, first: list[int], second: list[int]) -> None:
        super().__init__(first)
        self.rounds = [first, second]

    async def __call__(self, step: StepBase, request: StepRequest) -> StepResult:
        if request.step_id == "stuck":
            self.stuck = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        if request.step_id == "requeue":
            self.requests.append(request)
            return StepResult(
                data={"rowcount": len(self.stuck)}, targets=[f"row {i}" for i in self.stuck], dry_run=request.dry_run
            )
        return await super().__call__(step, request)


async def _approved_run(script: Script) -> Run:
    async def approve_at_once(gate: Gate) -> None:
        gate.apply(Decision(verdict="approve", user="U_ALICE", decision_id="d"))

    playbook = PLAYBOOK.model_copy(update={"act": [PLAYBOOK.act[0].model_copy(update={"approval": "required"})]})
    run = Run(
        RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.AUTO, approvers=["U_ALICE"]),
        script,
        Clock(),
        gatekeeper=approve_at_once,
    )
    await run.execute_run()
    return run


async def test_after_approval_a_grown_plan_is_not_acted_on() -> None:
    """If re-diagnosis finds targets nobody approved, the run writes nothing and says which."""
    script = Growing([1, 2], [1, 2, 3])
    run = await _approved_run(script)
    assert run.state.status == "blocked_by_policy" and "row 3" in run.state.reason
    assert all(r.dry_run for r in script.requests if r.step_id == "requeue")


async def test_after_approval_the_write_runs_once_on_what_is_still_broken() -> None:
    """Approved targets that are still broken get one real write; the gate records the approval."""
    script = Growing([1, 2], [2])
    run = await _approved_run(script)
    real = [r for r in script.requests if r.step_id == "requeue" and not r.dry_run]
    assert run.state.status == "succeeded" and len(real) == 1
    assert real[0].params["params"] == {"ids": [2]}
    assert run.state.gate is not None and run.state.gate.status == "approved"


async def test_for_each_runs_once_per_item_with_its_own_key() -> None:
    """A for_each write calls once per diagnosed row, with `item` in templates and keys `<step>[<item digest>]`."""
    step = PLAYBOOK.act[0].model_copy(
        update={
            "for_each": "steps.stuck.rows",
            "max_items": 5,
            "with_": PLAYBOOK.act[0].params.model_copy(update={"params": {"ids": "{{ [item.id] }}"}}),
        }
    )
    playbook = PLAYBOOK.model_copy(update={"act": [step]})
    script = Script([4, 5])
    run = Run(RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.AUTO), script, Clock())
    await run.execute_run()
    calls = [(r.step_id, r.params["params"]) for r in script.requests if r.step_id.startswith("requeue")]
    rows: list[JsonValue] = [{"id": 4}, {"id": 5}]
    assert calls == [(f"requeue[{item_key(rows[0])}]", {"ids": [4]}), (f"requeue[{item_key(rows[1])}]", {"ids": [5]})]
    assert run.state.status == "succeeded"


def test_item_keys_follow_the_item_not_its_position() -> None:
    """A retry that sees the list in another order or shortened keys each item as before, so nothing repeats."""
    assert item_key({"id": 4, "queue": "q1"}) == item_key({"queue": "q1", "id": 4})
    assert item_key({"id": 4}) != item_key({"id": 5})


async def test_for_each_refuses_an_empty_or_oversized_list() -> None:
    """No items is never 'all', and more items than max_items runs nothing."""
    step = PLAYBOOK.act[0].model_copy(update={"for_each": "steps.stuck.rows", "max_items": 1, "when": None})
    playbook = PLAYBOOK.model_copy(update={"act": [step]})
    for stuck in ([], [1, 2]):
        script = Script(stuck)
        run = Run(RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.AUTO), script, Clock())
        await run.execute_run()
        assert run.state.status == "failed" and "for_each gave" in run.state.reason
        assert [r for r in script.requests if r.step_id.startswith("requeue")] == []


class RefuseWrites(ModeLadder):
    """A policy that lets runs start and refuses every write (what the governor answers when it says no)."""

    def __init__(self) -> None:
        self.ended: list[tuple[bool, str]] = []

    async def before_write(self, run: RunInput, step: StepBase, key: str) -> Answer:
        return Answer(verdict="refuse", limit="kill_switch", reason="kill switch is on")

    async def after_run(self, run: RunInput, wrote: bool, status: str) -> None:
        self.ended.append((wrote, status))


async def test_a_policy_refusal_before_a_write_blocks_it_and_is_recorded() -> None:
    """The policy seam is asked before each write: a refusal ends the run blocked_by_policy with its reason."""
    script = Script([1, 2])
    policy = RefuseWrites()
    run = Run(RunInput(run_id="r", playbook=PLAYBOOK, alert=ALERT, mode=Mode.AUTO), script, Clock(), policy=policy)
    await run.execute_run()
    assert run.state.status == "blocked_by_policy" and "kill switch is on" in run.state.reason
    assert run.state.limit == "kill_switch" and policy.ended == [(False, "blocked_by_policy")]
    assert [r.step_id for r in script.requests] == ["stuck"]


class StormCaution(ModeLadder):
    """A policy that grants every write but asks for a human first, as the governor does during a storm; it notes
    whether the run held a slot when it started waiting for a person."""

    def __init__(self) -> None:
        self.asks, self.holding, self.held_at_gate = 0, False, [False]

    async def before_write(self, run: RunInput, step: StepBase, key: str) -> Answer:
        self.asks += 1
        self.holding = True
        return Answer(verdict="approval", limit="storm", reason="25 new occurrences within 5m")

    async def paused(self, run: RunInput) -> None:
        self.holding = False


async def test_a_caution_puts_a_write_that_needs_no_approval_behind_the_gate_and_says_why() -> None:
    """An `approval: none` write, a policy answer of `approval`: the gate opens, shows the reason, and after the
    approval the policy is asked again (the wait may have been long) before the write runs; while the gate is open
    the run has given its slot back."""
    shown: list[str] = []

    async def approve_at_once(gate: Gate) -> None:
        shown.append(gate.request.caution)
        policy.held_at_gate[0] = policy.holding
        gate.apply(Decision(verdict="approve", user="U_ALICE", decision_id="d"))

    policy, script = StormCaution(), Script([1])
    run = Run(
        RunInput(run_id="r", playbook=PLAYBOOK, alert=ALERT, mode=Mode.AUTO, approvers=["U_ALICE"]),
        script,
        Clock(),
        gatekeeper=approve_at_once,
        policy=policy,
    )
    await run.execute_run()
    assert shown == ["25 new occurrences within 5m"] and policy.asks == 2
    assert policy.held_at_gate == [False]  # a run waiting for a person holds no slot; it asks again after
    assert run.state.status == "succeeded" and run.state.limit == "storm" and run.state.caution == shown[0]


def test_targets_are_named_by_what_identifies_them_never_by_a_bare_true() -> None:
    """Rows are named by id, else pid/name/key, else their scalar columns; a row of booleans names nothing."""
    assert row_targets([{"id": 7}, {"pid": 812, "ok": True}, {"pg_cancel_backend": True}, {"queue": "q1", "n": 2}]) == [
        "row 7",
        "row pid=812",
        "row queue=q1, n=2",
    ]
    assert name_of(True) is None and name_of({"x": False}) is None and name_of("web-1") == "web-1"


async def test_a_for_each_write_whose_calls_name_nothing_lists_its_items() -> None:
    """When each call returns no target of its own (a function's `true`), the record names each item instead."""
    step = PLAYBOOK.act[0].model_copy(update={"for_each": "steps.stuck.rows", "max_items": 5})
    playbook = PLAYBOOK.model_copy(update={"act": [step]})
    run = Run(RunInput(run_id="r", playbook=playbook, alert=ALERT, mode=Mode.DRY_RUN), Script([4, 5]), Clock())
    await run.execute_run()
    assert next(r for r in run.state.steps if r.id == "requeue").targets == ["id=4", "id=5"]


def _conditional(rule: str) -> Playbook:
    step = PLAYBOOK.act[0].model_copy(update={"approval": ApprovalRule(required_if=rule)})
    return PLAYBOOK.model_copy(update={"act": [step]})


async def test_approval_can_depend_on_how_many_targets_the_write_would_touch() -> None:
    """`required_if: targets > 2`: two stuck rows are written without a gate, three wait for an approver."""
    opened: list[Gate] = []

    async def keep(gate: Gate) -> None:
        opened.append(gate)
        gate.apply(Decision(verdict="reject", user="U_ALICE", decision_id="d"))

    for stuck, gated in (([1, 2], False), ([1, 2, 3], True)):
        run = Run(
            RunInput(
                run_id="r", playbook=_conditional("targets > 2"), alert=ALERT, mode=Mode.AUTO, approvers=["U_ALICE"]
            ),
            Growing(stuck, stuck),
            Clock(),
            gatekeeper=keep,
        )
        await run.execute_run()
        record = next(r for r in run.state.steps if r.id == "requeue")
        assert record.approval == "required if targets > 2"
        assert (
            record.approval_decided
            == f"{'required' if gated else 'not required'}: targets > 2 with targets={len(stuck)}"
        )
        assert run.state.status == ("rejected" if gated else "succeeded"), run.state.reason
    assert len(opened) == 1


async def test_the_plan_shows_how_a_conditional_approval_would_be_decided() -> None:
    """In dry-run (what `remediate plan` runs), the record and the printed plan say required or not, and why."""
    run = Run(
        RunInput(run_id="r", playbook=_conditional("targets > 2"), alert=ALERT, mode=Mode.DRY_RUN),
        Growing([1, 2, 3], [1, 2, 3]),
        Clock(),
    )
    await run.execute_run()
    printed = format_state(run.state)
    assert "(approval: required if targets > 2)" in printed
    assert "approval required: targets > 2 with targets=3" in printed
