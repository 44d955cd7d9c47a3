"""What the Kubernetes adapter's modules share: the one error map, objects as plain data, and patch bodies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx2
from lightkube import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from pydantic import JsonValue

from service.vocabulary.errors import PermanentStepError, RetryableStepError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
MARK = "remediate.dev/applied-by"  # run/step that made a change, so a retried activity does not repeat it
REVISION = "deployment.kubernetes.io/revision"
RETRYABLE = (429, 500, 502, 503, 504)


@contextmanager
def errors(what: str) -> Iterator[None]:
    """The one place lightkube and httpx errors become step errors, keeping the API's status code."""
    try:
        yield
    except ApiError as exc:
        code = exc.status.code or 0
        message = f"{what}: {code} {exc.status.reason}: {exc.status.message}"
        error = RetryableStepError if code in RETRYABLE else PermanentStepError
        raise error(message, status=code) from exc
    except httpx2.HTTPError as exc:
        raise RetryableStepError(f"{what}: {exc}") from exc


def pod_data(pod: Pod) -> dict[str, JsonValue]:
    statuses = (pod.status.containerStatuses or []) if pod.status else []
    meta = pod.metadata
    return {
        "namespace": meta.namespace if meta else None,
        "name": meta.name if meta else None,
        "uid": meta.uid if meta else None,
        "labels": dict((meta.labels if meta else None) or {}),
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


def deployment_data(d: Deployment) -> dict[str, JsonValue]:
    meta, spec = d.metadata, d.spec
    containers = spec.template.spec.containers if spec and spec.template.spec else []
    return {
        "namespace": meta.namespace if meta else None,
        "name": meta.name if meta else None,
        "uid": meta.uid if meta else None,
        "replicas": spec.replicas if spec else None,
        "paused": bool(spec.paused) if spec else False,
        "ready_replicas": (d.status.readyReplicas or 0) if d.status else 0,
        "updated_replicas": (d.status.updatedReplicas or 0) if d.status else 0,
        "revision": revision(meta.annotations if meta else None),
        "containers": [
            {"name": c.name, "image": c.image, "env": {e.name: e.value for e in (c.env or []) if e.value is not None}}
            for c in containers
        ],
    }


def revision(annotations: Mapping[str, str] | None) -> int:
    return int((annotations or {}).get(REVISION, "0"))


def container_env(d: Deployment, container: str) -> dict[str, str] | None:
    spec = d.spec.template.spec if d.spec else None
    for c in spec.containers if spec else []:
        if c.name == container:
            return {e.name: e.value for e in (c.env or []) if e.value is not None}
    return None


def marked(d: Deployment, key: str) -> bool:
    """Whether this run's step already changed the deployment (its mark is on the pod template)."""
    template_meta = d.spec.template.metadata if d.spec and d.spec.template else None
    marks = ((template_meta.annotations or {}) if template_meta else {}).get(MARK, "")
    return key in marks.split(",")


def set_env_patch(container: str, env: Mapping[str, str]) -> dict[str, Any]:
    """A strategic merge patch that sets variables on one container; other containers and variables survive."""
    return {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": container, "env": [{"name": k, "value": v} for k, v in env.items()]}]}
            }
        }
    }


def undo_patch(template: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """As `kubectl rollout undo` does: replace the whole pod template with the old revision's, marked."""
    template.setdefault("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    template["metadata"].setdefault("annotations", {})[MARK] = key
    return [{"op": "replace", "path": "/spec/template", "value": template}]
