"""History on a virtual clock: the service's own receiver and governor rules, each run's asks as it makes them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

from service.alerts.webhook import run_id
from service.playbooks.playbook import Playbook
from service.playbooks.shelf import SHELF
from service.rails.exchange import decide, keep, occurred
from service.rails.governance import Ask, Governance, Occurrence, Release, Report
from service.rails.governor import Governor
from service.rails.governor_state import HOUR, WAIT_AT_MOST, Answer
from service.replay.events import FORGET_AFTER, KEEP_ALIVE, MIN_STEP, Assumptions, EventKind, RunInFlight, Timeline
from service.replay.history import Delivered
from service.replay.planning import Planner
from service.replay.tally import RunResult, Tally
from service.runs.delivery import Delivery
from service.runs.intake import Receiver, SeenRuns
from service.runs.state import RunInput
from service.vocabulary.modes import Mode


class Simulation:
    """Feeds delivered messages through the receiver; every rail is decided by the governor's own code path."""

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        governance: Callable[[Playbook], Governance],
        planner: Planner,
        tally: Tally,
        assumptions: Assumptions,
    ) -> None:
        # Each playbook is played in the replay's mode: the question is what it would do if promoted (off stays off).
        played = [p if p.mode == Mode.OFF else p.model_copy(update={"mode": None}) for p in playbooks]
        self.playbooks, self.planner, self.tally, self.assumptions = played, planner, tally, assumptions
        self.now = datetime.fromtimestamp(0, UTC)
        self.governor = Governor()
        self.receiver = Receiver(
            played,
            self,
            assumptions.mode,
            SeenRuns(10_000, clock=self._seconds),
            governance=governance,
            clock=self._seconds,
        )
        self._timeline = Timeline()
        self._runs: dict[str, RunInFlight] = {}  # open, or waiting to learn whether their write worked
        self._known: dict[str, datetime] = {}  # run ids started: a later delivery of one is a duplicate
        self._ends: dict[str, datetime] = {}  # run id -> when its alert really resolved (its endsAt)
        self._keyed: dict[tuple[str, str], set[str]] = {}  # (playbook, cooldown key) -> runs waiting with it
        self._spent: deque[datetime] = deque()  # write-runs counted against the global hourly budget
        self._forgotten_at = self.now

    def _seconds(self) -> float:
        return self.now.timestamp()

    def _at(self, at: datetime, kind: EventKind, run: str) -> None:
        self._timeline.at(at, kind, run)

    def advance(self, until: datetime) -> None:
        """Everything the clock reaches up to `until`: asks again, ends, effectiveness checks."""
        for event in self._timeline.until(until):
            self.now = max(self.now, event.at)
            run = self._runs.get(event.run_id)
            if run is None:
                continue
            if event.kind == "ask" and run.waiting:
                self._ask(run)
            elif event.kind == "stay" and run.waiting and run.stay == event.at:
                self._stay(run)
            elif event.kind == "end" and not run.ended:
                self._end(run)
            elif event.kind == "check":
                self._report(run, "effective" if self._cleared(event.run_id, event.at) else "ineffective")
        self.now = max(self.now, until)
        if self.now - self._forgotten_at > HOUR:  # memory stays bounded however long the history
            self._forgotten_at = self.now
            self._known = {k: t for k, t in self._known.items() if self.now - t < FORGET_AFTER}
            self._ends = {k: t for k, t in self._ends.items() if k in self._runs}

    def _cleared(self, rid: str, by: datetime) -> bool:
        """Whether the occurrence had really resolved by then (its endsAt, known before its message arrives)."""
        ended = self._ends.get(rid)
        return ended is not None and ended <= by

    async def feed(self, delivered: Delivered) -> None:
        """One message, received at its time."""
        self.tally.message(delivered.at)
        for alert in delivered.message.alerts:
            for p in self.playbooks:  # real resolve times first: a check due before this message uses them
                if p.match.closes(alert):
                    self._ends[run_id(p.name, alert)] = alert.endsAt or delivered.at
            names = [p.name for p in self.playbooks if p.match.matches(alert)]
            self.tally.matched(alert, names)
            for name in names:
                if run_id(name, alert) in self._known:
                    self.tally.duplicate(name)
        self.advance(delivered.at)
        await self.receiver.receive(delivered.message)

    async def deliver(self, delivery: Delivery) -> bool:
        """The receiver's durable delivery, played at once: runs start, resolves reach open runs."""
        for start in delivery.runs():
            if start.run_id not in self._known:
                self._known[start.run_id] = self.now
                await self._start(start.resolved(SHELF))
        for resolved in delivery.resolves:
            self._resolve(resolved)
        return True

    async def _start(self, start: RunInput) -> None:
        name, limits = start.playbook.name, start.governance.limits
        self.tally.occurrence(self.now, name)
        if occurred(self.governor, Occurrence(run_id=start.run_id, playbook=name, limits=limits), self.now):
            self.tally.storm(self.now, name)
        if start.mode == Mode.OFF:
            self.tally.ran(RunResult(name, self.now, "off"))
            return
        plan = await self.planner.plan(start)
        if plan.failed or not plan.writes:
            self.tally.ran(RunResult(name, self.now, "failed" if plan.failed else "read_only", reason=plan.failed))
            return
        run = self._runs[start.run_id] = RunInFlight(start, plan, since=self.now)
        self._ask(run)

    def _question(self, run: RunInFlight) -> Ask:
        governance = run.start.governance
        unit, frees = self._purse(governance.max_writes_per_hour)
        return Ask(
            run_id=run.start.run_id,
            playbook=run.name,
            key=run.plan.key,
            limits=governance.limits,
            max_writes_per_hour=governance.max_writes_per_hour,
            since=run.since,
            unit=unit,
            budget_frees_at=frees,
        )

    def _ask(self, run: RunInFlight) -> None:
        governance, name = run.start.governance, run.name
        ask = self._question(run)
        reply, _ = decide(self.governor, ask, self.now)
        answer = reply.answer or Answer(verdict="refuse", limit="governor_unavailable")
        if answer.counted and governance.max_writes_per_hour is not None:
            self._spent.append(self.now)
        bound = run.since + (governance.limits.wait_at_most or WAIT_AT_MOST)
        if answer.verdict == "wait" and self.now < bound:
            if not run.waiting:
                self._keyed.setdefault((name, run.plan.key), set()).add(run.start.run_id)
            run.waiting, run.place = True, answer.place
            self._at(self._again(answer, bound), "ask", run.start.run_id)
            self._stay(run)
            return
        waited, run.waiting = run.waiting, False
        if answer.verdict in ("refuse", "wait"):  # over its wait_at_most, a wait is given up as a refusal
            self._finish(run, RunResult(name, run.since, "refused", limit=answer.limit, plan=run.plan), wrote=False)
            if waited:
                self._left(run)
            return
        if waited:
            self._left(run)
        if answer.counted:  # runs waiting with the same cooldown key are refused at their next ask: it is now
            for other in self._keyed.get((name, run.plan.key), set()) - {run.start.run_id}:
                self._at(self.now, "ask", other)
        run.approval = run.plan.approval or (answer.limit if answer.verdict == "approval" else "")
        self._at(self.now + self.assumptions.acting_for, "end", run.start.run_id)

    def _left(self, run: RunInFlight) -> None:
        """The run left the line: the run now first asks at once, as the turn a freed slot tells it."""
        self._unkey(run)
        if (first := self.governor.next_in_line(run.name, self.now)) is not None:
            self._at(self.now, "ask", first)

    def _unkey(self, run: RunInFlight) -> None:
        waiting = self._keyed.get((run.name, run.plan.key))
        if waiting is not None:
            waiting.discard(run.start.run_id)
            if not waiting:
                del self._keyed[(run.name, run.plan.key)]

    def _again(self, answer: Answer, bound: datetime) -> datetime:
        """When a waiting run asks again. Live, it polls every few seconds (poll_every); here it asks only when its
        answer can change: the run first in line when its slot frees, any run when its turn is told (a slot freed,
        or the run ahead left the line), when a run with its cooldown key writes, and at its wait_at_most. Between
        those asks its place is kept as a poll keeps it (`stay`). The answers are the governor's own; only the
        polling delay is left out."""
        again = bound
        if answer.place == 1 and answer.frees_at is not None:
            again = min(again, answer.frees_at)
        return max(again, self.now + MIN_STEP)

    def _stay(self, run: RunInFlight) -> None:
        """A poll that cannot change the answer: the run keeps its place until its next ask (the latest one
        scheduled counts; an ask meanwhile pushes it back)."""
        if keep(self.governor, self._question(run), self.now):
            run.stay = self.now + KEEP_ALIVE
            self._at(run.stay, "stay", run.start.run_id)

    def _purse(self, budget: int | None) -> tuple[datetime | bool | None, datetime | None]:
        """The global hourly budget as one worker's purse would hold it: a unit while it lasts."""
        if budget is None:
            return None, None
        while self._spent and self.now - self._spent[0] >= HOUR:
            self._spent.popleft()
        if len(self._spent) < budget:
            return self.now + HOUR, None
        return False, self._spent[0] + HOUR

    def _end(self, run: RunInFlight) -> None:
        run.wrote_at = self.now
        result = RunResult(run.name, run.since, "acted", approval=run.approval, plan=run.plan)
        self._finish(run, result, wrote=True)
        self._effect(run)

    def _finish(self, run: RunInFlight, result: RunResult, wrote: bool) -> None:
        run.ended = True
        result.waited = (self.now - run.since).total_seconds() if result.outcome != "acted" else 0.0
        self.tally.ran(result)
        reply, _ = decide(self.governor, Release(run_id=run.start.run_id, wrote=wrote, playbook=run.name), self.now)
        for turn in reply.turns:  # the run next in line asks now, as its `turn` signal makes it
            self._at(self.now, "ask", turn)
        if not wrote:
            del self._runs[run.start.run_id]

    def _effect(self, run: RunInFlight) -> None:
        """After a write: effective once the alert resolves within effective_within, else ineffective."""
        rid = run.start.run_id
        if not self.assumptions.resolves_known:  # a history without resolves cannot say: the breaker is not fed
            self._report(run, "unknown")
        elif self._cleared(rid, self.now):
            self._report(run, "effective")
        else:
            self._at(self.now + run.start.governance.effective_within, "check", rid)

    def _report(self, run: RunInFlight, result: Literal["effective", "ineffective", "unknown"]) -> None:
        rid = run.start.run_id
        if self._runs.pop(rid, None) is None:
            return
        report = Report(run_id=rid, playbook=run.name, result=result, limits=run.start.governance.limits)
        _, announcement = decide(self.governor, report, self.now)
        if announcement:
            self.tally.breaker(self.now, run.name)

    def _resolve(self, rid: str) -> None:
        self._ends.setdefault(rid, self.now)
        run = self._runs.get(rid)
        if run is None:
            return
        if run.waiting and run.start.playbook.stop_when_resolved:
            run.waiting = False
            result = RunResult(run.name, run.since, "resolved_while_waiting", plan=run.plan)
            self._finish(run, result, wrote=False)
            self._left(run)
        elif run.wrote_at is not None:
            self._report(run, "effective")

    def finish(self, at: datetime) -> None:
        """The end of the history: what is still open is counted as it stands."""
        self.advance(at)
        for run in list(self._runs.values()):
            if run.waiting:
                self._unkey(run)
                self._finish(run, RunResult(run.name, run.since, "still_waiting", plan=run.plan), wrote=False)
            elif run.wrote_at is None:
                self._end(run)
        self.tally.close(at)
