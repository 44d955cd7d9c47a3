"""What on-call asks of /metrics about runs: outcomes by playbook, step durations, writes, targets, approvals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.runs.state import RunState, StepRequest, StepResult

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DECISION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


class RunMetrics:
    """Counted by the worker that ran each step and each run's last record; summed across replicas in PromQL."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "remediate_runs", "Runs that ended, by playbook and final status", ["playbook", "status"], registry=registry
        )
        self.step_seconds = Histogram(
            "remediate_step_seconds",
            "Time of one step attempt, by action, effect and outcome",
            ["action", "effect", "outcome"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.writes = Counter(
            "remediate_writes",
            "Write attempts by action and outcome (ok, failed, dry_run)",
            ["action", "outcome"],
            registry=registry,
        )
        self.targets = Counter(
            "remediate_targets_touched",
            "Targets a write changed (dry-runs excluded), by action",
            ["action"],
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "remediate_approval_decision_seconds",
            "From an approval request to its decision, by how the gate closed",
            ["outcome"],
            buckets=DECISION_BUCKETS,
            registry=registry,
        )

    def step(self, request: StepRequest, seconds: float, result: StepResult | None) -> None:
        """One attempt of a step: `result` is None when it failed."""
        outcome = "failed" if result is None else "dry_run" if request.dry_run else "ok"
        self.step_seconds.labels(request.action, request.effect, outcome).observe(seconds)
        if request.effect == "write":
            self.writes.labels(request.action, outcome).inc()
            if result is not None and not request.dry_run:
                self.targets.labels(request.action).inc(len(result.targets))

    def ended(self, state: RunState) -> None:
        """A run's final record: its status, and how long its gate waited for a decision."""
        self.runs.labels(state.playbook, state.status).inc()
        gate = state.gate
        if gate is None or gate.status == "open":
            return
        decided = [d.at for d in gate.decisions if d.outcome == "counted" and d.at is not None]
        closed_at = max(decided) if decided and gate.status in ("approved", "rejected") else state.finished_at
        opened_at = gate.request.opened_at
        if closed_at is not None and opened_at is not None:
            self.decision_seconds.labels(gate.status).observe(max((closed_at - opened_at).total_seconds(), 0))


def worker_up(registry: CollectorRegistry, problem: Callable[[], str | None]) -> None:
    """1 while this process's worker polls Temporal, 0 while it does not (the 'no worker polling' alert)."""
    gauge = Gauge("remediate_worker_up", "Whether this process's worker is polling Temporal", registry=registry)
    gauge.set_function(lambda: 0.0 if problem() else 1.0)


class ApprovalGauges:
    """Approvals waiting now, from the audit store (every replica shows the same number: use max() in PromQL)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge("remediate_approvals_pending", "Approval gates open now (audit store)", registry=registry)
        self.oldest = Gauge(
            "remediate_approval_oldest_wait_seconds",
            "How long the oldest open approval gate has waited (0 when none)",
            registry=registry,
        )

    def show(self, opened: list[datetime], now: datetime) -> None:
        self.pending.set(len(opened))
        self.oldest.set(max(((now - o).total_seconds() for o in opened), default=0.0))


class StuckRuns:
    """Open runs whose workflow tasks keep failing, as Temporal reports them (every replica shows the same number:
    use max() in PromQL); `advice` is what /readyz shows beside its checks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "remediate_runs_stuck",
            "Open runs whose workflow tasks keep failing or timing out (remediate runs list --stuck)",
            registry=registry,
        )
        self.count: int | None = None

    def show(self, count: int) -> None:
        self.count = count
        self.gauge.set(count)

    def advice(self) -> str | None:
        if not self.count:
            return None
        return f"{self.count} stuck run(s): workflow tasks failing; see `remediate runs list --stuck`"
