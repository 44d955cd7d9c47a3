"""A fake Kubernetes API server: the REST subset the adapter uses, served over real HTTP to the real client.

It keeps pods, deployments (with ReplicaSet revisions), PodDisruptionBudget-style eviction blocks and logs;
`dryRun=All` validates and answers without persisting, as the real API server does.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

Obj = dict[str, Any]
_LIST_MERGE_KEYS = {
    "containers": "name",
    "env": "name",
    "initContainers": "name",
    "volumes": "name",
    "ports": "containerPort",
}


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge for the fields the adapter patches: named lists merge by key, null deletes."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif key in _LIST_MERGE_KEYS and isinstance(value, list) and isinstance(merged.get(key), list):
            by = _LIST_MERGE_KEYS[key]
            items = merged[key]
            for item in value:
                existing = next((i for i in items if i.get(by) == item.get(by)), None)
                if existing is None:
                    items.append(copy.deepcopy(item))
                else:
                    items[items.index(existing)] = strategic_merge(existing, item)
        else:
            merged[key] = strategic_merge(merged.get(key), value)
    return merged


def _rfc7386(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _rfc7386(merged.get(key), value)
    return merged


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902, the `replace` and `add` operations kubectl's rollback uses."""
    result = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = result
        for part in parts[:-1]:
            node = node[part]
        if op["op"] not in ("replace", "add"):
            raise ValueError(f"unsupported op {op['op']}")
        node[parts[-1]] = copy.deepcopy(op["value"])
    return result


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        code,
    )


@dataclass
class FakeKube:
    """State and recorded requests of the fake API server."""

    pods: dict[tuple[str, str], Obj] = field(default_factory=dict)
    deployments: dict[tuple[str, str], Obj] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], Obj] = field(default_factory=dict)
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    eviction_blocked: set[tuple[str, str]] = field(default_factory=set)
    metrics_enabled: bool = False
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def _version(self) -> str:
        return str(next(self._versions))

    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        ready: bool = True,
        containers: tuple[str, ...] = ("app",),
    ) -> Obj:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": dict(labels),
                "resourceVersion": self._version(),
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": c, "image": "img"} for c in containers]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": c,
                        "ready": ready,
                        "restartCount": 0 if ready else 7,
                        "image": "img",
                        "imageID": "",
                        "state": {"running": {}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}},
                    }
                    for c in containers
                ],
            },
        }
        self.pods[(namespace, name)] = pod
        return pod

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int = 2,
        env: dict[str, str] | None = None,
        image: str = "app:v1",
        paused: bool = False,
    ) -> Obj:
        template = {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": [
                    {"name": "app", "image": image, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]},
                    {"name": "sidecar", "image": "proxy:1"},
                ]
            },
        }
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "resourceVersion": self._version(),
                "annotations": {},
            },
            "spec": {
                "replicas": replicas,
                "paused": paused,
                "selector": {"matchLabels": {"app": name}},
                "template": template,
            },
            "status": {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas},
        }
        self.deployments[(namespace, name)] = dep
        self._new_revision(dep)
        return dep

    def _new_revision(self, dep: Obj) -> None:
        revision = int(dep["metadata"]["annotations"].get("deployment.kubernetes.io/revision", "0")) + 1
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        template = copy.deepcopy(dep["spec"]["template"])
        template["metadata"].setdefault("labels", {})["pod-template-hash"] = f"h{revision}"
        self.replicasets[(ns, f"{name}-{revision}")] = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{revision}",
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": name,
                        "uid": dep["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": template},
        }

    # ---- HTTP ------------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def record(request: Request) -> None:
            self.requests.append((request.method, request.url.path, request.url.query))

        async def pods(request: Request) -> Response:
            await record(request)
            ns = request.path_params["ns"]
            selector = request.query_params.get("labelSelector", "")
            wanted: dict[str, str] = {}
            for term in filter(None, selector.split(",")):
                key, sep, value = term.partition("=")
                if sep != "=" or not key or any(c in term for c in "!()<> "):
                    return _status(400, "BadRequest", f"unable to parse requirement: {term!r}")
                wanted[key] = value
            items = [
                p
                for (pns, _), p in sorted(self.pods.items())
                if pns == ns and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            return JSONResponse(
                {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}
            )

        async def pod(request: Request) -> Response:
            await record(request)
            key = (request.path_params["ns"], request.path_params["name"])
            found = self.pods.get(key)
            if found is None:
                return _status(404, "NotFound", f'pods "{key[1]}" not found')
            if request.method == "DELETE" and request.query_params.get("dryRun") != "All":
                del self.pods[key]
            return JSONResponse(found)

        async def eviction(request: Request) -> Response:
            await record(request)
            key = (request.path_params["ns"], request.path_params["name"])
            body = json.loads(await request.body())
            found = self.pods.get(key)
            if found is None:
                return _status(404, "NotFound", f'pods "{key[1]}" not found')
            uid = (body.get("deleteOptions") or {}).get("preconditions", {}).get("uid")
            if uid and uid != found["metadata"]["uid"]:
                return _status(409, "Conflict", "Precondition failed: UID in precondition does not match")
            if key in self.eviction_blocked:
                return _status(
                    429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
                )
            if request.query_params.get("dryRun") != "All":
                del self.pods[key]
            return JSONResponse(body, 201)

        async def logs(request: Request) -> Response:
            await record(request)
            key = (request.path_params["ns"], request.path_params["name"])
            if key not in self.pods:
                return _status(404, "NotFound", f'pods "{key[1]}" not found')
            lines = self.logs.get(key, [])
            tail = int(request.query_params.get("tailLines", "0") or 0)
            return PlainTextResponse("".join(f"{line}\n" for line in (lines[-tail:] if tail else lines)))

        async def deployment(request: Request) -> Response:
            await record(request)
            key = (request.path_params["ns"], request.path_params["name"])
            found = self.deployments.get(key)
            if found is None:
                return _status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
            if request.method == "GET":
                return JSONResponse(found)
            kind = request.headers.get("content-type", "")
            patch = json.loads(await request.body())
            if "strategic-merge-patch" in kind:
                updated = strategic_merge(found, patch)
            elif "merge-patch" in kind:
                updated = _rfc7386(found, patch)
            elif "json-patch" in kind:
                updated = json_patch(found, patch)
            else:
                return _status(415, "UnsupportedMediaType", kind)
            if request.query_params.get("dryRun") == "All":
                return JSONResponse(updated)
            updated["metadata"]["resourceVersion"] = self._version()
            if updated["spec"]["template"] != found["spec"]["template"]:
                updated["metadata"]["generation"] += 1
                self._new_revision(updated)
            self.deployments[key] = updated
            return JSONResponse(updated)

        async def scale(request: Request) -> Response:
            await record(request)
            key = (request.path_params["ns"], request.path_params["name"])
            found = self.deployments.get(key)
            if found is None:
                return _status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
            current: Obj = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": key[1],
                    "namespace": key[0],
                    "resourceVersion": found["metadata"]["resourceVersion"],
                },
                "spec": {"replicas": found["spec"]["replicas"]},
                "status": {"replicas": found["spec"]["replicas"]},
            }
            if request.method == "GET":
                return JSONResponse(current)
            body = json.loads(await request.body())
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return _status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if request.query_params.get("dryRun") != "All":
                found["spec"]["replicas"] = body["spec"]["replicas"]
                found["metadata"]["resourceVersion"] = self._version()
            current["spec"]["replicas"] = body["spec"]["replicas"]
            return JSONResponse(current)

        async def replicasets(request: Request) -> Response:
            await record(request)
            items = [rs for (ns, _), rs in sorted(self.replicasets.items()) if ns == request.path_params["ns"]]
            return JSONResponse({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": items})

        async def metrics(request: Request) -> Response:
            await record(request)
            if not self.metrics_enabled:
                return _status(404, "NotFound", "the server could not find the requested resource")
            items = [
                {
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "kind": "PodMetrics",
                    "metadata": {"name": p["metadata"]["name"], "namespace": ns},
                    "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}}],
                }
                for (ns, _), p in sorted(self.pods.items())
                if ns == request.path_params["ns"]
            ]
            return JSONResponse(
                {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {}, "items": items}
            )

        base, apps = "/api/v1/namespaces/{ns}", "/apis/apps/v1/namespaces/{ns}"
        return Starlette(
            routes=[
                Route(f"{base}/pods", pods, methods=["GET"]),
                Route(f"{base}/pods/{{name}}", pod, methods=["GET", "DELETE"]),
                Route(f"{base}/pods/{{name}}/eviction", eviction, methods=["POST"]),
                Route(f"{base}/pods/{{name}}/log", logs, methods=["GET"]),
                Route(f"{apps}/deployments/{{name}}", deployment, methods=["GET", "PATCH"]),
                Route(f"{apps}/deployments/{{name}}/scale", scale, methods=["GET", "PUT"]),
                Route(f"{apps}/replicasets", replicasets, methods=["GET"]),
                Route("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", metrics, methods=["GET"]),
            ]
        )

    def kubeconfig(self, server: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u", "namespace": "default"}}],
                "users": [{"name": "u", "user": {"token": "fake-token"}}],
            }
        )
