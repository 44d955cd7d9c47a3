"""Several notifiers as one: each message goes to every configured tool; the first real message id is kept."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from service.vocabulary.approvals import MessageRef, Notice
from service.vocabulary.errors import NotifyError
from service.vocabulary.outcomes import Notifying, OutcomeNotice

log = logging.getLogger("remediate.notify")


class AllNotifiers:
    """Slack and a webhook, say. A retry would post again to every tool, so one tool's failure is logged and only
    a failure of all of them is raised (and retried by the run)."""

    def __init__(self, notifiers: list[Notifying]) -> None:
        self._all = notifiers

    async def _each(self, call: Callable[[Notifying], Awaitable[MessageRef | None]]) -> MessageRef:
        refs, errors = [], []
        for notifier in self._all:
            try:
                refs.append(await call(notifier) or MessageRef())
            except NotifyError as exc:
                errors.append(exc)
                log.warning("notifier %s: %s", type(notifier).__name__, exc)
        if errors and len(errors) == len(self._all):
            raise errors[0]
        return next((r for r in refs if r.id), MessageRef())

    async def publish(self, notice: Notice) -> MessageRef:
        return await self._each(lambda n: n.publish(notice))

    async def report(self, notice: OutcomeNotice) -> MessageRef:
        return await self._each(lambda n: n.report(notice))

    async def announce(self, text: str) -> None:
        async def one(n: Notifying) -> None:
            await n.announce(text)

        await self._each(one)

    async def close(self) -> None:
        for n in self._all:
            await n.close()
