"""The run, independent of where it executes: diagnose, plan, gate, act, verify, with every step recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from service.playbooks.steps import StepBase, WriteStep, approval_label, approval_of, approval_rule_of
from service.playbooks.templating import condition, render
from service.runs.gates import Approved, approved_targets, gate_request, nothing_left, unapproved_targets
from service.runs.policy import ModeLadder, Policy
from service.runs.state import Clock, Executor, GateKeeper, RunInput, RunState, RunStatus, StepRecord
from service.runs.step_runner import Scope, StepRunner, Stop, alert_variables, item_key
from service.vocabulary.approvals import Gate
from service.vocabulary.errors import TemplateError
from service.vocabulary.modes import Mode
from service.vocabulary.sizes import shown_dict

__all__ = ["Run", "internal_error", "item_key", "new_state"]


def internal_error(exc: BaseException, writes_started: int) -> str:
    """The reason a run that hit an unexpected error ends with: what it was, and what had been written."""
    written = f"{writes_started} write(s) had started" if writes_started else "nothing was written"
    return f"internal error: {type(exc).__name__}: {str(exc)[:500]}; the run stopped here ({written})"


async def _nothing() -> None:
    return None


def new_state(run: RunInput) -> RunState:
    return RunState(
        run_id=run.run_id,
        playbook=run.playbook.name,
        alertname=run.alert.alertname,
        fingerprint=run.alert.fingerprint,
        labels=dict(run.alert.labels),
        mode=run.mode,
        version=run.version,
        steps=[
            StepRecord(
                id=s.id,
                phase=phase,
                action=s.action,
                effect=s.effect,
                connection=s.connection,
                approval=approval_label(s) if s.effect == "write" else None,
            )
            for phase, s in run.playbook.steps()
        ],
    )


class Run:
    """One run of one playbook for one alert; `state` is always current for queries."""

    def __init__(
        self,
        run: RunInput,
        execute: Executor,
        clock: Clock,
        resolved: Callable[[], bool] = lambda: False,
        gatekeeper: GateKeeper | None = None,
        policy: Policy | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
        record: Callable[[], Awaitable[None]] | None = None,
        acting: Callable[[], None] | None = None,
        check_rendered: bool = True,
    ) -> None:
        self.run, self.clock, self.alert_resolved = run, clock, resolved
        # A playbook whose own first write resolves its alert (it changes what the rule selects) says so, and then a
        # `resolved` is recorded but stops nothing.
        self.resolved = resolved if run.playbook.stop_when_resolved else (lambda: False)
        # Before each write: let signals that arrived during the reads (a `resolved`) be seen first.
        self.settle = settle
        self.record = record or _nothing  # the audit trail: at the start, around each write, at the gate
        self.acting = acting or (lambda: None)  # told once, as the first real write starts (outcome messages)
        self.gatekeeper, self.policy = gatekeeper, policy or ModeLadder()
        self.state = new_state(run)
        self.steps = StepRunner(run, execute, clock, self.state.steps, check_rendered)
        self.scope = Scope(alert=alert_variables(run.alert))
        self.asked = False  # whether the policy was asked for a write (and so must hear how the run ended)
        self.attempted = 0  # writes started: a run that started none gets its budget back
        self.decided: dict[str, bool] = {}  # conditional approvals, decided on each write's dry-run

    def stop_before_start(self, status: RunStatus, reason: str) -> RunState:
        """End the run before its first step (a policy said no); recorded like any other outcome."""
        self.state.started_at = self.state.started_at or self.clock.now()
        self.state.finished_at = self.clock.now()
        self.state.status, self.state.reason = status, reason
        return self.state

    async def execute_run(self) -> RunState:
        self.state.started_at = self.state.started_at or self.clock.now()  # the workflow sets it: when it began
        try:
            await self._phases()
        except Stop as stop:
            self.state.status, self.state.reason = stop.status, stop.reason
            self.state.limit = stop.limit or self.state.limit
        except Exception as exc:  # noqa: BLE001 - the run's boundary: a bug or a hostile value ends the run, never hangs it
            self.state.status, self.state.reason = "failed", internal_error(exc, self.attempted)
        if self.asked:
            await self.policy.after_run(self.run, self.attempted > 0, self.state.status)
        self.state.resolved = self.state.resolved or self.alert_resolved()
        self.state.finished_at = self.clock.now()
        return self.state

    async def _phases(self) -> None:
        playbook = self.run.playbook
        refusal = await self.policy.before_run(self.run)
        if refusal is not None:
            raise Stop("blocked_by_policy", refusal)
        self.state.status = "diagnosing"
        await self.record()
        self.render_inputs()
        for step in playbook.diagnose:
            await self.steps.read(step, self.scope)
        self.state.status = "planned"
        for step in playbook.act:
            self._plan(step)
        if self.resolved():
            raise Stop("resolved_before_action", "the alert resolved before any write was made")
        if self.run.mode.plans_only:
            await self._dry_run()
            return
        done = await self._act()
        self.state.status = "verifying"
        if done:
            await self.record()
        for step in playbook.verify:
            await self.steps.read(step, self.scope)
        self.state.status = "succeeded"
        self.state.reason = f"{done} write(s) done; verify passed" if done else "nothing to do; verify passed"

    def _needs_approval(self, step: StepBase) -> bool:
        if self.run.mode == Mode.APPROVE or self.state.caution:
            return True
        if approval_rule_of(step) is not None:
            return self.decided.get(step.id, True)  # undecided: asked for, to be safe
        return approval_of(step) == "required"

    def _decide(self, step: StepBase, targets: int) -> None:
        """Decide a `required_if` on the write's own dry-run: `targets` is how many it would touch."""
        rule = approval_rule_of(step)
        if rule is None or step.id in self.decided:
            return
        try:
            needed = condition(rule, {**self.scope.variables(), "targets": targets})
        except TemplateError as exc:
            raise Stop("failed", f"step {step.id!r} approval.required_if: {exc}; nothing more was written") from exc
        self.decided[step.id] = needed
        self.steps.record(
            step.id
        ).approval_decided = f"{'required' if needed else 'not required'}: {rule} with targets={targets}"

    async def _decide_by_preview(self, step: StepBase) -> None:
        if approval_rule_of(step) is None or step.id in self.decided:
            return
        previewed = await self.steps.preview([step], self.scope)
        self._decide(step, len(self.steps.record(step.id).targets) if previewed else 0)

    def render_inputs(self) -> None:
        """The playbook's inputs, rendered once from the alert before the first read."""
        for key, value in self.run.playbook.inputs.items():
            try:
                self.scope.inputs[key] = render(value, self.scope.variables())
            except TemplateError as exc:
                raise Stop("failed", f"input {key!r}: {exc}; nothing was written") from exc

    def cooldown_key(self) -> str:
        """What this run's cooldown is for: `limits.cooldown_key` rendered now, or the alert's fingerprint."""
        template = self.run.governance.cooldown_key
        if not template:
            return self.run.alert.fingerprint or self.run.run_id
        try:
            return str(render(template, self.scope.variables()))[:300]
        except TemplateError as exc:
            raise Stop("failed", f"limits.cooldown_key: {exc}; nothing was written") from exc

    async def _ask(self, step: StepBase) -> None:
        """The policy's word on this write: a refusal ends the run; a caution makes every remaining write wait for
        a human."""
        self.asked = True
        answer = await self.policy.before_write(self.run, step, self.cooldown_key())
        if answer.verdict == "refuse" and self.resolved():  # it waited for its turn, and the alert went away
            self.state.resolved = True
            raise Stop(
                "resolved_before_action", f"the alert resolved before step {step.id!r}; nothing more was written"
            )
        if answer.verdict == "refuse":
            self.state.limit = answer.limit
            frees = f" (frees at {answer.frees_at.isoformat(timespec='seconds')})" if answer.frees_at else ""
            raise Stop("blocked_by_policy", f"step {step.id!r}: {answer.reason}{frees}; nothing more was written")
        if answer.verdict == "approval" and not self.state.caution:
            self.state.caution, self.state.limit = answer.reason, answer.limit

    async def _act(self) -> int:
        """Writes in order, each `when` decided at its turn; the first write that needs approval opens the gate."""
        act, approved, done = self.run.playbook.act, False, 0
        self.state.status = "acting"
        for index, step in enumerate(act):
            if self.settle is not None:
                await self.settle()
            if self.resolved():
                self.state.resolved = True
                for later in act[index:]:
                    self.steps.record(later.id).status = "not_run"
                raise Stop(
                    "resolved_before_action",
                    f"the alert resolved before step {step.id!r}; remaining writes were skipped",
                )
            if not self.steps.when(step, self.scope):
                self.steps.skip(step, f"when is false: {step.when}")
                continue
            await self._ask(step)
            if not approved:
                await self._decide_by_preview(step)
            if not approved and self._needs_approval(step):
                targets = await self._approve(act[index:])
                await self._rediagnose(act[index:], targets)
                approved = True
                if not self.steps.when(step, self.scope):
                    self.steps.skip(step, "no longer needed after re-diagnosis")
                    continue
                await self._ask(step)  # the wait may have been long: the kill switch may be on by now
            if not self.attempted:
                await self.policy.acting(self.run)
                self.acting()
            self.attempted += 1
            await self.record()  # the write as planned, before it is sent: a run killed now still shows it
            await self.steps.write(step, self.scope)
            await self.record()  # a failed write is recorded with the run's end
            done += 1
        return done

    async def _approve(self, steps: Sequence[StepBase]) -> dict[str, list[str]]:
        """Preview the remaining writes, open the gate, wait; returns the approved targets per step."""
        conditional = any(approval_rule_of(s) is not None and s.id not in self.decided for s in steps)
        shown = await self.steps.preview(steps, self.scope) if conditional else []
        for step in shown:
            self._decide(step, len(self.steps.record(step.id).targets))
        gated = [s for s in steps if self._needs_approval(s)]
        if self.gatekeeper is None or not self.run.approvers:
            why = f" ({self.state.caution})" if self.state.caution else ""
            raise Stop(
                "blocked_by_policy",
                f"step(s) {', '.join(s.id for s in gated)} need an approval{why}, but "
                "no approvers are configured for this playbook; nothing more was written",
            )
        shown = shown if conditional else await self.steps.preview(steps, self.scope)
        previewed = [(self.steps.record(s.id), self._needs_approval(s)) for s in shown]
        request = gate_request(self.run, self.state.steps, previewed, gated, self.clock.now())
        request.caution = self.state.caution
        gate = Gate(request=request)
        await self.policy.paused(self.run)  # a run waiting for a person holds no slot: it asks again after
        self.state.gate, self.state.status = gate, "awaiting_approval"
        await self.gatekeeper(gate)
        if gate.status == "rejected":
            raise Stop("rejected", f"rejected by {gate.rejected_by}; nothing more was written")
        if gate.status == "expired":
            raise Stop("expired", f"no decision within {self.run.playbook.approval_timeout}; nothing more was written")
        if gate.status == "resolved" or self.resolved():
            self.state.resolved = True
            raise Stop(
                "resolved_before_action", "the alert resolved while waiting for approval; nothing more was written"
            )
        return approved_targets([record for record, _ in previewed])

    async def _rediagnose(self, steps: Sequence[StepBase], approved: Approved) -> None:
        """Diagnose again after approval; refuse targets nobody approved; stop if nothing is left to fix."""
        self.state.status = "diagnosing"
        for read in self.run.playbook.diagnose:
            await self.steps.read(read, self.scope)
        still = []
        for write in await self.steps.preview(steps, self.scope):
            record = self.steps.record(write.id)
            unapproved = unapproved_targets(approved, record)
            if unapproved:
                raise Stop(
                    "blocked_by_policy",
                    f"after approval, step {write.id!r} would also touch "
                    f"{', '.join(unapproved[:5])}, which nobody approved; nothing more was written",
                )
            if not nothing_left(approved, record):
                still.append(write)
        if not still:
            raise Stop("resolved_before_action", "re-diagnosis after approval found nothing left to fix")
        self.state.status = "acting"

    async def _dry_run(self) -> None:
        previewed = await self.steps.preview(self.run.playbook.act, self.scope)
        for step in previewed:  # the plan shows how each conditional approval would be decided
            self._decide(step, len(self.steps.record(step.id).targets))
        for step in self.run.playbook.verify:
            record = self.steps.record(step.id)
            record.status, record.summary = "not_run", "dry-run: nothing was changed, so there is nothing to verify"
        self.state.status = "succeeded"
        self.state.reason = (
            f"dry-run: {len(previewed)} write(s) planned, none made"
            if previewed
            else "dry-run: diagnosis found nothing to do"
        )

    def _plan(self, step: StepBase) -> None:
        """Mark what diagnosis suggests; conditions on earlier writes are decided when their turn comes."""
        record = self.steps.record(step.id)
        if not self.steps.may_run(step, self.scope):
            self.steps.skip(step, f"when is false: {step.when}")
            return
        record.status = "planned"
        if isinstance(step, WriteStep) and step.each() is not None:
            return  # rendered once per item, when it runs
        try:
            record.params = shown_dict(self.steps.render(step, self.scope))
        except Stop:
            record.status, record.summary = "planned", "parameters depend on earlier writes"
