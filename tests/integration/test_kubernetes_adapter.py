"""Kubernetes actions through the real lightkube client against the in-repo fake API server."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.playbooks.systems.kubernetes import KubernetesConnection
from service.playbooks.templating import render
from service.runs.registry import Registry
from service.runs.state import StepRequest, StepResult
from service.targets.kubernetes.adapter import MARK, RESTARTED_AT, KubernetesAdapter, set_env_patch
from service.vocabulary.errors import GuardViolation, PermanentStepError, StepError
from tests.support.fake_kube import FakeKube
from tests.support.servers import serving


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, Registry]]:
    fake = FakeKube()
    async with serving(fake.app()) as url:
        (tmp_path / "kubeconfig").write_text(fake.kubeconfig(url))
        connection = KubernetesConnection(type="kubernetes", kubeconfig=str(tmp_path / "kubeconfig"))
        adapter = KubernetesAdapter({"k8s": connection})
        yield fake, Registry([adapter.actions()], require_all=False)
        await adapter.close()


async def call(registry: Registry, action: str, dry_run: bool = False, step: str = "s", **params: Any) -> Any:
    """Dispatch one step; the result is returned as a StepResult whose `data` tests may index freely."""
    result: StepResult = await registry.dispatch(
        StepRequest(run_id="run-1", step_id=step, action=action, connection="k8s", params=params, dry_run=dry_run)
    )
    return result


async def test_get_pods_builds_an_exact_selector(kube: tuple[FakeKube, Registry]) -> None:
    """The selector sent is exactly the validated pairs; only matching pods come back with their uid."""
    fake, registry = kube
    fake.add_pod("llm", "exec-1", {"app": "orchestrator", "role": "executor"})
    fake.add_pod("llm", "api-1", {"app": "orchestrator", "role": "api"})
    result = await call(registry, "k8s.get_pods", namespace="llm", selector={"app": "orchestrator", "role": "executor"})
    assert [p["name"] for p in result.data["pods"]] == ["exec-1"]
    assert (
        "GET",
        "/api/v1/namespaces/llm/pods",
        "limit=100&labelSelector=app%3Dorchestrator%2Crole%3Dexecutor",
    ) in fake.requests


@pytest.mark.parametrize("hostile", ["a,b=c", "x!=y", "", " ", "a b", "*", "in (a,b)", "a" * 64, "ünï"])
async def test_hostile_selector_values_are_refused(kube: tuple[FakeKube, Registry], hostile: str) -> None:
    """A label value that is not a valid Kubernetes label value never reaches the API."""
    fake, registry = kube
    with pytest.raises(PermanentStepError, match="rendered parameters are invalid"):
        await call(registry, "k8s.get_pods", namespace="llm", selector={"app": hostile})
    assert fake.requests == []


async def test_delete_pods_uses_typed_targets_and_caps(kube: tuple[FakeKube, Registry]) -> None:
    """Deletes exactly the listed pods; an empty list or one over max_targets changes nothing."""
    fake, registry = kube
    pods = [fake.add_pod("llm", f"exec-{i}", {"app": "x"}) for i in range(3)]
    refs = [{"namespace": "llm", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]} for p in pods]
    with pytest.raises(GuardViolation, match="empty target list"):
        await call(registry, "k8s.delete_pods", pods=[], max_targets=5)
    with pytest.raises(GuardViolation, match="over max_targets 2"):
        await call(registry, "k8s.delete_pods", pods=refs, max_targets=2)
    assert len(fake.pods) == 3
    dry = await call(registry, "k8s.delete_pods", dry_run=True, pods=refs[:2], max_targets=2)
    assert dry.dry_run and len(fake.pods) == 3 and any("dryRun=All" in q for _, _, q in fake.requests)
    done = await call(registry, "k8s.delete_pods", pods=refs[:2], max_targets=2)
    assert [r["outcome"] for r in done.data["results"]] == ["deleted", "deleted"]
    assert list(fake.pods) == [("llm", "exec-2")]


async def test_a_replaced_pod_is_not_deleted(kube: tuple[FakeKube, Registry]) -> None:
    """A pod recreated under the same name (new uid) since diagnosis is skipped, not deleted."""
    fake, registry = kube
    old = fake.add_pod("llm", "exec-0", {"app": "x"})
    fake.add_pod("llm", "exec-0", {"app": "x"})  # the controller replaced it
    result = await call(
        registry,
        "k8s.delete_pods",
        max_targets=1,
        pods=[{"namespace": "llm", "name": "exec-0", "uid": old["metadata"]["uid"]}],
    )
    assert "uid changed" in result.data["results"][0]["outcome"]
    assert ("llm", "exec-0") in fake.pods


async def test_eviction_respects_disruption_budgets(kube: tuple[FakeKube, Registry]) -> None:
    """An eviction refused by a PDB fails the step and leaves the pod; an allowed one removes it."""
    fake, registry = kube
    a, b = fake.add_pod("llm", "a", {"app": "x"}), fake.add_pod("llm", "b", {"app": "x"})
    fake.eviction_blocked.add(("llm", "b"))

    def ref(p: dict[str, Any]) -> dict[str, str]:
        return {"namespace": "llm", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}

    assert (await call(registry, "k8s.evict_pods", pods=[ref(a)], max_targets=1)).data["results"][0][
        "outcome"
    ] == "evicted"
    with pytest.raises(PermanentStepError, match="disruption budget"):
        await call(registry, "k8s.evict_pods", pods=[ref(b)], max_targets=1)
    assert list(fake.pods) == [("llm", "b")]


async def test_scale_records_the_previous_count_and_honours_bounds(kube: tuple[FakeKube, Registry]) -> None:
    """Scale stays within min/max replicas, reports the previous count, and dry-run persists nothing."""
    fake, registry = kube
    fake.add_deployment("llm", "orchestrator", replicas=3)
    with pytest.raises(PermanentStepError, match="outside"):
        await call(
            registry, "k8s.scale", namespace="llm", name="orchestrator", replicas=9, min_replicas=1, max_replicas=6
        )
    dry = await call(
        registry,
        "k8s.scale",
        dry_run=True,
        namespace="llm",
        name="orchestrator",
        replicas=6,
        min_replicas=1,
        max_replicas=6,
    )
    assert dry.data["previous"] == 3 and fake.deployments[("llm", "orchestrator")]["spec"]["replicas"] == 3
    done = await call(
        registry, "k8s.scale", namespace="llm", name="orchestrator", replicas=6, min_replicas=1, max_replicas=6
    )
    assert done.data == {"previous": 3, "replicas": 6, "changed": True, "dry_run": False}
    assert fake.deployments[("llm", "orchestrator")]["spec"]["replicas"] == 6


async def test_rollout_restart_once_per_run_and_never_when_paused(kube: tuple[FakeKube, Registry]) -> None:
    """The restart annotation is set once per run and step; a paused deployment is refused."""
    fake, registry = kube
    fake.add_deployment("gl", "agents")
    fake.add_deployment("gl", "paused", paused=True)
    first = await call(registry, "k8s.rollout_restart", namespace="gl", name="agents")
    again = await call(registry, "k8s.rollout_restart", namespace="gl", name="agents")
    annotations = fake.deployments[("gl", "agents")]["spec"]["template"]["metadata"]["annotations"]
    assert first.data["changed"] is True and again.data["changed"] is False
    assert RESTARTED_AT in annotations and annotations[MARK] == "run-1/s"
    with pytest.raises(GuardViolation, match="paused"):
        await call(registry, "k8s.rollout_restart", namespace="gl", name="paused")


async def test_set_env_keeps_sidecars_and_other_variables(kube: tuple[FakeKube, Registry]) -> None:
    """Setting one variable leaves the sidecar and the other variables in place."""
    fake, registry = kube
    fake.add_deployment("gl", "orchestrator", env={"LOG_LEVEL": "info", "MAX_CONCURRENT_NODES": "8"})
    result = await call(
        registry, "k8s.set_env", namespace="gl", name="orchestrator", container="app", env={"MAX_CONCURRENT_NODES": 2}
    )
    assert result.data["previous"] == {"MAX_CONCURRENT_NODES": "8"}
    containers = fake.deployments[("gl", "orchestrator")]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "MAX_CONCURRENT_NODES", "value": "2"},
    ]


def test_set_env_patch_matches_kubectl(tmp_path: Path) -> None:
    """Our strategic merge patch gives the same containers as `kubectl set env --local`."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (it is part of this machine image; Debian: kubernetes-client)"
    dep = FakeKube().add_deployment("gl", "orchestrator", env={"A": "1", "MAX": "8"})
    (tmp_path / "d.json").write_text(json.dumps(dep))
    ours = subprocess.run(
        [
            kubectl,
            "patch",
            "--local",
            "-f",
            str(tmp_path / "d.json"),
            "--type",
            "strategic",
            "-p",
            json.dumps(set_env_patch("app", {"MAX": "2", "NEW": "x"})),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = subprocess.run(
        [kubectl, "set", "env", "--local", "-f", str(tmp_path / "d.json"), "-c", "app", "MAX=2", "NEW=x", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def containers(out: str) -> list[tuple[str, str, list[dict[str, str]]]]:
        # kubectl set env also fills in `resources: {}`: compare what a patch can change.
        return [
            (c["name"], c["image"], c.get("env", [])) for c in json.loads(out)["spec"]["template"]["spec"]["containers"]
        ]

    assert containers(ours) == containers(theirs)
    assert [name for name, _, _ in containers(ours)] == ["app", "sidecar"]


async def test_rollout_undo_returns_to_the_previous_template(kube: tuple[FakeKube, Registry]) -> None:
    """After a change (revision 2), undo restores revision 1's pod template, once per run."""
    fake, registry = kube
    fake.add_deployment("wms", "workers", env={"MODE": "old"}, image="worker:v1")
    fake.deployments[("wms", "workers")]["spec"]["template"]["spec"]["containers"][0]["image"] = "worker:v2"
    fake._new_revision(fake.deployments[("wms", "workers")])
    undone = await call(registry, "k8s.rollout_undo", namespace="wms", name="workers")
    assert undone.data["from_revision"] == 2 and undone.data["to_revision"] == 1
    assert fake.deployments[("wms", "workers")]["spec"]["template"]["spec"]["containers"][0]["image"] == "worker:v1"
    again = await call(registry, "k8s.rollout_undo", namespace="wms", name="workers")
    assert again.data == {"changed": False}


async def test_reads_logs_deployment_and_metrics(kube: tuple[FakeKube, Registry]) -> None:
    """Logs are tailed and filtered here; deployment fields are typed; a missing metrics API is a clear error."""
    fake, registry = kube
    fake.add_pod("gl", "agent-1", {"agent-id": "a1"})
    fake.logs[("gl", "agent-1")] = ["start", "node n3 timeout", "ok", "node n4 timeout"]
    logs = await call(registry, "k8s.pod_logs", namespace="gl", pod="agent-1", tail_lines=3, pattern="timeout")
    assert logs.data["lines"] == ["node n3 timeout", "node n4 timeout"]
    fake.add_deployment("gl", "orch", replicas=4)
    dep = await call(registry, "k8s.get_deployment", namespace="gl", name="orch")
    assert dep.data["replicas"] == 4 and dep.data["revision"] == 1 and dep.data["paused"] is False
    with pytest.raises(StepError, match="metrics API"):
        await call(registry, "k8s.top_pods", namespace="gl", selector={"agent-id": "a1"})
    fake.metrics_enabled = True
    top = await call(registry, "k8s.top_pods", namespace="gl", selector={"agent-id": "a1"})
    assert top.data["count"] == 1


HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            " ",
            "a,b",
            "app!=x",
            "x in (a,b)",
            "*",
            "a=b",
            "-x",
            "x-",
            "a" * 64,
            "ünïcødé",
            "{{ 7*7 }}",
            "'; drop table pods; --",
            "a\nb",
            "a%2Cb",
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE, name=HOSTILE)
async def test_hostile_label_values_never_widen_a_selector_or_a_name(
    kube: tuple[FakeKube, Registry], value: str, name: str
) -> None:
    """A rendered alert value is either refused before any request, or sent as exactly one selector value/name."""
    fake, registry = kube
    fake.requests.clear()
    selector = render({"app": "{{ alert.labels.v }}"}, {"alert": {"labels": {"v": value}}})
    try:
        await call(registry, "k8s.get_pods", namespace="llm", selector=selector)
    except PermanentStepError:
        assert fake.requests == []  # refused: nothing reached the API
    else:
        [(_, _, query)] = fake.requests
        assert parse_qs(query)["labelSelector"] == [f"app={value}"]
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value)
    fake.requests.clear()
    with contextlib.suppress(PermanentStepError):
        await call(registry, "k8s.get_deployment", namespace="llm", name=name)
    if fake.requests:
        [(_, path, _)] = fake.requests
        assert path == f"/apis/apps/v1/namespaces/llm/deployments/{name}"


async def test_a_retried_write_after_it_completed_changes_nothing_more(kube: tuple[FakeKube, Registry]) -> None:
    """Each write sent twice with the same run and step (a retry after a lost worker): the second changes
    nothing: no new rollout (generation), no second scale, no pod touched twice."""
    fake, registry = kube
    fake.add_deployment("ns", "d", env={"A": "0"})
    pods = [fake.add_pod("ns", f"p{i}", {"app": "a"}) for i in range(2)]
    refs = [{"namespace": "ns", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]} for p in pods]
    writes: list[tuple[str, dict[str, Any]]] = [
        ("k8s.rollout_restart", {"namespace": "ns", "name": "d"}),
        ("k8s.set_env", {"namespace": "ns", "name": "d", "container": "app", "env": {"A": "1"}}),
        ("k8s.scale", {"namespace": "ns", "name": "d", "replicas": 4, "min_replicas": 1, "max_replicas": 5}),
        ("k8s.delete_pods", {"pods": refs[:1], "max_targets": 1}),
        ("k8s.evict_pods", {"pods": refs[1:], "max_targets": 1}),
    ]
    for action, params in writes:
        await call(registry, action, step=action, **params)
    generation = fake.deployments[("ns", "d")]["metadata"]["generation"]
    replicas = fake.deployments[("ns", "d")]["spec"]["replicas"]
    retried = [await call(registry, action, step=action, **params) for action, params in writes]
    assert fake.deployments[("ns", "d")]["metadata"]["generation"] == generation and replicas == 4
    assert retried[0].data == {"changed": False} and retried[2].data["changed"] is False
    assert [r.data["results"][0]["outcome"] for r in retried[3:]] == ["skipped: already gone"] * 2
