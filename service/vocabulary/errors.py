"""One exception tree for remediate: retryable versus permanent, and where a problem sits in a file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


class RemediateError(Exception):
    """Base of every error remediate raises on purpose."""


class ConfigError(RemediateError):
    """The service configuration or a secret reference is wrong; fix the configuration."""


@dataclass(frozen=True)
class Problem:
    """One located problem in a playbook file, printed as `file:line:col: message`."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PlaybookError(RemediateError):
    """One or more playbook files are invalid; nothing from them was loaded."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TemplateError(RemediateError):
    """A template or expression failed to compile or to evaluate."""


class StepError(RemediateError):
    """A step failed; `retryable` says whether running it again can help, `status` is the target's own code
    (an HTTP status from Kubernetes, a gRPC status from Temporal) where it answered with one."""

    retryable = False

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableStepError(StepError):
    """A transient failure before anything was changed (connection refused, timeout on a read)."""

    retryable = True


class PermanentStepError(StepError):
    """A failure that repeating will not fix, or a write whose outcome is unknown."""


class WriteRefused(PermanentStepError):
    """A rail (the kill switch) turned on between a write's grant and its sending: nothing was sent."""


class GuardViolation(PermanentStepError):
    """A blast-radius guard refused the step (for example more rows than `max_rows`)."""


class TemporalUnavailable(RemediateError):
    """Temporal could not be reached; the webhook answers 503 so Alertmanager retries."""


class NotifyError(RemediateError):
    """Posting or updating an approval request failed; `retry_after` comes from a 429's Retry-After."""

    def __init__(self, message: str, retryable: bool = True, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after


class RunNotOpen(RemediateError):
    """A decision was sent to a run that is finished or does not exist."""


class RunUnknown(RunNotOpen):
    """There is no run with that id at all (404, where a finished run is 409)."""


class AuditUnavailable(RemediateError):
    """The audit store cannot be reached or has no tables yet (`remediate migrate audit`)."""


class AuditRejected(AuditUnavailable):
    """The audit store refused this record's data: sending it again cannot help, so it is not retried."""
