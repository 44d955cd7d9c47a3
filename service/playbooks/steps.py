"""One typed model per action; the `with` block of each is checked at load time and again once rendered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from service.playbooks.step_base import (
    Approval,
    Duration,
    Effect,
    Params,
    Retry,
    StepBase,
    StepId,
    Template,
    WriteStep,
    approval_label,
    approval_of,
    approval_rule_of,
)
from service.playbooks.system import System
from service.playbooks.systems.alertmanager import ALERTMANAGER
from service.playbooks.systems.http import HTTP
from service.playbooks.systems.kubernetes import KUBERNETES
from service.playbooks.systems.postgres import POSTGRES
from service.playbooks.systems.prometheus import PROMETHEUS
from service.playbooks.systems.redis import REDIS
from service.playbooks.systems.temporal import TEMPORAL

__all__ = [
    "ACTIONS",
    "SYSTEMS",
    "Approval",
    "Duration",
    "Effect",
    "Params",
    "Retry",
    "Step",
    "StepBase",
    "StepId",
    "Template",
    "WriteStep",
    "approval_label",
    "approval_of",
    "approval_rule_of",
]


# Every target system, once: the step union below, the configuration's connection union and the adapters a process
# builds all derive from this tuple. A new system is its module in systems/ and one line here.
SYSTEMS: tuple[System, ...] = (POSTGRES, HTTP, PROMETHEUS, ALERTMANAGER, KUBERNETES, TEMPORAL, REDIS)
STEP_TYPES: tuple[type[StepBase], ...] = tuple(step for system in SYSTEMS for step in system.steps)
if TYPE_CHECKING:
    Step = StepBase
else:  # the playbook format: one of the step models, told apart by `action`
    Step = Annotated[Union[STEP_TYPES], Field(discriminator="action")]  # noqa: UP007 - built from the tuple
ACTIONS: dict[str, type[StepBase]] = {t.action_name(): t for t in STEP_TYPES}
