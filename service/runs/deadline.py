"""How long one run may stay open, from its playbook's own timeouts: past that, Temporal ends it (timed out)."""

from __future__ import annotations

from datetime import timedelta

from service.playbooks.steps import StepBase, WriteStep
from service.rails.governor_state import BUSY_AT_MOST, WAIT_AT_MOST
from service.runs.state import RunInput

MARGIN = timedelta(minutes=30)  # notifications, the governor's answers, a worker restart or two
RETRY_WAIT = timedelta(seconds=30)  # the longest wait between two attempts of a step
ASK_WAIT = timedelta(minutes=2)  # a write's two asks of the governor
WRITE_ATTEMPTS = 6  # as the workflow retries a write whose retry is safe


def _step(step: StepBase) -> timedelta:
    attempts = step.retry.attempts if step.retry else WRITE_ATTEMPTS
    items = each[1] if isinstance(step, WriteStep) and (each := step.each()) is not None else 1
    return items * attempts * (step.timeout + RETRY_WAIT)


def longest_run(run: RunInput) -> timedelta:
    """Every phase at its worst: diagnosis twice (again after approval), each write previewed twice and made once,
    verify, each write's wait for its turn (limits.wait_at_most) and on a busy governor, the approval wait, the
    effectiveness check and the back-off before a later attempt. A run still open
    after this is stuck, not slow, and ending it frees its lease and lets a later delivery try again."""
    book = run.playbook
    diagnose = sum((_step(s) for s in book.diagnose), timedelta())
    governed = run.governance.governor
    turn = (run.governance.limits.wait_at_most or WAIT_AT_MOST) + BUSY_AT_MOST if governed else timedelta()
    act = sum((_step(s) + ASK_WAIT + turn for s in book.act), timedelta())
    verify = sum((_step(s) for s in book.verify), timedelta())
    back_off = timedelta(seconds=run.durability.attempt_backoff * 2**run.durability.max_attempts)
    effective = run.governance.effective_within if run.governance.governor else timedelta()
    return 2 * diagnose + 3 * act + verify + book.approval_timeout + effective + back_off + MARGIN
