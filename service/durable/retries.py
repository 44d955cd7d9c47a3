"""Retry policies of a run's activities: per step (a write is retried only where a retry cannot apply it twice),
for notifiers and for the audit store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from service.playbooks.steps import StepBase

# A notifier may be down or rate-limited: keep trying for a while, without holding up the wait for a decision.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)
# The audit store may be restarting: retry a few times; the last record of a run (which carries everything) longer.
# Both are bounded: a store that never takes a record cannot hold a run open (the metrics count what was lost).
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["AuditRejected"],
)
FINAL_AUDIT_RETRY = dataclasses.replace(AUDIT_RETRY, maximum_attempts=20)
# A local activity waiting longer than this between attempts waits on a durable timer, which frees the worker's
# workflow slot: a run that cannot record holds no slot another run needs.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=2)
NON_RETRYABLE = ["PermanentStepError", "GuardViolation", "ConfigError"]
WRITE_ATTEMPTS = 6  # a lost worker or a restarting target, for writes whose retry is safe


def retry_policy(step: StepBase, dry_run: bool, ledgers: list[str]) -> RetryPolicy:
    """Reads retry transient errors; a write is retried only where a retry cannot apply it twice."""
    if step.effect == "write" and not dry_run and not step.retries_safely(ledgers):
        # At most once: no ledger, or a target that does not honour Idempotency-Key.
        return RetryPolicy(maximum_attempts=1, non_retryable_error_types=NON_RETRYABLE)
    if step.retry is not None:
        attempts, interval, backoff = step.retry.attempts, step.retry.interval, step.retry.backoff
    elif step.effect == "read" or dry_run:
        attempts, interval, backoff = 3, timedelta(seconds=1), 2.0
    else:
        attempts, interval, backoff = WRITE_ATTEMPTS, timedelta(seconds=1), 2.0
    return RetryPolicy(
        maximum_attempts=attempts,
        initial_interval=interval,
        backoff_coefficient=max(backoff, 1.0),
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=NON_RETRYABLE,
    )


def failure_reason(exc: FailureError) -> str:
    """The reason an activity failed, as a run records it."""
    # A local activity's failure arrives as the ApplicationError itself, a regular one's inside an ActivityError.
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
