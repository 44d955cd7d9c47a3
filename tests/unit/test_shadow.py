"""Shadow mode's verdicts: what a watch concludes from the targets it planned and the targets it finds, and the
promotion report's plain verdict over many shadow runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from service.config import Settings
from service.playbooks.playbook import Playbook
from service.rails.governance import Governance
from service.rails.governor_state import Limits
from service.replay.promotion import promotion
from service.runs.shadow import judge
from service.runs.state import RunState, RunStatus, StepRecord
from service.vocabulary.modes import Mode, effective_mode
from service.vocabulary.shadow import ShadowVerdict, ShadowWatch
from tests.support.requeue import requeue

T0 = datetime(2026, 11, 2, tzinfo=UTC)
PLAYBOOK = requeue({"cooldown": "10m"})


def state(targets: list[str] | None, status: RunStatus = "succeeded") -> RunState:
    write = StepRecord(
        id="poke",
        phase="act",
        action="http.request",
        effect="write",
        connection="svc",
        status="dry_run" if targets is not None else "skipped",
        targets=targets or [],
    )
    return RunState(
        run_id="requeue/ab/1",
        playbook="requeue",
        alertname="JobsStuck",
        fingerprint="ab",
        labels={"alertname": "JobsStuck", "queue": "q1"},
        mode=Mode.SHADOW,
        status=status,
        steps=[write],
    )


def test_targets_someone_else_changed_mean_a_human_acted() -> None:
    """A planned target gone when it looked again: someone acted, whether or not the alert cleared meanwhile."""
    watch = judge({"poke": ["pod-a", "pod-b"]}, state(["pod-b"]), "passed", 42.0, 42.0)
    assert watch.verdict == "human_acted" and watch.changed == ["pod-a"]
    assert "1 planned target(s) changed by someone else (pod-a); the alert cleared after 42s" in watch.summary
    gone = judge({"poke": ["pod-a"]}, state(None), "passed", None, 600.0)
    assert gone.verdict == "human_acted" and gone.changed == ["poke (no longer needed)"]


def test_an_alert_that_cleared_with_its_targets_untouched_cleared_without_action() -> None:
    """The same targets still planned: the alert went away by itself, or is still firing after the watch."""
    assert judge({"poke": ["q1"]}, state(["q1"]), "failed", 30.0, 30.0).verdict == "cleared_without_action"
    assert judge({"poke": ["q1"]}, state(["q1"]), "failed", None, 600.0).verdict == "still_firing"
    assert judge({}, None, "not_run", None, 0.0).verdict == "nothing_planned"
    assert judge({"poke": ["q1"]}, state(["q1"], "failed"), "not_run", None, 600.0).verdict == "unknown"


def _runs(verdicts: list[ShadowVerdict], apart: timedelta, status: RunStatus = "succeeded") -> list[RunState]:
    runs = []
    for i, verdict in enumerate(verdicts):
        at = T0 + i * apart
        run = state(["q1"], status).model_copy(
            update={
                "run_id": f"requeue/{i:04x}/{int(at.timestamp())}",
                "fingerprint": f"{i:04x}",
                "started_at": at,
                "shadow": ShadowWatch(verdict=verdict, cleared_after=60.0 if verdict != "still_firing" else None),
            }
        )
        runs.append(run)
    return runs


def _many(verdict: ShadowVerdict, times: int) -> list[ShadowVerdict]:
    return [verdict] * times


def _report(runs: list[RunState]) -> tuple[str, list[str], bool]:
    def governance(p: Playbook) -> Governance:
        return Governance(limits=p.limits.over(Limits()), cooldown_key=p.limits.cooldown_key)

    found = asyncio.run(promotion(PLAYBOOK, governance, runs, T0))
    return found.verdict, found.reasons, found.ready


def test_the_promotion_verdict_says_ready_only_on_enough_runs_that_needed_the_fix() -> None:
    """Twelve shadow runs half an hour apart, eight cleared only after a human acted: ready for approve mode, with
    the reasons; with too few runs, runs that cleared by themselves, or a run that could not plan, it says why not."""
    verdicts = _many("human_acted", 8) + _many("cleared_without_action", 2) + _many("still_firing", 2)
    ready = _runs(verdicts, timedelta(minutes=30))
    verdict, reasons, ok = _report(ready)
    assert ok and verdict == "ready for approve mode: 12 runs, 0 over cap, 8 cleared only after a human acted"
    assert "limits that would have tripped in auto: none" in reasons
    assert _report(ready[:3])[0] == "not enough evidence yet: 3 run(s) planned a write, 10 are needed"
    alone_verdicts = _many("cleared_without_action", 9) + _many("human_acted", 3)
    alone = _runs(alone_verdicts, timedelta(minutes=30))
    assert _report(alone)[0].startswith("not worth acting on yet: 9 of 12 cleared without action")
    broken = ready + _runs(_many("unknown", 1), timedelta(0), status="failed")
    assert _report(broken)[0].startswith("not ready: 1 shadow run(s) could not plan")


def test_the_promotion_report_replays_the_rails_over_the_shadow_runs() -> None:
    """Twelve runs a minute apart on one queue, with a 10m cooldown: in auto the runs at minutes 0 and 10 write and
    the other ten are refused, which the report names (and still calls ready: a limit refusing is the rail working)."""
    verdict, reasons, ok = _report(_runs(_many("human_acted", 12), timedelta(minutes=1)))
    assert "limits that would have tripped in auto: cooldown 10" in reasons
    assert ok and verdict.endswith("10 would have been refused by a limit")


def test_shadow_sits_between_dry_run_and_approve_on_the_ladder() -> None:
    """REMEDIATE_MODE=shadow is a ceiling like any other, and a playbook's `mode: shadow` lowers approve or auto to
    it; shadow, like dry-run, plans only."""
    assert Settings(mode="shadow").mode == Mode.SHADOW
    assert effective_mode(Mode.AUTO, Mode.SHADOW) == Mode.SHADOW == effective_mode(Mode.SHADOW, Mode.AUTO)
    assert effective_mode(Mode.SHADOW, Mode.DRY_RUN) == Mode.DRY_RUN
    assert [m for m in Mode if m.plans_only] == [Mode.DRY_RUN, Mode.SHADOW]
