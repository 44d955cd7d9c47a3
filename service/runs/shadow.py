"""Shadow mode's watch: a run plans its writes and changes nothing, then sees what happened without it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.runs.engine import Run
from service.runs.state import Clock, Executor, RunInput, RunState
from service.runs.step_runner import Stop
from service.vocabulary.modes import Mode
from service.vocabulary.shadow import ShadowWatch, VerifyNow


def planned_targets(state: RunState) -> dict[str, list[str]]:
    """The writes a plan holds (their dry-run form ran), with the targets each would touch."""
    return {r.id: list(r.targets) for r in state.steps if r.effect == "write" and r.status == "dry_run"}


async def look_again(run: RunInput, execute: Executor, clock: Clock) -> tuple[RunState, VerifyNow]:
    """Diagnose again, plan the writes again (dry-run) and run verify as reads: the targets as they are now."""
    again = Run(run.model_copy(update={"mode": Mode.DRY_RUN}), execute, clock)
    state = await again.execute_run()
    if state.status != "succeeded" or not run.playbook.verify:
        return state, "not_run"
    for step in run.playbook.verify:
        try:
            await again.steps.read(step, again.scope)
        except Stop:
            return state, "failed"
    return state, "passed"


def judge(
    planned: dict[str, list[str]],
    looked: RunState | None,
    verify: VerifyNow,
    cleared_after: float | None,
    watched: float,
) -> ShadowWatch:
    """The verdict: planned targets someone else changed come first, then whether the alert cleared by itself."""
    seen = ShadowWatch(
        verdict="unknown", planned=planned, verify=verify, cleared_after=cleared_after, watched_seconds=watched
    )
    if not planned:
        return seen.model_copy(update={"verdict": "nothing_planned", "summary": "the plan held no write"})
    if looked is None or looked.status != "succeeded":
        why = f"{looked.status}: {looked.reason}" if looked is not None else "nothing to look with"
        return seen.model_copy(update={"summary": f"looking again failed ({why})"})
    still = planned_targets(looked)
    now = {t for targets in still.values() for t in targets}
    # A write no longer planned at all (its `when` is false now) counts as changed, as each target gone does.
    changed = sorted({t for step, targets in planned.items() if step in still for t in targets} - now) + [
        f"{step} (no longer needed)" for step in planned if step not in still
    ]
    seen = seen.model_copy(update={"still": still, "changed": changed})
    cleared = f"; the alert cleared after {cleared_after:.0f}s" if cleared_after is not None else ""
    if changed:
        passes = "; verify passes now" if verify == "passed" else ""
        shown = ", ".join(changed[:5])
        summary = f"{len(changed)} planned target(s) changed by someone else ({shown}){cleared}{passes}"
        return seen.model_copy(update={"verdict": "human_acted", "summary": summary})
    if cleared_after is not None:
        summary = f"the alert cleared after {cleared_after:.0f}s with the planned targets unchanged"
        return seen.model_copy(update={"verdict": "cleared_without_action", "summary": summary})
    summary = f"still firing after {watched:.0f}s with the planned targets unchanged: the write was needed"
    return seen.model_copy(update={"verdict": "still_firing", "summary": summary})


async def watch(
    run: RunInput,
    state: RunState,
    execute: Executor,
    clock: Clock,
    until_resolved: Callable[[float], Awaitable[bool]],
    record: Callable[[], Awaitable[None]],
) -> None:
    """After a shadow run's plan: wait for the alert to resolve (at most effective_within from the run's start), then
    look again, and keep the verdict on the run."""
    planned = planned_targets(state)
    if not planned:
        state.shadow = judge(planned, None, "not_run", None, 0.0)
        return
    began = state.started_at or clock.now()
    state.shadow = ShadowWatch(verdict="watching", planned=planned, summary="waiting for the alert to clear")
    await record()
    resolved = await until_resolved((began + run.governance.effective_within - clock.now()).total_seconds())
    watched = (clock.now() - began).total_seconds()
    looked, verify = await look_again(run, execute, clock)
    state.shadow = judge(planned, looked, verify, watched if resolved else None, watched)
    state.resolved = state.resolved or resolved
