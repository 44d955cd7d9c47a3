"""Kubernetes actions through lightkube: validated names, server-side dry-run, uid-checked targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta, Preconditions
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from pydantic import JsonValue

from service.playbooks.systems.kubernetes import (
    KUBERNETES,
    DeletePods,
    DeploymentParams,
    EvictPods,
    GetDeployment,
    GetPods,
    GetPodsParams,
    KubernetesConnection,
    PodLogs,
    PodLogsParams,
    PodRef,
    PodsWriteParams,
    RolloutRestart,
    RolloutUndo,
    Scale,
    Selector,
    SetEnv,
    TopPods,
)
from service.runs.registry import Action, specs
from service.runs.state import StepRequest, StepResult, per_target
from service.targets.base import ConnectionAdapter
from service.targets.kubernetes.api import MARK, RESTARTED_AT, deployment_data, errors, pod_data, set_env_patch
from service.targets.kubernetes.deployments import get_deployment, rollout_restart, rollout_undo, scale, set_env
from service.vocabulary.errors import ConfigError, PermanentStepError, StepError

PodMetrics = create_namespaced_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods")


def _labels(params: Selector) -> dict[str, Any]:
    """The validated pairs as lightkube's equality selector (its type also admits operators we never send)."""
    return dict(params.selector)


class KubernetesAdapter(ConnectionAdapter[KubernetesConnection, AsyncClient]):
    """One lightkube client per connection; `transport` lets tests point it at an in-process server."""

    system = KUBERNETES

    def __init__(
        self, connections: Mapping[str, KubernetesConnection], transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(connections)
        self._transport = transport

    def actions(self) -> dict[str, Action[Any]]:
        return specs(
            Action(GetPods, self._get_pods),
            Action(PodLogs, self._pod_logs),
            Action(GetDeployment, self._get_deployment),
            Action(TopPods, self._top_pods),
            Action(DeletePods, self._delete_pods),
            Action(EvictPods, self._evict_pods),
            Action(Scale, self.with_client(scale)),
            Action(RolloutRestart, self.with_client(rollout_restart)),
            Action(SetEnv, self.with_client(set_env)),
            Action(RolloutUndo, self.with_client(rollout_undo)),
        )

    async def _open(self, name: str, conn: KubernetesConnection) -> AsyncClient:
        try:
            config = KubeConfig.from_file(conn.kubeconfig) if conn.kubeconfig else KubeConfig.from_service_account()
            return AsyncClient(
                config.get(context_name=conn.context),
                timeout=httpx2.Timeout(conn.timeout),
                field_manager="remediate",
                transport=self._transport,
            )
        except (OSError, KeyError, ValueError) as exc:  # a kubeconfig that is missing or wrong
            raise ConfigError(f"kubernetes connection {name!r}: {exc}") from exc

    async def _close(self, client: AsyncClient) -> None:
        await client.close()

    async def ping(self, connection: str) -> None:
        client = await self.client(connection)
        try:
            with errors("kubernetes"):
                await client.get(Deployment, "remediate-readiness-probe", namespace="default")
        except StepError as exc:
            if exc.status not in (403, 404):  # the API answered: it is up, whatever our rights
                raise

    # ---- reads -----------------------------------------------------------------------------------------------

    async def _get_pods(self, request: StepRequest, params: GetPodsParams) -> StepResult:
        client = await self.client(request.connection)
        pods: list[JsonValue] = []
        with errors("list pods"):
            async for pod in client.list(
                Pod, namespace=params.namespace, labels=_labels(params), chunk_size=params.max_pods
            ):
                pods.append(pod_data(pod))
                if len(pods) > params.max_pods:
                    break
        truncated = len(pods) > params.max_pods
        pods = pods[: params.max_pods]
        selector = ",".join(f"{k}={v}" for k, v in params.selector.items())
        return StepResult(
            data={"pods": pods, "count": len(pods), "truncated": truncated},
            summary=f"{len(pods)} pod(s) in {params.namespace} matching {selector}",
        )

    async def _pod_logs(self, request: StepRequest, params: PodLogsParams) -> StepResult:
        client = await self.client(request.connection)
        pattern = re.compile(params.pattern) if params.pattern else None
        lines: list[JsonValue] = []
        with errors(f"logs of {params.namespace}/{params.pod}"):
            async for line in client.log(
                params.pod,
                namespace=params.namespace,
                container=params.container,
                tail_lines=params.tail_lines,
                since=int(params.since.total_seconds()) if params.since else None,
            ):
                text = line.rstrip("\n")
                if pattern is None or pattern.search(text):
                    lines.append(text)
        return StepResult(data={"lines": lines, "count": len(lines)}, summary=f"{len(lines)} line(s)")

    async def _get_deployment(self, request: StepRequest, params: DeploymentParams) -> StepResult:
        data = deployment_data(
            await get_deployment(await self.client(request.connection), params.namespace, params.name)
        )
        return StepResult(
            data=data,
            summary=f"{params.namespace}/{params.name}: {data['ready_replicas']}/"
            f"{data['replicas']} ready, revision {data['revision']}",
        )

    async def _top_pods(self, request: StepRequest, params: Selector) -> StepResult:
        client = await self.client(request.connection)
        try:
            with errors("pod metrics"):
                items = [m async for m in client.list(PodMetrics, namespace=params.namespace, labels=_labels(params))]
        except StepError as exc:
            if exc.status == 404:
                raise PermanentStepError(
                    "the metrics API (metrics.k8s.io) is not available in this cluster; "
                    "install metrics-server or use prometheus.query"
                ) from exc
            raise
        pods: list[JsonValue] = [
            {"name": m.metadata.name if m.metadata else None, "containers": m["containers"]} for m in items
        ]
        return StepResult(data={"pods": pods, "count": len(pods)}, summary=f"{len(pods)} pod(s) measured")

    # ---- writes ----------------------------------------------------------------------------------------------

    async def _delete_pods(self, request: StepRequest, params: PodsWriteParams) -> StepResult:
        return await self._pods_write(request, params, evict=False)

    async def _evict_pods(self, request: StepRequest, params: PodsWriteParams) -> StepResult:
        return await self._pods_write(request, params, evict=True)

    async def _pods_write(self, request: StepRequest, params: PodsWriteParams, evict: bool) -> StepResult:
        targets = params.targets()
        client = await self.client(request.connection)
        outcomes = [
            (f"pod {ref.namespace}/{ref.name} uid {ref.uid}", await self._one_pod(client, ref, params, evict, request))
            for ref in targets
        ]
        verb = "evict" if evict else "delete"
        summary = f"{verb} {len(targets)} pod(s)" + (" (dry-run=All, nothing persisted)" if request.dry_run else "")
        return per_target(outcomes, summary, request.dry_run)

    async def _one_pod(
        self, client: AsyncClient, ref: PodRef, params: PodsWriteParams, evict: bool, request: StepRequest
    ) -> str:
        dry_run, what = request.dry_run, f"pod {ref.namespace}/{ref.name}"
        try:
            with errors(what):
                current = await client.get(Pod, ref.name, namespace=ref.namespace)
                if current.metadata is None or current.metadata.uid != ref.uid:
                    return "skipped: the pod was replaced since diagnosis (uid changed)"
                if evict:
                    options = DeleteOptions(
                        preconditions=Preconditions(uid=ref.uid), gracePeriodSeconds=params.grace_period_seconds
                    )
                    meta = ObjectMeta(name=ref.name, namespace=ref.namespace)
                    eviction = Pod.Eviction(metadata=meta, deleteOptions=options)
                    await client.create(eviction, name=ref.name, namespace=ref.namespace, dry_run=dry_run)
                    return "would be evicted" if dry_run else "evicted"
                await client.delete(
                    Pod, ref.name, namespace=ref.namespace, grace_period=params.grace_period_seconds, dry_run=dry_run
                )
                return "would be deleted" if dry_run else "deleted"
        except StepError as exc:  # one target's outcome; the others still get theirs
            if exc.status == 404:
                return "skipped: already gone"
            if exc.status == 429 and evict:
                return f"failed: blocked by a PodDisruptionBudget: {exc}"
            return f"failed: {exc}"


__all__ = ["MARK", "RESTARTED_AT", "KubernetesAdapter", "set_env_patch"]
