"""KillSwitchWorkflow: the switch board, durable and shared; a flip is one small Update no ask waits in front of."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from service.rails.governance import SwitchChange
    from service.rails.kill_switch import CONFIRM_WITHIN, LIVE_FOR, Seen, Sighting, SwitchBoard

CONTINUE_AFTER = 1_000  # history events; the board and the workers it has heard from are carried over
WAITS_FOR_WORKERS = "flip-waits-for-workers"  # flips before this change returned at once (replay of old histories)


@workflow.defn(name="KillSwitchWorkflow")
class KillSwitchWorkflow:
    """Holds the board. Workers read it by query (no history), every flip is an Update (answered in order)."""

    @workflow.init
    def __init__(self, board: SwitchBoard | None = None, seen: dict[str, Sighting] | None = None) -> None:
        # Validated, not trusted to be typed: a board started with one argument (before `seen`) decodes untyped.
        self._board = SwitchBoard.model_validate(board) if board else SwitchBoard()
        self._seen = {worker: Sighting.model_validate(s) for worker, s in (seen or {}).items()}

    @workflow.run
    async def run(self, board: SwitchBoard | None = None, seen: dict[str, Sighting] | None = None) -> None:
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested()
                or workflow.info().get_current_history_length() >= CONTINUE_AFTER
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(args=[self._board, self._live(workflow.now())])

    def _live(self, now: datetime) -> dict[str, Sighting]:
        return {w: s for w, s in self._seen.items() if now - s.at < LIVE_FOR}

    @workflow.update
    async def flip(self, change: SwitchChange) -> SwitchBoard:
        """Turning a switch on answers once every worker heard from lately has seen it (usually a fraction of a
        second), or after CONFIRM_WITHIN, when a worker that has not seen it no longer trusts its older view."""
        self._board = board = self._board.flipped(change, workflow.now())
        if change.on and workflow.patched(WAITS_FOR_WORKERS):
            try:
                await workflow.wait_condition(
                    lambda: all(s.version >= board.version for s in self._live(workflow.now()).values()),
                    timeout=timedelta(seconds=CONFIRM_WITHIN),
                )
            except TimeoutError:
                workflow.logger.info("kill switch version %d: not every worker confirmed it", board.version)
        return self._board

    @workflow.update
    def seen(self, seen: Seen) -> None:
        """A worker holds this version already (it says so after adopting it, never before): noted, for flips."""
        self._seen[seen.worker] = Sighting(version=seen.version, at=workflow.now())

    @workflow.query
    def board(self) -> SwitchBoard:
        return self._board
