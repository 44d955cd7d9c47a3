"""The promotion report: a playbook's shadow runs as evidence, the rails replayed over them, and a plain verdict."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from service.alerts.webhook import WebhookMessage, recorded_alert
from service.playbooks.playbook import Playbook
from service.rails.governance import Governance
from service.replay.events import Assumptions
from service.replay.history import Delivered
from service.replay.planning import CapsPlanner, Plan
from service.replay.runner import Replay
from service.replay.tally import PlaybookReport, ReplayReport
from service.runs.shadow import planned_targets
from service.runs.state import RunInput, RunState
from service.vocabulary.modes import Mode
from service.vocabulary.shadow import SHADOW_VERDICTS

ENOUGH = 10  # shadow runs that planned a write before a verdict other than "not enough evidence"


class Promotion(BaseModel):
    """What the shadow runs show, and whether they make the case for approve mode."""

    playbook: str
    since: datetime
    shadow_runs: int = 0
    planned: int = Field(default=0, description="Shadow runs whose plan held a write.")
    verdicts: dict[str, int] = Field(default_factory=dict, description="What each watch saw, by verdict.")
    failed: int = Field(default=0, description="Shadow runs that could not plan (a read failed, a cap refused).")
    failures: list[str] = Field(default_factory=list, description="The first few reasons.")
    targets_most: int = 0
    targets_median: float = 0.0
    cleared_median_seconds: float | None = None
    rails: PlaybookReport | None = Field(default=None, description="The rails replayed over these runs in auto.")
    ready: bool = False
    verdict: str = ""
    reasons: list[str] = Field(default_factory=list)


class _Observed:
    """Replays each shadow run with the writes it really planned (its cooldown key rendered as the run would)."""

    def __init__(self, plans: dict[str, Plan]) -> None:
        self.plans, self.caps = plans, CapsPlanner()

    async def plan(self, start: RunInput) -> Plan:
        seen = self.plans.get(start.run_id)
        if seen is None:
            return Plan(key="", failed="no shadow run recorded")
        rendered = await self.caps.plan(start)
        return Plan(key=rendered.key, writes=seen.writes, targets=seen.targets, failed=rendered.failed)


async def _stream(items: list[Delivered]) -> AsyncIterator[Delivered]:
    for item in items:
        yield item


def _history(states: Sequence[RunState]) -> list[Delivered]:
    """Each shadow run's alert as it arrived, and its resolve when the watch saw one (for the breaker)."""
    changes: list[Delivered] = []
    for state in states:
        if state.started_at is None:
            continue
        alert = recorded_alert(state.run_id, state.labels)
        changes.append(Delivered(state.started_at, WebhookMessage(version="4", status="firing", alerts=[alert])))
        cleared = state.shadow.cleared_after if state.shadow else None
        if cleared is not None:
            at = state.started_at + timedelta(seconds=cleared)
            resolved = alert.model_copy(update={"status": "resolved", "endsAt": at})
            changes.append(Delivered(at, WebhookMessage(version="4", status="resolved", alerts=[resolved])))
    return sorted(changes, key=lambda d: d.at)


async def _rails(
    playbook: Playbook, governance: Callable[[Playbook], Governance], states: Sequence[RunState], plans: dict[str, Plan]
) -> PlaybookReport | None:
    heading = ReplayReport(source="shadow runs", mode="auto", reads="recorded", acting_for_seconds=60)
    replay = Replay([playbook], governance, _Observed(plans), Assumptions(mode=Mode.AUTO), heading)

    report = await replay.messages(_stream(_history(states)))
    return next((p for p in report.playbooks if p.name == playbook.name), None)


async def promotion(
    playbook: Playbook,
    governance: Callable[[Playbook], Governance],
    states: Sequence[RunState],
    since: datetime,
) -> Promotion:
    """The evidence from `states` (this playbook's runs since `since`, any order) and the verdict it supports."""
    shadow = sorted((s for s in states if s.mode == Mode.SHADOW), key=lambda s: s.started_at or since)
    verdicts = Counter(SHADOW_VERDICTS[s.shadow.verdict] for s in shadow if s.shadow is not None)
    failed = [s for s in shadow if s.status == "failed"]
    writes = {s.run_id: planned_targets(s) for s in shadow}
    planned = [s for s in shadow if writes[s.run_id]]
    plans = {
        s.run_id: Plan(key="", writes=len(writes[s.run_id]), targets=sum(map(len, writes[s.run_id].values())))
        for s in planned
    }
    sizes = [plans[s.run_id].targets for s in planned]
    cleared = [s.shadow.cleared_after for s in shadow if s.shadow and s.shadow.cleared_after is not None]
    found = Promotion(
        playbook=playbook.name,
        since=since,
        shadow_runs=len(shadow),
        planned=len(planned),
        verdicts=dict(verdicts),
        failed=len(failed),
        failures=[f"{s.run_id}: {s.reason}" for s in failed[:3]],
        targets_most=max(sizes, default=0),
        targets_median=statistics.median(sizes) if sizes else 0.0,
        cleared_median_seconds=statistics.median(cleared) if cleared else None,
        rails=await _rails(playbook, governance, planned, plans) if planned else None,
    )
    return _judged(found)


def _judged(p: Promotion) -> Promotion:
    human = p.verdicts.get(SHADOW_VERDICTS["human_acted"], 0)
    alone = p.verdicts.get(SHADOW_VERDICTS["cleared_without_action"], 0)
    firing = p.verdicts.get(SHADOW_VERDICTS["still_firing"], 0)
    refused = sum(p.rails.refusals.values()) if p.rails else 0
    reasons = [
        f"{p.shadow_runs} shadow run(s) since {p.since:%Y-%m-%d %H:%M} UTC, {p.planned} planned a write "
        f"(at most {p.targets_most} target(s), median {p.targets_median:g})",
        f"{human} cleared only after a human changed the same targets; {alone} cleared without action; "
        f"{firing} still fired after effective_within with the targets unchanged",
    ]
    if p.rails is not None:
        trips = {**p.rails.refusals, **({"storm": p.rails.storms} if p.rails.storms else {})}
        if p.rails.breaker_trips:
            trips["breaker"] = p.rails.breaker_trips
        shown = ", ".join(f"{k} {v}" for k, v in sorted(trips.items())) or "none"
        reasons.append(f"limits that would have tripped in auto: {shown}")
    if p.failed:
        verdict, ready = f"not ready: {p.failed} shadow run(s) could not plan (over a cap, or a read failed)", False
        reasons.extend(p.failures)
    elif p.planned < ENOUGH:
        verdict, ready = f"not enough evidence yet: {p.planned} run(s) planned a write, {ENOUGH} are needed", False
    elif alone * 2 > p.planned:
        verdict, ready = (
            f"not worth acting on yet: {alone} of {p.planned} cleared without action; keep it in shadow or make the "
            "alert wait longer (`for:`)",
            False,
        )
    else:
        verdict = f"ready for approve mode: {p.planned} runs, 0 over cap, {human} cleared only after a human acted"
        if refused:
            verdict += f", {refused} would have been refused by a limit"
        ready = True
    return p.model_copy(update={"verdict": verdict, "ready": ready, "reasons": reasons})
