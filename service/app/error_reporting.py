"""Sentry when SENTRY_DSN is set: web errors through its Starlette integration, step and run failures through a
Temporal interceptor, each tagged with run id, playbook and step, every string scrubbed of secrets first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.types import Event, Hint
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from service.config import Settings
from service.config_file import ConfigFile
from service.runs.audit import Scrubber
from service.runs.state import StepRequest
from service.stores.setup import scrubber
from service.vocabulary.log_format import RUN_WORKFLOW
from service.vocabulary.redact import install


def guard_secrets(settings: Settings, config: ConfigFile, notifier_secrets: Sequence[str] = ()) -> Scrubber:
    """Resolve the process's secret values once: masked in every log line from now on, scrubbed from what Sentry is
    sent (when SENTRY_DSN is set), and handed to the audit trail's writer."""
    secrets = scrubber(settings, config, notifier_secrets)
    install(known=secrets.known)
    if settings.sentry_dsn:
        start_reporting(settings.sentry_dsn, secrets)
    return secrets


def start_reporting(dsn: str, scrubber: Scrubber, environment: str | None = None) -> None:
    """Initialise the SDK once per process; nothing leaves it unscrubbed, and no request bodies or users are sent."""
    sentry_sdk.init(
        dsn=dsn,
        integrations=[StarletteIntegration()],
        before_send=_scrubbing(scrubber),
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a secret no scrubber knows about
        max_request_body_size="never",
        traces_sample_rate=0.0,
        # No sentry-trace or baggage header on our own requests: targets and readiness pings learn nothing of Sentry.
        trace_propagation_targets=[],
        environment=environment,
    )


def _scrubbing(scrubber: Scrubber) -> Callable[[Event, Hint], Event | None]:
    def before_send(event: Event, _hint: Hint) -> Event | None:
        cleaned: Event = scrubber.walk(event)
        return cleaned

    return before_send


def _tags(scope: sentry_sdk.Scope, run_id: str, step: str = "", action: str = "") -> None:
    scope.set_tag("run_id", run_id)
    scope.set_tag("playbook", run_id.split("/", 1)[0])
    if step:
        scope.set_tag("step", step)
        scope.set_tag("action", action)


class ReportingInterceptor(Interceptor):
    """Reports a step's last failed attempt and a run that ends `failed`, once each."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityReporter(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowReporter


class _ActivityReporter(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:  # the boundary: reported, then raised unchanged for Temporal to retry or fail
            info = activity.info()
            policy = info.retry_policy
            last = (isinstance(exc, ApplicationError) and exc.non_retryable) or (
                policy is not None and policy.maximum_attempts and info.attempt >= policy.maximum_attempts
            )
            if last and info.workflow_type == RUN_WORKFLOW:
                request = next((a for a in input.args if isinstance(a, StepRequest)), None)
                with sentry_sdk.new_scope() as scope:
                    _tags(scope, info.workflow_id or "", request.step_id if request else "", info.activity_type)
                    if request is not None:
                        scope.set_tag("action", request.action)
                    scope.set_tag("attempt", str(info.attempt))
                    sentry_sdk.capture_exception(exc)
            raise


class _WorkflowReporter(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            return await super().execute_workflow(input)
        except Exception as exc:  # the boundary: a run that failed is reported once, never on replay
            info = workflow.info()
            if info.workflow_type == RUN_WORKFLOW and not workflow.unsafe.is_replaying():
                with workflow.unsafe.sandbox_unrestricted(), sentry_sdk.new_scope() as scope:
                    _tags(scope, info.workflow_id)
                    sentry_sdk.capture_exception(exc)
            raise
