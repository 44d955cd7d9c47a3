"""Kubernetes actions: names are validated, selectors are built from key/value pairs, writes name their targets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from service.playbooks.step_base import (
    Approval,
    Capped,
    Duration,
    Params,
    StepBase,
    TargetRef,
    Template,
    WriteStep,
    bounded_targets,
    typed,
)
from service.playbooks.system import ConnectionModel, System
from service.vocabulary.checked import checked_before

# Kubernetes' own validation rules, so an alert value can never be more than one name.
Namespace = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Name = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253)
]
ContainerName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
LabelKey = Annotated[
    str,
    Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=316,
    ),
]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=63)]
Uid = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
EnvName = Annotated[str, Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)]


class PodRef(TargetRef):
    """One pod, exactly: namespace, name and the uid seen at diagnosis."""

    namespace: Namespace | Template
    name: Name | Template
    uid: Uid | Template


class Selector(Params):
    """Equality label selector built from validated pairs; never empty, never a raw selector string."""

    namespace: Namespace | Template
    selector: dict[LabelKey, LabelValue | Template] = Field(min_length=1)


class GetPodsParams(Selector):
    max_pods: int = Field(default=100, ge=1, le=1000)


class PodLogsParams(Params):
    literal_fields = frozenset({"pattern", "tail_lines"})

    namespace: Namespace | Template
    pod: Name | Template
    container: ContainerName | Template | None = None
    tail_lines: int = Field(default=200, ge=1, le=5000)
    since: Duration | None = None
    pattern: str | None = Field(default=None, description="Regex applied to each line here, not by the server.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not checked_before(info):
            re.compile(value)
        return value


class DeploymentParams(Params):
    namespace: Namespace | Template
    name: Name | Template


class PodsWriteParams(Capped):
    """Pods to delete or evict, each named by namespace, name and uid."""

    literal_fields = frozenset({"max_targets", "grace_period_seconds"})

    pods: list[PodRef] | Template
    grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)

    def targets(self) -> Sequence[PodRef]:
        return bounded_targets(typed(self.pods, "pods"), self.max_targets, "pods")


class ScaleParams(DeploymentParams):
    literal_fields = frozenset({"min_replicas", "max_replicas"})

    replicas: int | Template
    min_replicas: int = Field(ge=0, le=1000)
    max_replicas: int = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _within_bounds(self) -> ScaleParams:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        if isinstance(self.replicas, int) and not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas {self.replicas} is outside [{self.min_replicas}, {self.max_replicas}]")
        return self

    def count(self) -> int:
        return typed(self.replicas, "replicas")

    def caps(self) -> list[str]:
        return [f"replicas within [{self.min_replicas}, {self.max_replicas}]"]


class SetEnvParams(DeploymentParams):
    container: ContainerName
    env: dict[EnvName, str | int | float | bool] = Field(min_length=1, max_length=50)


class RolloutUndoParams(DeploymentParams):
    literal_fields = frozenset({"to_revision"})

    to_revision: int | None = Field(default=None, ge=1, description="Default: the revision before the current one.")


class _K8s(StepBase):
    connection_type = "kubernetes"


class _K8sWrite(WriteStep):
    connection_type = "kubernetes"
    default_approval: ClassVar[Approval] = "none"


class GetPods(_K8s):
    """Pods matching an equality selector of validated label pairs, each with its uid."""

    returns = "`pods[{namespace, name, uid, phase, ready, restarts, node, labels, containers}]`, `count`, `truncated`"
    dry_run_behaviour = "runs"
    action: Literal["k8s.get_pods"]
    with_: GetPodsParams = Field(alias="with")


class PodLogs(_K8s):
    """The last lines of one pod's log, optionally filtered by a regex applied here."""

    returns = "`lines`, `count`"
    dry_run_behaviour = "runs"
    action: Literal["k8s.pod_logs"]
    with_: PodLogsParams = Field(alias="with")


class GetDeployment(_K8s):
    """One deployment: replicas, readiness, revision, containers and their env."""

    returns = "`replicas`, `ready_replicas`, `updated_replicas`, `paused`, `revision`, `containers[{name, image, env}]`"
    dry_run_behaviour = "runs"
    action: Literal["k8s.get_deployment"]
    with_: DeploymentParams = Field(alias="with")


class TopPods(_K8s):
    """CPU and memory of pods from the metrics API (metrics-server); a clear error without it."""

    returns = "`pods[{name, containers[{usage}]}]`, `count`"
    dry_run_behaviour = "runs"
    action: Literal["k8s.top_pods"]
    with_: Selector = Field(alias="with")


class DeletePods(_K8sWrite):
    """Delete pods named by namespace, name and uid; a pod whose uid changed is skipped."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "`dryRun=All`"
    default_approval = "required"
    action: Literal["k8s.delete_pods"]
    with_: PodsWriteParams = Field(alias="with")


class EvictPods(_K8sWrite):
    """Evict pods through the Eviction API with a uid precondition; PodDisruptionBudgets are respected."""

    returns = "`results[{target, outcome}]`"
    dry_run_behaviour = "`dryRun=All`"
    default_approval = "required"
    action: Literal["k8s.evict_pods"]
    with_: PodsWriteParams = Field(alias="with")


class Scale(_K8sWrite):
    """Set a deployment's replicas within `[min_replicas, max_replicas]`, by compare-and-set."""

    returns = "`previous`, `replicas`, `changed`"
    dry_run_behaviour = "`dryRun=All`"
    approval_rule = "required if `min_replicas: 0`, else none"
    action: Literal["k8s.scale"]
    with_: ScaleParams = Field(alias="with")

    def safe_default_approval(self) -> Approval:
        return "required" if self.with_.min_replicas == 0 else "none"  # scaling to zero is destructive


class RolloutRestart(_K8sWrite):
    """Restart a deployment's pods as `kubectl rollout restart` does; refuses a paused deployment."""

    returns = "`restarted_at`, `changed`"
    dry_run_behaviour = "`dryRun=All`"
    action: Literal["k8s.rollout_restart"]
    with_: DeploymentParams = Field(alias="with")


class SetEnv(_K8sWrite):
    """Set environment variables on one container by strategic merge: sidecars and other variables stay."""

    returns = "`previous`, `env`"
    dry_run_behaviour = "`dryRun=All`"
    action: Literal["k8s.set_env"]
    with_: SetEnvParams = Field(alias="with")


class RolloutUndo(_K8sWrite):
    """Roll a deployment back to an earlier revision (default: the previous one), as `kubectl rollout undo`."""

    returns = "`from_revision`, `to_revision`"
    dry_run_behaviour = "`dryRun=All`"
    default_approval = "required"
    action: Literal["k8s.rollout_undo"]
    with_: RolloutUndoParams = Field(alias="with")


KUBERNETES_STEPS: tuple[type[StepBase], ...] = (
    GetPods,
    PodLogs,
    GetDeployment,
    TopPods,
    DeletePods,
    EvictPods,
    Scale,
    RolloutRestart,
    SetEnv,
    RolloutUndo,
)


class KubernetesConnection(ConnectionModel):
    """A Kubernetes API: a kubeconfig file (and context), or the pod's service account."""

    type: Literal["kubernetes"]
    kubeconfig: str | None = Field(default=None, description="Path of a kubeconfig file; unset means in-cluster.")
    context: str | None = None
    timeout: float = Field(default=10.0, gt=0)


KUBERNETES = System(KubernetesConnection, KUBERNETES_STEPS)
