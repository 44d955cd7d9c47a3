"""Background loops that keep one replica's gauges current: the kill switch, lines, approvals waiting, stuck runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from service.durable.policy_activities import PolicyMetrics
from service.runs.audit import AuditStore, open_gates
from service.temporal.client import TemporalRuns
from service.temporal.governor.client import GovernorClient
from service.vocabulary.errors import RemediateError
from service.web.run_metrics import ApprovalGauges, StuckRuns

log = logging.getLogger("remediate")


async def watch_kill_switch(governor: GovernorClient, metrics: PolicyMetrics, stop: asyncio.Event) -> None:
    """Keep the `remediate_kill_switch` gauge current on every replica (the switch itself needs no polling)."""
    while not stop.is_set():
        try:
            metrics.show(await governor.board())
        except RemediateError as exc:  # no worker answers yet, or Temporal is away: try again
            log.debug("kill switch gauge not refreshed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=5)
        except TimeoutError:
            continue


async def watch_lines(governor: GovernorClient, metrics: PolicyMetrics, stop: asyncio.Event, every: float = 10) -> None:
    """Keep `remediate_runs_waiting_for_slot` current: the length of each playbook's line, from its shard."""
    while not stop.is_set():
        try:
            for playbook in await governor.playbooks():
                metrics.waiting.labels(playbook).set(await governor.waiting(playbook))
        except RemediateError as exc:
            log.debug("lines not measured: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            continue


async def watch_approvals(store: AuditStore, gauges: ApprovalGauges, stop: asyncio.Event) -> None:
    """Keep the pending-approvals gauges current from the audit store."""
    while not stop.is_set():
        try:
            now = datetime.now(UTC)
            gauges.show(open_gates(await store.waiting(), now), now)
        except RemediateError as exc:  # the store is away for a moment: the gauges keep their last value
            log.debug("approval gauges not refreshed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=5)
        except TimeoutError:
            continue


async def watch_stuck(runs: TemporalRuns, stuck: StuckRuns, stop: asyncio.Event, every: float = 15.0) -> None:
    """Keep `remediate_runs_stuck` current: one count through visibility, whatever the number of open runs."""
    while not stop.is_set():
        try:
            stuck.show(await runs.count_stuck())
        except RemediateError as exc:
            log.debug("stuck runs not counted: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            continue
