"""A worker's view of the kill switch: refused at once when on, trusted only while fresh, closed when unconfirmed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from service.rails.governance import SwitchChange
from service.rails.kill_switch import LIVE_FOR, SwitchBoard
from service.runs.switch_watch import SwitchWatch
from service.vocabulary.errors import TemporalUnavailable, WriteRefused

NOW = datetime(2026, 12, 5, tzinfo=UTC)


class Board:
    """The board as the watch reads it: a value, or a read that fails (Temporal away)."""

    def __init__(self) -> None:
        self.board, self.failing, self.reads = SwitchBoard(), False, 0

    async def read(self) -> SwitchBoard:
        self.reads += 1
        if self.failing:
            raise TemporalUnavailable("the kill switch did not answer")
        return self.board


async def test_a_switch_that_is_on_refuses_and_one_just_turned_off_does_not() -> None:
    """A write meets this worker's own view (no ask queues in front of it); a refusal is confirmed by one fresh read,
    so a switch turned off since the last poll refuses nothing."""
    source = Board()
    source.board = source.board.flipped(SwitchChange(on=True, by="alice", reason="incident"), NOW)
    watch = SwitchWatch(source.read, poll=10)
    refused = await watch.refusal("stuck-jobs")
    assert refused is not None and refused.limit == "kill_switch" and "set by alice: incident" in refused.reason
    source.board = source.board.flipped(SwitchChange(on=False, by="alice", reason="fixed"), NOW)
    assert await watch.refusal("stuck-jobs") is None  # the poll (every 10 s) has not seen it yet


async def test_one_playbooks_switch_leaves_the_others_writing() -> None:
    """A playbook's own switch refuses that playbook only."""
    source = Board()
    source.board = source.board.flipped(SwitchChange(on=True, by="bob", playbook="stuck-jobs"), NOW)
    watch = SwitchWatch(source.read, poll=0.01)
    refused = await watch.refusal("stuck-jobs")
    assert refused is not None and "playbook stuck-jobs" in refused.reason
    assert await watch.refusal("other") is None


async def test_an_unconfirmed_switch_makes_writes_wait_then_refuses_them() -> None:
    """A watch that cannot read the board for longer than its bound neither trusts its last view nor lets writes
    through: a write waits for a fresh answer and is refused (fail closed) when none comes."""
    source = Board()
    watch = SwitchWatch(source.read, poll=0.01, fresh_for=0.05, wait=0.2)
    assert await watch.refusal("p") is None
    source.failing = True
    await asyncio.sleep(0.1)
    refused = await watch.refusal("p")
    assert refused is not None and refused.limit == "kill_switch_unconfirmed" and "fail closed" in refused.reason


async def test_a_write_waiting_for_confirmation_goes_on_when_the_board_answers_again() -> None:
    """Busy is not down: a write waits for the next answer rather than being refused while one comes in time."""
    source = Board()
    watch = SwitchWatch(source.read, poll=0.01, fresh_for=0.05, wait=5)
    assert await watch.refusal("p") is None
    source.failing = True
    await asyncio.sleep(0.1)

    async def recover() -> None:
        await asyncio.sleep(0.1)
        source.failing = False

    recovering = asyncio.create_task(recover())
    assert await watch.refusal("p") is None
    await recovering


async def test_a_worker_trusts_its_view_only_while_its_word_to_the_board_is_recent() -> None:
    """With a board that waits for workers, a write goes through only after the worker told the board the version it
    holds (after adopting it), and each new version is told; once its words have failed for half of LIVE_FOR, its
    view is no longer trusted (a flip might not wait for it), so writes wait and are refused."""
    source, skew, said, failing, told = Board(), [0.0], list[int](), [False], asyncio.Event()

    async def seen(version: int) -> None:
        if failing[0]:
            raise TemporalUnavailable("the kill switch did not answer")
        said.append(version)
        if version == 1:
            told.set()

    watch = SwitchWatch(
        source.read, poll=0.01, fresh_for=5, wait=0.3, clock=lambda: time.monotonic() + skew[0], seen=seen
    )
    assert await watch.refusal("p") is None and said == [0]
    source.board = source.board.flipped(SwitchChange(on=True, by="alice"), NOW)
    await asyncio.wait_for(told.wait(), 5)
    assert watch.board is not None and watch.board.version == 1  # adopted before it was told
    source.board = SwitchBoard()  # an older answer (a slow query) never takes the view back
    await asyncio.sleep(0.05)
    assert watch.board.version == 1
    failing[0] = True
    skew[0] = LIVE_FOR.total_seconds() / 2  # the last word is now half of LIVE_FOR old
    refused = await watch.refusal("p")
    assert refused is not None and refused.limit == "kill_switch_unconfirmed"


async def test_the_board_hears_of_a_new_version_only_once_writes_admitted_before_it_have_returned() -> None:
    """A write admitted under version 0 and still on its way holds back the word "I hold version 1" (so a flip does
    not answer while it could still start); once it returns, the word goes out; a write the switch forbids is refused
    with WriteRefused and holds nothing back."""
    source, said, told = Board(), list[int](), asyncio.Event()

    async def seen(version: int) -> None:
        said.append(version)
        if version == 1:
            told.set()

    watch = SwitchWatch(source.read, poll=0.01, seen=seen)
    async with watch.admitted("p"):
        source.board = source.board.flipped(SwitchChange(on=True, by="alice"), NOW)
        for _ in range(500):  # until a poll has adopted version 1
            if watch.board is not None and watch.board.version == 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and a few polls more: still not told
        assert watch.board is not None and watch.board.version == 1 and said == [0]
    await asyncio.wait_for(told.wait(), 5)
    with pytest.raises(WriteRefused, match="kill switch is on"):
        async with watch.admitted("p"):
            pass
