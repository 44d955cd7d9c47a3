"""One step of a run: render its parameters, call it, keep its result, repeat it per item, poll its `expect`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from pydantic import JsonValue

from service.alerts.webhook import Alert
from service.playbooks.step_base import parse_rendered
from service.playbooks.steps import StepBase, WriteStep
from service.playbooks.templating import condition, evaluate, render
from service.runs.state import Clock, Executor, RunInput, RunStatus, StepRecord, StepRequest, StepResult
from service.vocabulary.errors import PermanentStepError, StepError, TemplateError, WriteRefused
from service.vocabulary.sizes import REQUEST_LIMIT, json_size, shown_dict
from service.vocabulary.targets import name_of


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


@dataclass
class Scope:
    """What templates of one run may name: `alert`, `inputs`, `steps.<id>` and, inside for_each, `item`."""

    alert: dict[str, JsonValue]
    inputs: dict[str, JsonValue] = field(default_factory=dict)
    steps: dict[str, JsonValue] = field(default_factory=dict)
    item: JsonValue = None
    in_item: bool = False

    def variables(self) -> dict[str, object]:
        names: dict[str, object] = {"alert": self.alert, "inputs": self.inputs, "steps": self.steps}
        if self.in_item:
            names["item"] = self.item
        return names

    def scratch(self) -> Scope:
        """A copy whose results are its own: previews see each other, never the live run."""
        return replace(self, steps=dict(self.steps))


class Stop(Exception):
    """Ends a run early with a final status."""

    def __init__(self, status: RunStatus, reason: str, limit: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.limit = status, reason, limit


class StepRunner:
    """Runs the steps of one run through its executor, keeping each step's record current."""

    def __init__(
        self, run: RunInput, execute: Executor, clock: Clock, records: Sequence[StepRecord], check_rendered: bool = True
    ) -> None:
        self.run, self.execute, self.clock = run, execute, clock
        self._records = {r.id: r for r in records}
        # Rendered parameters are checked against their model here, so a wrong shape stops the run before anything
        # is sent (runs started before this check sent them, and their activity refused them: they replay so).
        self.check_rendered = check_rendered

    def record(self, step_id: str) -> StepRecord:
        return self._records[step_id]

    def skip(self, step: StepBase, summary: str) -> None:
        record = self.record(step.id)
        record.status, record.summary = "skipped", summary

    def when(self, step: StepBase, scope: Scope) -> bool:
        """The step's `when`; one that cannot be evaluated fails the step and the run."""
        try:
            return self._when(step, scope)
        except TemplateError as exc:
            self.record(step.id).status = "failed"
            raise Stop("failed", f"step {step.id!r} when: {exc}") from exc

    def may_run(self, step: StepBase, scope: Scope) -> bool:
        """For plans and previews: a condition on results a dry run cannot produce counts as 'may run'."""
        try:
            return self._when(step, scope)
        except TemplateError:
            return True

    @staticmethod
    def _when(step: StepBase, scope: Scope) -> bool:
        return step.when is None or condition(step.when, scope.variables())

    def render(self, step: StepBase, scope: Scope) -> dict[str, JsonValue]:
        params = step.params
        rendered: dict[str, JsonValue] = {}
        try:
            for name, value in params.model_dump(mode="json").items():
                literal = name in params.literal_fields
                escape = params.escapes.get(name, "none")
                rendered[name] = value if literal else render(value, scope.variables(), escape=escape)
        except TemplateError as exc:
            self.record(step.id).status = "failed"
            raise Stop("failed", f"step {step.id!r}: {exc}") from exc
        if self.check_rendered:
            try:
                parse_rendered(type(params), rendered)
            except PermanentStepError as exc:
                self.record(step.id).status = "failed"
                raise Stop("failed", f"step {step.id!r}: {exc}; nothing was sent") from exc
        size = json_size(rendered)
        if size > REQUEST_LIMIT:
            # Sent whole or not at all: a cut parameter would change what the step does.
            self.record(step.id).status = "failed"
            raise Stop(
                "failed",
                f"step {step.id!r}: its rendered parameters are {size} bytes, over the {REQUEST_LIMIT} a step may "
                "send (a large label or result rendered into them?); nothing was sent",
            )
        return rendered

    def _request(self, step: StepBase, params: dict[str, JsonValue], dry_run: bool, item: str = "") -> StepRequest:
        return StepRequest(
            run_id=self.run.run_id,
            step_id=f"{step.id}[{item}]" if item else step.id,
            action=step.action,
            connection=step.connection,
            params=params,
            dry_run=dry_run,
            effect=step.effect,
            timeout_seconds=step.timeout.total_seconds(),
        )

    async def _call(self, step: StepBase, request: StepRequest, scope: Scope) -> StepResult:
        record = self.record(step.id)
        record.status, record.attempts = "running", record.attempts + 1
        record.started_at = record.started_at or self.clock.now()
        try:
            result = await self.execute(step, request)
        except WriteRefused as exc:
            record.status, record.summary, record.finished_at = "not_run", f"not sent: {exc}", self.clock.now()
            raise Stop(
                "blocked_by_policy", f"step {step.id!r}: {exc}; nothing more was written", limit="kill_switch"
            ) from exc
        except StepError as exc:
            record.status, record.error, record.finished_at = "failed", str(exc), self.clock.now()
            raise Stop("failed", f"step {step.id!r} failed: {exc}") from exc
        record.result, record.summary, record.targets = shown_dict(result.data), result.summary, result.targets
        record.blast_radius = result.blast_radius
        record.note = result.note or record.note
        record.finished_at = self.clock.now()
        scope.steps[step.id] = result.data
        return result

    async def read(self, step: StepBase, scope: Scope) -> None:
        """A read, polled while its `expect` is not met, as its `retry` allows."""
        record = self.record(step.id)
        if not self.when(step, scope):
            self.skip(step, f"when is false: {step.when}")
            return
        attempts = step.retry.attempts if step.retry else 1
        interval = step.retry.interval if step.retry else timedelta(seconds=1)
        backoff = step.retry.backoff if step.retry else 1.0
        for attempt in range(attempts):
            params = self.render(step, scope)
            record.params = shown_dict(params)
            await self._call(step, self._request(step, params, dry_run=False), scope)
            if step.expect is None or self._expect(step, step.expect, scope):
                record.status = "ok"
                return
            if attempt + 1 < attempts:
                await self.clock.sleep(interval.total_seconds() * backoff**attempt)
        record.status, record.error = "failed", f"expect not met after {attempts} attempt(s): {step.expect}"
        raise Stop("failed", f"step {step.id!r}: {record.error}")

    def _expect(self, step: StepBase, expect: str, scope: Scope) -> bool:
        try:
            return condition(expect, scope.variables())
        except TemplateError as exc:
            raise Stop("failed", f"step {step.id!r} expect: {exc}") from exc

    async def write(self, step: StepBase, scope: Scope, dry_run: bool = False) -> None:
        record = self.record(step.id)
        each = step.each() if isinstance(step, WriteStep) else None
        if isinstance(step, WriteStep) and each is not None:
            await self._write_each(step, *each, scope, dry_run)
        else:
            params = self.render(step, scope)
            record.params = shown_dict(params)
            await self._call(step, self._request(step, params, dry_run=dry_run), scope)
        record.status = "dry_run" if dry_run else "ok"

    async def preview(self, steps: Sequence[StepBase], scope: Scope) -> list[StepBase]:
        """Each write that may run, in its dry-run form, in a scratch scope (so no preview steers a live write);
        returns the steps previewed, whose records now show their targets and blast radius."""
        scratch, previewed = scope.scratch(), []
        for step in steps:
            if not self.may_run(step, scratch):
                self.skip(step, f"when is false: {step.when}")
                continue
            await self.write(step, scratch, dry_run=True)
            previewed.append(step)
        return previewed

    async def _write_each(self, step: WriteStep, source: str, cap: int, scope: Scope, dry_run: bool) -> None:
        """One call per item of a bounded list; each has its own idempotency key `<step>[<item digest>]`."""
        record = self.record(step.id)
        try:
            items = evaluate(source, scope.variables())
        except TemplateError as exc:
            raise Stop("failed", f"step {step.id!r} for_each: {exc}") from exc
        if not isinstance(items, list) or not items or len(items) > cap:
            size = len(items) if isinstance(items, list) else "not a list"
            record.status = "failed"
            raise Stop(
                "failed",
                f"step {step.id!r} for_each gave {size} item(s); it needs 1 to {cap} "
                "(an empty list is never read as 'all')",
            )
        results: list[JsonValue] = []
        targets: list[str] = []
        for item in items:
            params = self.render(step, replace(scope, item=item, in_item=True))
            request = self._request(step, params, dry_run=dry_run, item=item_key(item))
            result = await self._call(step, request, scope)
            results.append(result.data)
            # A call that names no target of its own is named by its item: the approver sees which one.
            targets.extend(result.targets or [name_of(item) or f"item {len(results)}"])
        record.params = {"for_each": source, "max_items": cap, "items": len(items)}
        record.result, record.targets = shown_dict({"results": results, "count": len(results)}), targets
        record.blast_radius = f"{len(targets)} target(s); cap: max_items {cap}"
        record.summary = f"{'planned' if dry_run else 'ran'} for {len(items)} item(s) (max_items {cap})"
        scope.steps[step.id] = {"results": results, "count": len(results)}
