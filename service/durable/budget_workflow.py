"""BudgetWorkflow: the keeper of the global hourly budget, lending it to workers in blocks (service/rails/budget.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from service.rails.budget import Budget, BudgetState, Loan, Settlement

CONTINUE_AFTER = 2_000  # history events, as the governor's shards


class Borrow(BaseModel):
    """One purse's round trip: settle what it hands back, and (want > 0) borrow a new block."""

    holder: str
    block_id: str = ""
    want: int = 0
    cap: int = 0
    settle: list[Settlement] = Field(default_factory=list)


@workflow.defn(name="BudgetWorkflow")
class BudgetWorkflow:
    """Holds one Budget; every change is one `borrow` Update, answered in order."""

    @workflow.init
    def __init__(self, carried: BudgetState | None = None, continue_after: int = CONTINUE_AFTER) -> None:
        self._budget = Budget(carried.model_copy(deep=True) if carried else None)
        self._continue_after = continue_after

    @workflow.run
    async def run(self, carried: BudgetState | None = None, continue_after: int = CONTINUE_AFTER) -> None:
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested()
                or workflow.info().get_current_history_length() >= self._continue_after
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)  # no accepted Update is lost to the new run
        workflow.continue_as_new(args=[self._budget.state, self._continue_after])

    @workflow.update
    def borrow(self, call: Borrow) -> Loan:
        now = workflow.now()
        for settlement in call.settle:
            self._budget.settle(settlement, now)
        return self._budget.lend(call.holder, call.block_id, call.want, call.cap, now)

    @workflow.query
    def state(self) -> BudgetState:
        return self._budget.state
