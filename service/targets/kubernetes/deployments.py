"""Kubernetes deployment writes: scale by compare-and-set, restart, set env, roll back; each marked or compared so
a retry changes nothing more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.types import PatchType
from pydantic import JsonValue

from service.playbooks.systems.kubernetes import DeploymentParams, RolloutUndoParams, ScaleParams, SetEnvParams
from service.runs.state import StepRequest, StepResult
from service.targets.kubernetes.api import (
    MARK,
    RESTARTED_AT,
    container_env,
    errors,
    marked,
    revision,
    set_env_patch,
    undo_patch,
)
from service.vocabulary.errors import GuardViolation, PermanentStepError


async def get_deployment(client: AsyncClient, ns: str, name: str) -> Deployment:
    with errors("get deployment"):
        deployment: Deployment = await client.get(Deployment, name, namespace=ns)
    return deployment


async def _patch(
    client: AsyncClient,
    request: StepRequest,
    what: str,
    name: str,
    ns: str,
    patch: Any,
    kind: PatchType = PatchType.STRATEGIC,
) -> None:
    """Patch a deployment; in dry-run the API server validates it with dryRun=All and persists nothing."""
    with errors(what):
        await client.patch(Deployment, name, patch, namespace=ns, patch_type=kind, dry_run=request.dry_run)


def _done(request: StepRequest, target: str, summary: str, **data: JsonValue) -> StepResult:
    return StepResult(
        data={**data, "dry_run": request.dry_run}, summary=summary, targets=[target], dry_run=request.dry_run
    )


async def scale(client: AsyncClient, request: StepRequest, params: ScaleParams) -> StepResult:
    ns, name, replicas = params.namespace, params.name, params.count()
    if not params.min_replicas <= replicas <= params.max_replicas:
        raise GuardViolation(f"replicas {replicas} is outside [{params.min_replicas}, {params.max_replicas}]")
    with errors("read scale"):
        current = await client.get(Deployment.Scale, name, namespace=ns)
    target = f"deployment {ns}/{name}"
    if current.spec is None:
        raise PermanentStepError(f"{target}: the scale subresource has no spec")
    previous = current.spec.replicas
    if previous == replicas:
        return StepResult(
            data={"previous": previous, "replicas": replicas, "changed": False},
            summary=f"{target} already has {replicas} replica(s)",
            targets=[target],
        )
    # Compare-and-set: the resourceVersion read above makes a concurrent change fail with 409.
    current.spec.replicas = replicas
    with errors(f"scale {target}"):
        await client.replace(current, name, namespace=ns, dry_run=request.dry_run)
    verb = "would scale" if request.dry_run else "scaled"
    return _done(
        request,
        target,
        f"{verb} {target} from {previous} to {replicas}",
        previous=previous,
        replicas=replicas,
        changed=not request.dry_run,
    )


async def rollout_restart(client: AsyncClient, request: StepRequest, params: DeploymentParams) -> StepResult:
    ns, name = params.namespace, params.name
    target = f"deployment {ns}/{name}"
    d = await get_deployment(client, ns, name)
    if d.spec and d.spec.paused:
        raise GuardViolation(f"{target} is paused; a restart would not roll out. Resume it first")
    if marked(d, request.key):
        return StepResult(
            data={"changed": False}, summary=f"{target} was already restarted by this run", targets=[target]
        )
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now, MARK: request.key}}}}}
    await _patch(client, request, f"restart {target}", name, ns, patch)
    verb = "would restart" if request.dry_run else "restarted"
    return _done(request, target, f"{verb} {target}", changed=not request.dry_run, restarted_at=now)


async def set_env(client: AsyncClient, request: StepRequest, params: SetEnvParams) -> StepResult:
    ns, name = params.namespace, params.name
    target = f"deployment {ns}/{name} container {params.container}"
    before = container_env(await get_deployment(client, ns, name), params.container)
    if before is None:
        raise PermanentStepError(f"{target}: no such container")
    env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.env.items()}
    await _patch(client, request, f"set env on {target}", name, ns, set_env_patch(params.container, env))
    previous: dict[str, JsonValue] = {k: before.get(k) for k in env}
    verb = "would set" if request.dry_run else "set"
    summary = f"{verb} {', '.join(f'{k}={v}' for k, v in env.items())} on {target}"
    return _done(request, target, summary, previous=previous, env=dict(env))


async def rollout_undo(client: AsyncClient, request: StepRequest, params: RolloutUndoParams) -> StepResult:
    ns, name = params.namespace, params.name
    target = f"deployment {ns}/{name}"
    d = await get_deployment(client, ns, name)
    if marked(d, request.key):
        return StepResult(
            data={"changed": False}, summary=f"{target} was already rolled back by this run", targets=[target]
        )
    current, uid = revision(d.metadata.annotations if d.metadata else None), d.metadata.uid if d.metadata else None
    by_revision: dict[int, ReplicaSet] = {}
    with errors(f"replica sets of {target}"):
        async for rs in client.list(ReplicaSet, namespace=ns):
            if rs.metadata and any(o.uid == uid for o in (rs.metadata.ownerReferences or [])):
                by_revision[revision(rs.metadata.annotations)] = rs
    wanted = params.to_revision or max((r for r in by_revision if r < current), default=0)
    old = by_revision.get(wanted)
    if old is None or old.spec is None or old.spec.template is None or wanted == current:
        raise PermanentStepError(f"{target}: no revision {wanted or 'before ' + str(current)} to roll back to")
    await _patch(
        client,
        request,
        f"roll back {target}",
        name,
        ns,
        undo_patch(old.spec.template.to_dict(), request.key),
        PatchType.JSON,
    )
    verb = "would roll back" if request.dry_run else "rolled back"
    return _done(
        request,
        target,
        f"{verb} {target} from revision {current} to {wanted}",
        from_revision=current,
        to_revision=wanted,
    )
