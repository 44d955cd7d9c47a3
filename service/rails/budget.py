"""The global hourly budget (REMEDIATE_MAX_WRITES_PER_HOUR), lent to workers in leased blocks: pure rules.

The budget's keeper (a workflow) lends a worker a block of units for a short lease; the worker's purse spends them
on its runs' first grants with no round trip, and settles the block (the uses it made, by run) when it runs out,
idles or nears its end. A block never settled (its worker died) counts in full, as used at its end: nothing a dead
worker might have written is ever forgotten, so the cap is never exceeded; the price is budget idle for an hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

HOUR = timedelta(hours=1)
BLOCK_FOR = timedelta(seconds=30)  # a block's lease: what a killed worker can keep from the others
SPEND_MARGIN = timedelta(seconds=5)  # a purse stops spending a block this long before its end (clock skew, a slow ask)


class Block(BaseModel):
    """Units lent to one worker until `until`; `uses` are what it spent them on (run id -> when)."""

    id: str
    holder: str
    size: int
    until: datetime
    uses: dict[str, datetime] = Field(default_factory=dict)


class Loan(BaseModel):
    """The keeper's answer to a purse: a block (size 0 when the budget is spent) and when a unit next frees."""

    block: Block
    frees_at: datetime | None = None


class Settlement(BaseModel):
    """A block handed back: the uses it made. Refunds name runs that wrote nothing after all."""

    block_id: str = ""
    uses: dict[str, datetime] = Field(default_factory=dict)
    refunds: list[str] = Field(default_factory=list)


class BudgetState(BaseModel):
    """Uses settled within the last hour and blocks still out: plain data, carried across continue-as-new."""

    uses: dict[str, datetime] = Field(default_factory=dict)
    blocks: dict[str, Block] = Field(default_factory=dict)


class Budget:
    """The keeper's rules; every method takes `now` and changes only `state`."""

    def __init__(self, state: BudgetState | None = None) -> None:
        self.state = state or BudgetState()

    def _expire(self, now: datetime) -> None:
        for block in [b for b in self.state.blocks.values() if b.until <= now]:
            # Never settled: its worker may have spent every unit, at any time up to the end.
            del self.state.blocks[block.id]
            self.state.uses.update({f"{block.id}#{i}": block.until for i in range(block.size)})
        self.state.uses = {run: at for run, at in self.state.uses.items() if now - HOUR < at}

    def spent(self, now: datetime) -> int:
        """Units that count against the cap now: settled uses in the last hour plus every block still out."""
        self._expire(now)
        return len(self.state.uses) + sum(b.size for b in self.state.blocks.values())

    def lend(self, holder: str, block_id: str, want: int, cap: int, now: datetime) -> Loan:
        """A block of at most `want` units and at most half of what the cap leaves (rounded up), so other workers
        find budget too; size 0 says when the next unit frees."""
        free = max(cap - self.spent(now), 0)
        size = min(max(want, 0), -(-free // 2))
        block = Block(id=block_id, holder=holder, size=size, until=now + BLOCK_FOR)
        if size:
            self.state.blocks[block_id] = block
            return Loan(block=block)
        ends = [b.until for b in self.state.blocks.values()] + [at + HOUR for at in self.state.uses.values()]
        return Loan(block=block, frees_at=min(ends, default=now))

    def settle(self, settlement: Settlement, now: datetime) -> None:
        """A block comes back: only its uses count from now on. A block already expired stays counted in full."""
        block = self.state.blocks.pop(settlement.block_id, None)
        if block is not None:
            # A block never spends more than its size; a use's time is when its worker heard the grant, never
            # earlier than the grant itself, so the hour it counts for ends no sooner than it should.
            self.state.uses.update(dict(list(settlement.uses.items())[: block.size]))
        for run in settlement.refunds:
            self.state.uses.pop(run, None)
        self._expire(now)


class Purse:
    """A worker's blocks: spends units locally, says which blocks to settle. Not thread-safe: one event loop."""

    def __init__(self) -> None:
        self.blocks: dict[str, Block] = {}
        self.reserved: dict[str, int] = {}  # block id -> units taken by asks still in flight
        self.refunds: list[str] = []  # runs whose use was already settled elsewhere

    def _free(self, block: Block, now: datetime) -> int:
        if now >= block.until - SPEND_MARGIN:
            return 0
        return block.size - len(block.uses) - self.reserved.get(block.id, 0)

    def take(self, now: datetime) -> str | None:
        """Reserve a unit for one ask; the id of the block it came from, or None when no block has one."""
        for block in self.blocks.values():
            if self._free(block, now) > 0:
                self.reserved[block.id] = self.reserved.get(block.id, 0) + 1
                return block.id
        return None

    def add(self, block: Block) -> None:
        if block.size:
            self.blocks[block.id] = block

    def spend(self, block_id: str, run_id: str, at: datetime) -> None:
        """The ask was counted: its unit is used by this run, at this time."""
        self.reserved[block_id] -= 1
        self.blocks[block_id].uses[run_id] = at

    def put_back(self, block_id: str) -> None:
        """The ask was not counted (refused, or the run was counted before): the unit is free again."""
        self.reserved[block_id] -= 1

    def refund(self, run_id: str) -> None:
        """A run that wrote nothing: its use is dropped here, or told to the keeper if this purse does not hold it."""
        for block in self.blocks.values():
            if block.uses.pop(run_id, None) is not None:
                return
        self.refunds.append(run_id)

    def due(self, now: datetime, idle: bool) -> list[Settlement]:
        """Blocks to hand back now: spent, near their end, or (when nothing waits) unused; none with asks in flight."""
        due = []
        for block in list(self.blocks.values()):
            if self.reserved.get(block.id, 0):
                continue
            if idle or self._free(block, now) <= 0:
                del self.blocks[block.id]
                self.reserved.pop(block.id, None)
                due.append(Settlement(block_id=block.id, uses=dict(block.uses)))
        if self.refunds:
            due.append(Settlement(refunds=self.refunds))
            self.refunds = []
        return due
