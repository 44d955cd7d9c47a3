"""One replay from start to report: alert changes through Alertmanager's routing, or messages as received."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from datetime import datetime

from service.alerts.webhook import Alert
from service.playbooks.playbook import Playbook
from service.rails.governance import Governance
from service.replay.events import Assumptions
from service.replay.history import Delivered
from service.replay.planning import Planner
from service.replay.routing import Dispatcher
from service.replay.simulation import Simulation
from service.replay.tally import ReplayReport, Tally


class Replay:
    """The playbooks, their rails and a planner, ready to take one history."""

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        governance: Callable[[Playbook], Governance],
        planner: Planner,
        assumptions: Assumptions,
        heading: ReplayReport,
    ) -> None:
        self.playbooks = list(playbooks)
        runbooks: dict[str, list[str]] = {}
        for p in playbooks:
            if p.runbook:
                runbooks.setdefault(p.runbook, []).append(p.name)
        self.tally = Tally([p.name for p in playbooks], heading, runbooks)
        self.simulation = Simulation(playbooks, governance, planner, self.tally, assumptions)

    async def messages(self, history: AsyncIterable[Delivered], end: datetime | None = None) -> ReplayReport:
        """Webhook messages as the receiver got them."""
        last = None
        async for delivered in history:
            await self.simulation.feed(delivered)
            last = delivered.at
        return self._end(end or last)

    async def changes(
        self, history: AsyncIterable[tuple[datetime, Alert]], dispatcher: Dispatcher, end: datetime | None = None
    ) -> ReplayReport:
        """Alerts starting and resolving, grouped into messages as Alertmanager's route would have sent them."""
        last = None
        async for at, alert in history:
            for delivered in dispatcher.due(at):
                await self.simulation.feed(delivered)
            if not dispatcher.add(alert, at) and alert.status == "firing":
                self.tally.not_routed([p.name for p in self.playbooks if p.match.matches(alert)])
            last = at
        until = end or last
        if until is not None:
            for delivered in dispatcher.due(until):
                await self.simulation.feed(delivered)
        return self._end(until)

    def _end(self, at: datetime | None) -> ReplayReport:
        if at is not None:
            self.simulation.finish(at)
        return self.tally.report()
