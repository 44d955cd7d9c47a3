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

from service.rails.governance import GovernorView, Switch, SwitchChange
from service.web.console_pages import Pages
from service.web.rail_routes import Switching
from service.web.sessions import Session

log = logging.getLogger("remediate.web")


class Rails(Switching, Protocol):
    """The governor as the rails page reads and changes it."""

    async def view(self, playbook: str) -> GovernorView: ...

    async def reset_breaker(self, playbook: str) -> None: ...


def rail_console_routes(governor: Rails, pages: Pages, playbooks: Callable[[], frozenset[str]]) -> list[Route]:
    """GET /ui/rails shows every switch and breaker; POST flips a switch (a reason typed, the flip confirmed) or
    resets a breaker (confirmed)."""

    async def rails(request: Request, session: Session) -> Response:
        board, names = await governor.board(), sorted(playbooks())
        switches = [("", "Everything", board.everything)]
        switches += [(name, name, board.playbooks.get(name, Switch())) for name in names]
        views = [(name, await governor.view(name)) for name in names]
        breakers = [(name, v.state.playbooks[name]) for name, v in views if name in v.state.playbooks]
        said = request.query_params.get("said", "")
        return pages.page("rails.html", session=session, switches=switches, breakers=breakers, said=said)

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
