"""A worker's own view of the kill switch: polled from the board, consulted before every ask and write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from service.rails.governance import Answer
from service.rails.kill_switch import CONFIRM_WITHIN, LIVE_FOR, POLL_EVERY, SEEN_EVERY, SwitchBoard
from service.vocabulary.errors import RemediateError, WriteRefused

log = logging.getLogger("remediate.rails")


class SwitchWatch:
    """This worker's view of the kill switch, kept by polling the board (a query) every `poll` seconds and consulted
    before every ask without a round trip. A view older than `fresh_for` is not trusted: an ask then waits for a
    fresh one, and is refused if none comes within `wait` (fail closed)."""

    def __init__(
        self,
        read: Callable[[], Awaitable[SwitchBoard]],
        poll: float = POLL_EVERY,
        fresh_for: float = CONFIRM_WITHIN,
        wait: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        seen: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._read, self.poll, self.fresh_for, self.wait, self._clock = read, poll, fresh_for, wait, clock
        self._seen = seen  # tells the board which version this worker holds; None: flips wait CONFIRM_WITHIN
        self.board: SwitchBoard | None = None
        self.confirmed = float("-inf")  # when the last answer was asked for: it is at least that fresh
        self.said: tuple[int, float] = (-1, float("-inf"))  # the version last told to the board, and when asked
        self._writing: dict[int, int] = {}  # version of the view that admitted them -> writes still on their way
        self._task: asyncio.Task[None] | None = None
        self._answered = asyncio.Event()  # set by every answer from the board: waiting writes look again
        self._warned = False

    def age(self) -> float:
        return self._clock() - self.confirmed

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            asked = self._clock()
            try:
                board = self._adopt(await self._read(), asked)
                await self._say(board)
                self._answered.set()
                if self._warned:
                    log.warning("kill switch confirmed again (version %d)", board.version)
                    self._warned = False
            except RemediateError as exc:
                if self.age() > self.fresh_for and not self._warned:
                    log.warning(
                        "kill switch unconfirmed for %.1fs, writes wait and then are refused: %s", self.age(), exc
                    )
                    self._warned = True
            await asyncio.sleep(self.poll)

    def _adopt(self, board: SwitchBoard, asked: float) -> SwitchBoard:
        """The view held from now on: never back to an older version (an earlier query may answer after a later
        one)."""
        if self.board is None or board.version >= self.board.version:
            self.board = board
        self.confirmed = max(self.confirmed, asked)
        return self.board

    async def _say(self, board: SwitchBoard) -> None:
        """Tell the board the version now held, once adopted: when it is new, and every SEEN_EVERY seconds."""
        if self._seen is None or any(v < board.version for v in self._writing):
            return  # writes admitted under an older view are still on their way: not yet
        version, at = self.said
        asked = self._clock()
        if board.version != version or asked - at >= SEEN_EVERY:
            await self._seen(board.version)
            self.said = (board.version, asked)

    def trusted(self) -> bool:
        """A fresh view, and (with a board that waits for workers) a recent word to it: a flip then waits for us."""
        if self.board is None or self.age() > self.fresh_for:
            return False
        return self._seen is None or self._clock() - self.said[1] < LIVE_FOR.total_seconds() / 2

    async def forbids(self, playbook: str) -> str | None:
        """For a write about to be sent: why it may not be, or None."""
        refused = await self.refusal(playbook)
        return refused.reason if refused is not None else None

    @asynccontextmanager
    async def admitted(self, playbook: str) -> AsyncIterator[None]:
        """A real write, admitted by this view (WriteRefused if a switch forbids it) and counted until it returns:
        the board hears of a newer version only once no write admitted under an older one is still on its way, so
        a flip never answers while such a write could still start."""
        why = await self.forbids(playbook)
        if why:
            raise WriteRefused(why)
        version = self.board.version if self.board is not None else -1
        self._writing[version] = self._writing.get(version, 0) + 1
        try:
            yield
        finally:
            self._writing[version] -= 1
            if not self._writing[version]:
                del self._writing[version]

    async def refusal(self, playbook: str) -> Answer | None:
        """A refusal when a switch forbids this playbook's write, or when the switch cannot be confirmed."""
        self.start()
        deadline = self._clock() + self.wait
        while not self.trusted() or self.board is None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                age = "ever" if self.board is None else f"{self.age():.0f}s"
                return Answer(
                    verdict="refuse",
                    limit="kill_switch_unconfirmed",
                    reason=f"the kill switch could not be confirmed for {age}: no write (fail closed)",
                )
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), timeout=min(remaining, self.poll))
        why = self.board.refusal(playbook)
        if why:
            # A refusal ends the run: worth one fresh read, so a switch turned off a moment ago refuses nothing.
            asked = self._clock()
            with contextlib.suppress(RemediateError):
                why = self._adopt(await self._read(), asked).refusal(playbook)
        return Answer(verdict="refuse", limit="kill_switch", reason=why) if why else None
