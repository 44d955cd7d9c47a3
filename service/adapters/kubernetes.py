"""Kubernetes actions through lightkube: validated names, server-side dry-run, uid-checked targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta, Preconditions
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType
from pydantic import JsonValue

from service.config import KubernetesConnection
from service.errors import ConfigError, GuardViolation, PermanentStepError, RetryableStepError
from service.registry import Handler
from service.runs import StepRequest, StepResult, per_target
from service.step_base import Params, bounded_targets
from service.steps_kubernetes import (
    DeploymentParams,
    GetPodsParams,
    PodLogsParams,
    PodRef,
    PodsWriteParams,
    RolloutUndoParams,
    ScaleParams,
    Selector,
    SetEnvParams,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
MARK = "remediate.dev/applied-by"  # run/step that made a change, so a retried activity does not repeat it
REVISION = "deployment.kubernetes.io/revision"
PodMetrics = create_namespaced_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods")


def _error(exc: ApiError, what: str) -> PermanentStepError | RetryableStepError:
    code = exc.status.code or 0
    message = f"{what}: {code} {exc.status.reason}: {exc.status.message}"
    return RetryableStepError(message) if code in (429, 500, 502, 503, 504) else PermanentStepError(message)


def _pod(pod: Pod) -> dict[str, JsonValue]:
    statuses = (pod.status.containerStatuses or []) if pod.status else []
    meta = pod.metadata
    assert meta is not None  # noqa: S101 - the API always sends metadata
    return {
        "namespace": meta.namespace,
        "name": meta.name,
        "uid": meta.uid,
        "labels": dict(meta.labels or {}),
        "phase": pod.status.phase if pod.status else None,
        "node": pod.spec.nodeName if pod.spec else None,
        "ready": bool(statuses) and all(s.ready for s in statuses),
        "restarts": sum(s.restartCount for s in statuses),
        "containers": [
            {
                "name": s.name,
                "ready": s.ready,
                "restarts": s.restartCount,
                "waiting": s.state.waiting.reason if s.state and s.state.waiting else None,
            }
            for s in statuses
        ],
    }


def _deployment(d: Deployment) -> dict[str, JsonValue]:
    assert d.metadata is not None and d.spec is not None  # noqa: S101 - the API always sends them
    containers = d.spec.template.spec.containers if d.spec.template.spec else []
    return {
        "namespace": d.metadata.namespace,
        "name": d.metadata.name,
        "uid": d.metadata.uid,
        "replicas": d.spec.replicas,
        "paused": bool(d.spec.paused),
        "ready_replicas": (d.status.readyReplicas or 0) if d.status else 0,
        "updated_replicas": (d.status.updatedReplicas or 0) if d.status else 0,
        "revision": _revision(d.metadata.annotations),
        "containers": [
            {"name": c.name, "image": c.image, "env": {e.name: e.value for e in (c.env or []) if e.value is not None}}
            for c in containers
        ],
    }


def _revision(annotations: Mapping[str, str] | None) -> int:
    return int((annotations or {}).get(REVISION, "0"))


def _container_env(d: Deployment, container: str) -> dict[str, str] | None:
    spec = d.spec.template.spec if d.spec else None
    for c in spec.containers if spec else []:
        if c.name == container:
            return {e.name: e.value for e in (c.env or []) if e.value is not None}
    return None


class KubernetesAdapter:
    """One lightkube client per connection; `transport` lets tests point it at an in-process server."""

    def __init__(
        self, connections: Mapping[str, KubernetesConnection], transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._connections, self._transport = dict(connections), transport
        self._clients: dict[str, AsyncClient] = {}

    def actions(self) -> dict[str, Handler]:
        return {
            "k8s.get_pods": self._get_pods,
            "k8s.pod_logs": self._pod_logs,
            "k8s.get_deployment": self._get_deployment,
            "k8s.top_pods": self._top_pods,
            "k8s.delete_pods": self._delete_pods,
            "k8s.evict_pods": self._evict_pods,
            "k8s.scale": self._scale,
            "k8s.rollout_restart": self._rollout_restart,
            "k8s.set_env": self._set_env,
            "k8s.rollout_undo": self._rollout_undo,
        }

    def _client(self, name: str) -> AsyncClient:
        client = self._clients.get(name)
        if client is None:
            conn = self._connections.get(name)
            if conn is None:
                raise ConfigError(f"no kubernetes connection named {name!r}")
            try:
                config = KubeConfig.from_file(conn.kubeconfig) if conn.kubeconfig else KubeConfig.from_service_account()
                client = AsyncClient(
                    config.get(context_name=conn.context),
                    timeout=httpx2.Timeout(conn.timeout),
                    field_manager="remediate",
                    transport=self._transport,
                )
            except (OSError, KeyError, ValueError) as exc:
                raise ConfigError(f"kubernetes connection {name!r}: {exc}") from exc
            self._clients[name] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def ping(self, name: str) -> None:
        try:
            await self._client(name).get(Deployment, "remediate-readiness-probe", namespace="default")
        except ApiError as exc:
            if exc.status.code not in (403, 404):
                raise _error(exc, "kubernetes") from exc
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"kubernetes {name}: {exc}") from exc

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except ApiError as exc:
            raise _error(exc, what) from exc
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"{what}: {exc}") from exc

    async def _patch(
        self, request: StepRequest, what: str, name: str, ns: str, patch: Any, kind: PatchType = PatchType.STRATEGIC
    ) -> None:
        """Patch a deployment; in dry-run the API server validates it with dryRun=All and persists nothing."""
        client = self._client(request.connection)
        await self._call(
            what, client.patch(Deployment, name, patch, namespace=ns, patch_type=kind, dry_run=request.dry_run)
        )

    # ---- reads -----------------------------------------------------------------------------------------------

    async def _get_pods(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, GetPodsParams)  # noqa: S101 - the registry validated it
        pods: list[JsonValue] = []
        try:
            async for pod in self._client(request.connection).list(
                Pod, namespace=str(params.namespace), labels=dict(params.selector), chunk_size=params.max_pods
            ):
                pods.append(_pod(pod))
                if len(pods) > params.max_pods:
                    break
        except ApiError as exc:
            raise _error(exc, "list pods") from exc
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"list pods: {exc}") from exc
        truncated = len(pods) > params.max_pods
        pods = pods[: params.max_pods]
        selector = ",".join(f"{k}={v}" for k, v in params.selector.items())
        return StepResult(
            data={"pods": pods, "count": len(pods), "truncated": truncated},
            summary=f"{len(pods)} pod(s) in {params.namespace} matching {selector}",
        )

    async def _pod_logs(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, PodLogsParams)  # noqa: S101 - the registry validated it
        pattern = re.compile(params.pattern) if params.pattern else None
        lines: list[JsonValue] = []
        try:
            async for line in self._client(request.connection).log(
                str(params.pod),
                namespace=str(params.namespace),
                container=str(params.container) if params.container else None,
                tail_lines=params.tail_lines,
                since=int(params.since.total_seconds()) if params.since else None,
            ):
                text = line.rstrip("\n")
                if pattern is None or pattern.search(text):
                    lines.append(text)
        except ApiError as exc:
            raise _error(exc, f"logs of {params.namespace}/{params.pod}") from exc
        except httpx2.HTTPError as exc:
            raise RetryableStepError(f"logs of {params.namespace}/{params.pod}: {exc}") from exc
        return StepResult(data={"lines": lines, "count": len(lines)}, summary=f"{len(lines)} line(s)")

    async def _get_deployment(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, DeploymentParams)  # noqa: S101 - the registry validated it
        d = await self._call(
            "get deployment",
            self._client(request.connection).get(Deployment, str(params.name), namespace=str(params.namespace)),
        )
        data = _deployment(d)
        return StepResult(
            data=data,
            summary=f"{params.namespace}/{params.name}: {data['ready_replicas']}/"
            f"{data['replicas']} ready, revision {data['revision']}",
        )

    async def _top_pods(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, Selector)  # noqa: S101 - the registry validated it
        try:
            items = [
                m
                async for m in self._client(request.connection).list(
                    PodMetrics, namespace=str(params.namespace), labels=dict(params.selector)
                )
            ]
        except ApiError as exc:
            if exc.status.code == 404:
                raise PermanentStepError(
                    "the metrics API (metrics.k8s.io) is not available in this cluster; "
                    "install metrics-server or use prometheus.query"
                ) from exc
            raise _error(exc, "pod metrics") from exc
        pods: list[JsonValue] = [
            {"name": m.metadata.name if m.metadata else None, "containers": m["containers"]} for m in items
        ]
        return StepResult(data={"pods": pods, "count": len(pods)}, summary=f"{len(pods)} pod(s) measured")

    # ---- writes ----------------------------------------------------------------------------------------------

    async def _pods_write(self, request: StepRequest, params: Params, evict: bool) -> StepResult:
        assert isinstance(params, PodsWriteParams)  # noqa: S101 - the registry validated it
        targets: list[PodRef] = list(bounded_targets(list(params.pods), params.max_targets, "pods"))  # type: ignore[arg-type]
        client = self._client(request.connection)
        outcomes = [
            (
                f"pod {ref.namespace}/{ref.name} uid {ref.uid}",
                await self._one_pod(client, ref, params, evict, request.dry_run),
            )
            for ref in targets
        ]
        verb = "evict" if evict else "delete"
        summary = f"{verb} {len(targets)} pod(s)" + (" (dry-run=All, nothing persisted)" if request.dry_run else "")
        return per_target(outcomes, summary, request.dry_run)

    async def _one_pod(
        self, client: AsyncClient, ref: PodRef, params: PodsWriteParams, evict: bool, dry_run: bool
    ) -> str:
        try:
            current = await client.get(Pod, ref.name, namespace=ref.namespace)
            if current.metadata is None or current.metadata.uid != ref.uid:
                return "skipped: the pod was replaced since diagnosis (uid changed)"
            if evict:
                options = DeleteOptions(
                    preconditions=Preconditions(uid=ref.uid), gracePeriodSeconds=params.grace_period_seconds
                )
                await client.create(
                    Pod.Eviction(metadata=ObjectMeta(name=ref.name, namespace=ref.namespace), deleteOptions=options),
                    name=ref.name,
                    namespace=ref.namespace,
                    dry_run=dry_run,
                )
                return "would be evicted" if dry_run else "evicted"
            await client.delete(
                Pod, ref.name, namespace=ref.namespace, grace_period=params.grace_period_seconds, dry_run=dry_run
            )
            return "would be deleted" if dry_run else "deleted"
        except ApiError as exc:
            if exc.status.code == 404:
                return "skipped: already gone"
            if exc.status.code == 429 and evict:
                return f"failed: blocked by a PodDisruptionBudget: {exc.status.message}"
            return f"failed: {exc.status.code} {exc.status.message}"
        except httpx2.HTTPError as exc:
            return f"failed: {exc}"

    async def _delete_pods(self, request: StepRequest, params: Params) -> StepResult:
        return await self._pods_write(request, params, evict=False)

    async def _evict_pods(self, request: StepRequest, params: Params) -> StepResult:
        return await self._pods_write(request, params, evict=True)

    async def _scale(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, ScaleParams)  # noqa: S101 - the registry validated it
        client, ns, name = self._client(request.connection), str(params.namespace), str(params.name)
        replicas = int(params.replicas)
        if not params.min_replicas <= replicas <= params.max_replicas:
            raise GuardViolation(f"replicas {replicas} is outside [{params.min_replicas}, {params.max_replicas}]")
        scale = await self._call("read scale", client.get(Deployment.Scale, name, namespace=ns))
        previous = scale.spec.replicas if scale.spec else 0
        target = f"deployment {ns}/{name}"
        if previous == replicas:
            return StepResult(
                data={"previous": previous, "replicas": replicas, "changed": False},
                summary=f"{target} already has {replicas} replica(s)",
                targets=[target],
            )
        # Compare-and-set: the resourceVersion read above makes a concurrent change fail with 409.
        scale.spec.replicas = replicas
        await self._call(f"scale {target}", client.replace(scale, name, namespace=ns, dry_run=request.dry_run))
        verb = "would scale" if request.dry_run else "scaled"
        return StepResult(
            data={
                "previous": previous,
                "replicas": replicas,
                "changed": not request.dry_run,
                "dry_run": request.dry_run,
            },
            summary=f"{verb} {target} from {previous} to {replicas}",
            targets=[target],
            dry_run=request.dry_run,
        )

    async def _marked(self, client: AsyncClient, ns: str, name: str, key: str) -> tuple[Deployment, bool]:
        d = await self._call("get deployment", client.get(Deployment, name, namespace=ns))
        template_meta = d.spec.template.metadata if d.spec and d.spec.template else None
        marks = ((template_meta.annotations or {}) if template_meta else {}).get(MARK, "")
        return d, key in marks.split(",")

    async def _rollout_restart(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, DeploymentParams)  # noqa: S101 - the registry validated it
        client, ns, name = self._client(request.connection), str(params.namespace), str(params.name)
        key, target = f"{request.run_id}/{request.step_id}", f"deployment {ns}/{name}"
        d, done = await self._marked(client, ns, name, key)
        if d.spec and d.spec.paused:
            raise GuardViolation(f"{target} is paused; a restart would not roll out. Resume it first")
        if done:
            return StepResult(
                data={"changed": False}, summary=f"{target} was already restarted by this run", targets=[target]
            )
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now, MARK: key}}}}}
        await self._patch(request, f"restart {target}", name, ns, patch)
        verb = "would restart" if request.dry_run else "restarted"
        return StepResult(
            data={"changed": not request.dry_run, "restarted_at": now, "dry_run": request.dry_run},
            summary=f"{verb} {target}",
            targets=[target],
            dry_run=request.dry_run,
        )

    async def _set_env(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, SetEnvParams)  # noqa: S101 - the registry validated it
        client, ns, name = self._client(request.connection), str(params.namespace), str(params.name)
        target = f"deployment {ns}/{name} container {params.container}"
        d = await self._call("get deployment", client.get(Deployment, name, namespace=ns))
        before = _container_env(d, params.container)
        if before is None:
            raise PermanentStepError(f"{target}: no such container")
        env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.env.items()}
        patch = set_env_patch(params.container, env)
        await self._patch(request, f"set env on {target}", name, ns, patch)
        previous: dict[str, JsonValue] = {k: before.get(k) for k in env}
        verb = "would set" if request.dry_run else "set"
        return StepResult(
            data={"previous": previous, "env": dict(env), "dry_run": request.dry_run},
            summary=f"{verb} {', '.join(f'{k}={v}' for k, v in env.items())} on {target}",
            targets=[target],
            dry_run=request.dry_run,
        )

    async def _rollout_undo(self, request: StepRequest, params: Params) -> StepResult:
        assert isinstance(params, RolloutUndoParams)  # noqa: S101 - the registry validated it
        client, ns, name = self._client(request.connection), str(params.namespace), str(params.name)
        target, key = f"deployment {ns}/{name}", f"{request.run_id}/{request.step_id}"
        d, done = await self._marked(client, ns, name, key)
        if done:
            return StepResult(
                data={"changed": False}, summary=f"{target} was already rolled back by this run", targets=[target]
            )
        assert d.metadata is not None  # noqa: S101 - the API always sends metadata
        current, uid = _revision(d.metadata.annotations), d.metadata.uid
        by_revision: dict[int, ReplicaSet] = {}
        async for rs in client.list(ReplicaSet, namespace=ns):
            if rs.metadata and any(o.uid == uid for o in (rs.metadata.ownerReferences or [])):
                by_revision[_revision(rs.metadata.annotations)] = rs
        wanted = params.to_revision or max((r for r in by_revision if r < current), default=0)
        if wanted not in by_revision or wanted == current:
            raise PermanentStepError(f"{target}: no revision {wanted or 'before ' + str(current)} to roll back to")
        template = by_revision[wanted].spec.template.to_dict()  # type: ignore[union-attr]
        template.setdefault("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        template["metadata"].setdefault("annotations", {})[MARK] = key
        # As `kubectl rollout undo` does: replace the whole pod template with the old revision's.
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        await self._patch(request, f"roll back {target}", name, ns, patch, PatchType.JSON)
        verb = "would roll back" if request.dry_run else "rolled back"
        return StepResult(
            data={"from_revision": current, "to_revision": wanted, "dry_run": request.dry_run},
            summary=f"{verb} {target} from revision {current} to {wanted}",
            targets=[target],
            dry_run=request.dry_run,
        )


def set_env_patch(container: str, env: Mapping[str, str]) -> dict[str, Any]:
    """A strategic merge patch that sets variables on one container; other containers and variables survive."""
    return {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": container, "env": [{"name": k, "value": v} for k, v in env.items()]}]}
            }
        }
    }


__all__ = ["KubernetesAdapter", "set_env_patch"]
