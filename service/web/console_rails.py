"""The console's rails page: the kill switch for everything and for each playbook, flipped under your own name, and
each playbook's breaker (its streak of ineffective runs) with a reset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.rails.governance import Governance, GovernorView, Switch, SwitchChange
from service.vocabulary.durations import written
from service.web.console_pages import Pages
from service.web.rail_routes import Switching
from service.web.sessions import Session

log = logging.getLogger("remediate.web")


class Rails(Switching, Protocol):
    """The governor as the rails page reads and changes it."""

    async def view(self, playbook: str) -> GovernorView: ...

    async def reset_breaker(self, playbook: str) -> None: ...


def limit_lines(terms: Governance) -> list[str]:
    """The rails one playbook's runs carry (its own limits over the service defaults), each as a sentence."""
    limits, lines = terms.limits, list[str]()
    if limits.cooldown:
        each = "value of its cooldown key" if terms.cooldown_key else "alert (by its fingerprint)"
        lines.append(f"one run per {written(limits.cooldown)} for each {each}")
    if limits.max_runs_per_hour:
        lines.append(f"at most {limits.max_runs_per_hour} runs that write an hour")
    if limits.max_concurrent:
        lines.append(f"at most {limits.max_concurrent} writing at once")
    if limits.max_runs_per_hour or limits.max_concurrent:
        wait = f"wait at most {written(limits.wait_at_most)} for a turn" if limits.wait_at_most else "wait for a turn"
        lines.append(f"over a limit: {wait if limits.waits() else 'refuse'}")
    if limits.storm:
        storm = limits.storm
        lines.append(f"storm: over {storm.occurrences} new alerts in {written(storm.within)}, writes need approval")
    if limits.breaker:
        lines.append(f"breaker: after {limits.breaker.ineffective} ineffective runs in a row, writes need approval")
    if terms.alertmanager:
        lines.append(f"effective if the alert stops firing within {written(terms.effective_within)}")
    if terms.silence:
        lines.append("silences its alert while it acts")
    if terms.max_writes_per_hour:
        lines.append(f"service-wide: at most {terms.max_writes_per_hour} writes an hour")
    return lines or ["no limits: only the kill switch and approvals stand before its writes"]


def rail_console_routes(governor: Rails, pages: Pages, playbooks: Callable[[], dict[str, Governance]]) -> list[Route]:
    """GET /ui/rails shows every switch, breaker and playbook's limits; POST flips a switch (a reason typed, the flip
    confirmed) or resets a breaker (confirmed)."""

    async def rails(request: Request, session: Session) -> Response:
        board, terms = await governor.board(), playbooks()
        names = sorted(terms)
        switches = [("", "Everything", board.everything)]
        switches += [(name, name, board.playbooks.get(name, Switch())) for name in names]
        views = [(name, await governor.view(name)) for name in names]
        breakers = [(name, v.state.playbooks[name]) for name, v in views if name in v.state.playbooks]
        limits = [(name, limit_lines(terms[name])) for name in names]
        said = request.query_params.get("said", "")
        return pages.page("rails.html", session=session, switches=switches, breakers=breakers, limits=limits, said=said)

    async def reset(request: Request, session: Session, fields: dict[str, str]) -> Response:
        if session.viewer:
            return pages.refuse(403, "A viewer cannot reset a breaker; sign in with an approver token.", session)
        name = fields.get("playbook", "")
        if name not in playbooks() or fields.get("confirm") != "yes":
            return pages.refuse(400, "Reset the breaker of a loaded playbook, and tick the confirmation.", session)
        await governor.reset_breaker(name)
        log.warning("breaker of %s reset by %s from the console", name, session.identity)
        return pages.go(f"/ui/rails?said={quote(f'the breaker of {name} is reset')}")

    async def flip(request: Request, session: Session, fields: dict[str, str]) -> Response:
        if session.viewer:
            return pages.refuse(403, "A viewer cannot flip a switch; sign in with an approver token.", session)
        target, reason = fields.get("playbook") or None, fields.get("reason", "").strip()
        if fields.get("on") not in ("on", "off") or (target is not None and target not in playbooks()):
            return pages.refuse(400, "Flip the switch of everything or of a loaded playbook, on or off.", session)
        if not reason or fields.get("confirm") != "yes":
            return pages.refuse(
                400, "Type the reason and tick the confirmation: a switch is flipped on purpose.", session
            )
        change = SwitchChange(on=fields["on"] == "on", by=session.identity, reason=reason[:1000], playbook=target)
        await governor.set_switch(change)
        said = f"the kill switch for {target or 'everything'} is {fields['on']}"
        return pages.go(f"/ui/rails?said={quote(said)}")

    return [
        Route("/ui/rails", pages.signed_in(rails), methods=["GET"]),
        Route("/ui/rails/kill-switch", pages.posted(flip), methods=["POST"]),
        Route("/ui/rails/breaker", pages.posted(reset), methods=["POST"]),
    ]
