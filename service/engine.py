"""The run, independent of where it executes: diagnose, plan, gate, act, verify, with every step recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from service.alerts import Alert
from service.approvals import Gate, GateRequest, PlannedWrite
from service.errors import StepError, TemplateError
from service.policy import Mode
from service.runs import (
    Clock,
    Executor,
    GateKeeper,
    RunInput,
    RunState,
    RunStatus,
    StepRecord,
    StepRequest,
    StepResult,
    blast_radius,
)
from service.steps import StepBase, approval_of
from service.templating import condition, evaluate, render


def alert_variables(alert: Alert) -> dict[str, JsonValue]:
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "status": alert.status,
        "alertname": alert.alertname,
        "fingerprint": alert.fingerprint,
        "startsAt": alert.startsAt.isoformat(),
        "generatorURL": alert.generatorURL,
    }


def item_key(item: JsonValue) -> str:
    """A for_each item's part of the idempotency key: its content, so a retry that sees the list reordered or
    shortened still finds the writes already applied."""
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[:12]


def new_state(run: RunInput) -> RunState:
    return RunState(
        run_id=run.run_id,
        playbook=run.playbook.name,
        alertname=run.alert.alertname,
        fingerprint=run.alert.fingerprint,
        labels=dict(run.alert.labels),
        mode=run.mode,
        steps=[
            StepRecord(
                id=s.id,
                phase=phase,
                action=s.action,
                effect=s.effect,
                connection=s.connection,
                approval=approval_of(s) if s.effect == "write" else None,
            )
            for phase, s in run.playbook.steps()
        ],
    )


class _Stop(Exception):
    """Ends a run early with a final status."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Run:
    """One run of one playbook for one alert; `state` is always current for queries."""

    def __init__(
        self,
        run: RunInput,
        execute: Executor,
        clock: Clock,
        resolved: Callable[[], bool] = lambda: False,
        gatekeeper: GateKeeper | None = None,
    ) -> None:
        self.run, self.execute, self.clock, self.resolved = run, execute, clock, resolved
        self.gatekeeper = gatekeeper
        self.state = new_state(run)
        self.context: dict[str, Any] = {"alert": alert_variables(run.alert), "inputs": {}, "steps": {}}

    def _record(self, step_id: str) -> StepRecord:
        return next(r for r in self.state.steps if r.id == step_id)

    def stop_before_start(self, status: RunStatus, reason: str) -> RunState:
        """End the run before its first step (a policy said no); recorded like any other outcome."""
        self.state.started_at = self.state.finished_at = self.clock.now()
        self.state.status, self.state.reason = status, reason
        return self.state

    async def execute_run(self) -> RunState:
        self.state.started_at = self.clock.now()
        try:
            await self._phases()
        except _Stop as stop:
            self.state.status, self.state.reason = stop.status, stop.reason
        self.state.resolved = self.state.resolved or self.resolved()
        self.state.finished_at = self.clock.now()
        return self.state

    async def _phases(self) -> None:
        playbook, mode = self.run.playbook, self.run.mode
        if mode == Mode.OFF:
            raise _Stop("blocked_by_policy", "mode is off for this playbook: nothing was read or written")
        self.state.status = "diagnosing"
        for key, value in playbook.inputs.items():
            try:
                self.context["inputs"][key] = render(value, self.context)
            except TemplateError as exc:
                raise _Stop("failed", f"input {key!r}: {exc}") from exc
        for step in playbook.diagnose:
            await self._read(step)
        self.state.status = "planned"
        for step in playbook.act:
            self._plan(step)
        if self.resolved():
            raise _Stop("resolved_before_action", "the alert resolved before any write was made")
        if mode == Mode.DRY_RUN:
            await self._dry_run()
            return
        done = await self._act()
        self.state.status = "verifying"
        for step in playbook.verify:
            await self._read(step)
        self.state.status = "succeeded"
        self.state.reason = f"{done} write(s) done; verify passed" if done else "nothing to do; verify passed"

    def _needs_approval(self, step: StepBase) -> bool:
        return self.run.mode == Mode.APPROVE or approval_of(step) == "required"

    async def _act(self) -> int:
        """Writes in order, each `when` decided at its turn; the first write that needs approval opens the gate."""
        act, approved, done = self.run.playbook.act, False, 0
        self.state.status = "acting"
        for index, step in enumerate(act):
            if self.resolved():
                self.state.resolved = True
                for later in act[index:]:
                    self._record(later.id).status = "not_run"
                raise _Stop(
                    "resolved_before_action",
                    f"the alert resolved before step {step.id!r}; remaining writes were skipped",
                )
            if not self._when(step):
                self._record(step.id).status = "skipped"
                self._record(step.id).summary = f"when is false: {step.when}"
                continue
            if not approved and self._needs_approval(step):
                previewed = await self._approve(act[index:])
                await self._rediagnose(act[index:], previewed)
                approved = True
                if not self._when(step):
                    self._record(step.id).status = "skipped"
                    self._record(step.id).summary = "no longer needed after re-diagnosis"
                    continue
            await self._write(step)
            done += 1
        return done

    def _when_soft(self, step: StepBase) -> bool:
        """For previews: a condition on results a dry run cannot produce counts as 'may run'."""
        if step.when is None:
            return True
        try:
            return condition(step.when, self.context)
        except TemplateError:
            return True

    async def _preview(self, steps: Sequence[StepBase]) -> list[StepBase]:
        """Run each write that may run in its dry-run form, so targets and blast radius are known."""
        previewed: list[StepBase] = []
        for step in steps:
            if not self._when_soft(step):
                self._record(step.id).status = "skipped"
                self._record(step.id).summary = f"when is false: {step.when}"
                continue
            await self._write(step, dry_run=True)
            previewed.append(step)
        return previewed

    async def _approve(self, steps: Sequence[StepBase]) -> dict[str, list[str]]:
        """Preview the remaining writes, open the gate, wait; returns the approved targets per step."""
        gated = [s for s in steps if self._needs_approval(s)]
        if self.gatekeeper is None or not self.run.approvers:
            raise _Stop(
                "blocked_by_policy",
                f"step(s) {', '.join(s.id for s in gated)} need an approval, but "
                "no approvers are configured for this playbook; nothing more was written",
            )
        previewed = await self._preview(steps)
        for step in steps:
            self.context["steps"].pop(step.id, None)  # preview results must not steer the live writes
        records = [self._record(s.id) for s in previewed]
        playbook = self.run.playbook
        timeout = playbook.approval_timeout
        request = GateRequest(
            run_id=self.run.run_id,
            playbook=playbook.name,
            alertname=self.run.alert.alertname,
            labels=dict(self.run.alert.labels),
            diagnosis=[f"{r.id}: {r.summary}" for r in self.state.steps if r.phase == "diagnose" and r.summary],
            writes=[
                PlannedWrite(
                    step=r.id,
                    action=r.action,
                    summary=r.summary,
                    targets=list(r.targets),
                    blast_radius=blast_radius(r),
                    gated=self._needs_approval(s),
                )
                for s, r in zip(previewed, records, strict=True)
            ],
            approvers=list(self.run.approvers),
            min_approvals=max([playbook.min_approvals, *(getattr(s, "min_approvals", None) or 1 for s in gated)]),
            expires_at=self.clock.now() + timeout,
        )
        gate = Gate(request=request)
        self.state.gate, self.state.status = gate, "awaiting_approval"
        await self.gatekeeper(gate)
        if gate.status == "rejected":
            raise _Stop("rejected", f"rejected by {gate.rejected_by}; nothing more was written")
        if gate.status == "expired":
            raise _Stop("expired", f"no decision within {timeout}; nothing more was written")
        if gate.status == "resolved" or self.resolved():
            self.state.resolved = True
            raise _Stop(
                "resolved_before_action", "the alert resolved while waiting for approval; nothing more was written"
            )
        return {r.id: list(r.targets) for r in records}

    async def _rediagnose(self, steps: Sequence[StepBase], approved: dict[str, list[str]]) -> None:
        """Diagnose again after approval; refuse targets nobody approved; stop if nothing is left to fix."""
        self.state.status = "diagnosing"
        for read in self.run.playbook.diagnose:
            await self._read(read)
        still = []
        for write in await self._preview(steps):
            record = self._record(write.id)
            unapproved = sorted(set(record.targets) - set(approved.get(write.id, [])))
            if unapproved:
                raise _Stop(
                    "blocked_by_policy",
                    f"after approval, step {write.id!r} would also touch "
                    f"{', '.join(unapproved[:5])}, which nobody approved; nothing more was written",
                )
            if not (approved.get(write.id) and not record.targets):
                still.append(write)
        for write in steps:
            self.context["steps"].pop(write.id, None)
        if not still:
            raise _Stop("resolved_before_action", "re-diagnosis after approval found nothing left to fix")
        self.state.status = "acting"

    async def _dry_run(self) -> None:
        previewed = await self._preview(self.run.playbook.act)
        for step in self.run.playbook.verify:
            self._record(step.id).status = "not_run"
            self._record(step.id).summary = "dry-run: nothing was changed, so there is nothing to verify"
        self.state.status = "succeeded"
        self.state.reason = (
            f"dry-run: {len(previewed)} write(s) planned, none made"
            if previewed
            else "dry-run: diagnosis found nothing to do"
        )

    def _when(self, step: StepBase) -> bool:
        if step.when is None:
            return True
        try:
            return condition(step.when, self.context)
        except TemplateError as exc:
            self._record(step.id).status = "failed"
            raise _Stop("failed", f"step {step.id!r} when: {exc}") from exc

    def _plan(self, step: StepBase) -> None:
        """Mark what diagnosis suggests; conditions on earlier writes are decided when their turn comes."""
        record = self._record(step.id)
        if not self._when_soft(step):
            record.status, record.summary = "skipped", f"when is false: {step.when}"
            return
        record.status = "planned"
        if getattr(step, "for_each", None):
            return  # rendered once per item, when it runs
        try:
            record.params = self._render(step)
        except _Stop:
            record.status, record.summary = "planned", "parameters depend on earlier writes"

    def _render(self, step: StepBase) -> dict[str, JsonValue]:
        params = step.params
        rendered: dict[str, JsonValue] = {}
        raw = params.model_dump(mode="json")
        try:
            for name, value in raw.items():
                literal = name in params.literal_fields
                rendered[name] = (
                    value if literal else render(value, self.context, escape=params.escapes.get(name, "none"))
                )
        except TemplateError as exc:
            self._record(step.id).status = "failed"
            raise _Stop("failed", f"step {step.id!r}: {exc}") from exc
        return rendered

    def _request(self, step: StepBase, params: dict[str, JsonValue], dry_run: bool) -> StepRequest:
        return StepRequest(
            run_id=self.run.run_id,
            step_id=step.id,
            action=step.action,
            connection=step.connection,
            params=params,
            dry_run=dry_run,
            timeout_seconds=step.timeout.total_seconds(),
        )

    async def _call(self, step: StepBase, record: StepRecord, request: StepRequest) -> StepResult:
        record.status, record.attempts = "running", record.attempts + 1
        record.started_at = record.started_at or self.clock.now()
        try:
            result = await self.execute(step, request)
        except StepError as exc:
            record.status, record.error, record.finished_at = "failed", str(exc), self.clock.now()
            raise _Stop("failed", f"step {step.id!r} failed: {exc}") from exc
        record.result, record.summary, record.targets = result.data, result.summary, result.targets
        record.note = result.note or record.note
        record.finished_at = self.clock.now()
        self.context["steps"][step.id] = result.data
        return result

    async def _read(self, step: StepBase) -> None:
        record = self._record(step.id)
        if not self._when(step):
            record.status, record.summary = "skipped", f"when is false: {step.when}"
            return
        attempts = step.retry.attempts if step.retry else 1
        interval = step.retry.interval if step.retry else timedelta(seconds=1)
        backoff = step.retry.backoff if step.retry else 1.0
        for attempt in range(attempts):
            record.params = self._render(step)
            await self._call(step, record, self._request(step, record.params, dry_run=False))
            if step.expect is None or self._expect(step):
                record.status = "ok"
                return
            if attempt + 1 < attempts:
                await self.clock.sleep(interval.total_seconds() * backoff**attempt)
        record.status, record.error = "failed", f"expect not met after {attempts} attempt(s): {step.expect}"
        raise _Stop("failed", f"step {step.id!r}: {record.error}")

    def _expect(self, step: StepBase) -> bool:
        assert step.expect is not None  # noqa: S101 - checked by the caller
        try:
            return condition(step.expect, self.context)
        except TemplateError as exc:
            raise _Stop("failed", f"step {step.id!r} expect: {exc}") from exc

    async def _write(self, step: StepBase, dry_run: bool = False) -> None:
        record = self._record(step.id)
        if getattr(step, "for_each", None):
            await self._write_each(step, record, dry_run)
        else:
            record.params = self._render(step)
            await self._call(step, record, self._request(step, record.params, dry_run=dry_run))
        record.status = "dry_run" if dry_run else "ok"

    async def _write_each(self, step: StepBase, record: StepRecord, dry_run: bool) -> None:
        """One call per item of a bounded list; each has its own idempotency key `<step>[<index>]`."""
        source, cap = getattr(step, "for_each", ""), getattr(step, "max_items", 0)
        try:
            items = evaluate(source, self.context)
        except TemplateError as exc:
            raise _Stop("failed", f"step {step.id!r} for_each: {exc}") from exc
        if not isinstance(items, list) or not items or len(items) > cap:
            size = len(items) if isinstance(items, list) else "not a list"
            record.status = "failed"
            raise _Stop(
                "failed",
                f"step {step.id!r} for_each gave {size} item(s); it needs 1 to {cap} "
                "(an empty list is never read as 'all')",
            )
        results: list[JsonValue] = []
        targets: list[str] = []
        for item in items:
            self.context["item"] = item
            try:
                params = self._render(step)
            finally:
                self.context.pop("item", None)
            request = self._request(step, params, dry_run=dry_run)
            request.step_id = f"{step.id}[{item_key(item)}]"
            result = await self._call(step, record, request)
            results.append(result.data)
            targets.extend(result.targets)
        record.params = {"for_each": source, "max_items": cap, "items": len(items)}
        record.result, record.targets = {"results": results, "count": len(results)}, targets
        record.summary = f"{'planned' if dry_run else 'ran'} for {len(items)} item(s) (max_items {cap})"
        self.context["steps"][step.id] = record.result
