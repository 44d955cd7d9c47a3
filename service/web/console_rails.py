"""The console's rails page: the kill switch for everything and for each playbook, flipped under your own name."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.rails.governance import Switch, SwitchChange
from service.web.console_pages import Pages
from service.web.rail_routes import Switching
from service.web.sessions import Session


def rail_console_routes(governor: Switching, pages: Pages, playbooks: Callable[[], frozenset[str]]) -> list[Route]:
    """GET /ui/rails shows every switch; POST flips one, with a reason typed and the flip confirmed."""

    async def rails(request: Request, session: Session) -> Response:
        board = await governor.board()
        switches = [("", "Everything", board.everything)]
        switches += [(name, name, board.playbooks.get(name, Switch())) for name in sorted(playbooks())]
        return pages.page("rails.html", session=session, switches=switches, said=request.query_params.get("said", ""))

    async def flip(request: Request, session: Session, fields: dict[str, str]) -> Response:
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
    ]
