"""KillSwitchWorkflow: the switch board, durable and shared; a flip is one small Update no ask waits in front of."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from service.governance import SwitchChange
    from service.kill_switch import SwitchBoard

CONTINUE_AFTER = 1_000  # history events; the board itself is carried over


@workflow.defn(name="KillSwitchWorkflow")
class KillSwitchWorkflow:
    """Holds the board. Workers read it by query (no history), every flip is an Update (answered in order)."""

    @workflow.init
    def __init__(self, board: SwitchBoard | None = None) -> None:
        self._board = board.model_copy(deep=True) if board else SwitchBoard()

    @workflow.run
    async def run(self, board: SwitchBoard | None = None) -> None:
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested()
                or workflow.info().get_current_history_length() >= CONTINUE_AFTER
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(args=[self._board])

    @workflow.update
    def flip(self, change: SwitchChange) -> SwitchBoard:
        self._board = self._board.flipped(change, workflow.now())
        return self._board

    @workflow.query
    def board(self) -> SwitchBoard:
        return self._board
