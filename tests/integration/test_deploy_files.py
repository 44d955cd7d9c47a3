"""deploy/ as shipped: the Dockerfile lints, the kustomize base renders and validates, its RBAC is exactly what the
Kubernetes adapter calls, and the systemd unit's ExecStart runs and stops cleanly."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from service.config_file import ConfigFile
from service.playbooks.systems.kubernetes import KubernetesConnection
from service.runs.registry import Registry
from service.runs.state import StepRequest
from service.targets.kubernetes.adapter import KubernetesAdapter
from tests.support.fake_kube import FakeKube
from tests.support.paths import ROOT
from tests.support.processes import REMEDIATE, start
from tests.support.servers import free_port, serving

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in YAML(typ="safe", pure=True).load_all(out) if d]


def test_dockerfile_lints_clean_and_runs_serve_as_a_non_root_user() -> None:
    """hadolint finds nothing; the image's entry point is `remediate serve`, as a numeric non-root user."""
    lint = subprocess.run([str(BIN / "hadolint"), str(DEPLOY / "container" / "Dockerfile")], capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["remediate"]' in text and 'CMD ["serve"]' in text
    assert re.search(r"^USER 10001$", text, re.M) and "HEALTHCHECK" in text and text.count("FROM ") == 2
    assert (ROOT / ".dockerignore").read_text().splitlines().count(".venv") == 1


def test_kustomize_base_renders_and_validates_against_the_kubernetes_schemas() -> None:
    """`kubectl kustomize` renders the base; every object passes kubernetes-validate --strict, offline."""
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, check=True)
    check = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-"], input=out.stdout, capture_output=True
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    kinds = sorted(d["kind"] for d in rendered())
    assert kinds == sorted(
        ["ServiceAccount"] * 2
        + ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "Service"]
        + ["Deployment"] * 2
        + ["PodDisruptionBudget"] * 2
    )


def test_deployments_probe_drain_and_configure_as_the_service_expects() -> None:
    """Two replicas each; probes on /readyz and /healthz; the worker's grace period covers the shutdown grace; the
    shipped config file is a valid REMEDIATE_CONFIG."""
    docs = rendered()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    env = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("remediate-env"))
    grace = float(env["data"]["REMEDIATE_SHUTDOWN_GRACE"])
    for name, shape in (("remediate-web", "--web-only"), ("remediate-worker", "--worker-only")):
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert spec["replicas"] == 2 and container["args"] == ["serve", shape]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["terminationGracePeriodSeconds"] > grace
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployments["remediate-web"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("remediate-config"))
    ConfigFile.model_validate(YAML(typ="safe", pure=True).load(config["data"]["config.yaml"]))


def _rule(method: str, path: str) -> tuple[str, str, str]:
    """(apiGroup, resource[/subresource], verb) of one request, as the API server's authorizer sees it."""
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"GET": "get" if named else "list", "DELETE": "delete", "PATCH": "patch", "PUT": "update", "POST": "create"}[
        method
    ]
    return group, resource, verb


async def test_rbac_grants_exactly_the_verbs_the_kubernetes_adapter_uses(tmp_path: Path) -> None:
    """Every Kubernetes action runs once (live and dry-run) against the fake API; the requests it made, as
    (group, resource, verb), equal what the shipped ClusterRole grants: nothing missing, nothing more."""
    fake = FakeKube()
    async with serving(fake.app()) as url:
        (tmp_path / "kubeconfig").write_text(fake.kubeconfig(url))
        adapter = KubernetesAdapter(
            {"k8s": KubernetesConnection(type="kubernetes", kubeconfig=str(tmp_path / "kubeconfig"))}
        )
        registry = Registry([adapter.actions()], require_all=False)
        pods = [fake.add_pod("ns", f"p{i}", {"app": "a"}) for i in range(2)]
        ref = [{"namespace": "ns", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]} for p in pods]
        fake.add_deployment("ns", "d")
        fake._new_revision(fake.deployments[("ns", "d")])  # a revision to roll back to
        fake.logs[("ns", "p0")] = ["line"]
        fake.metrics_enabled = True
        dep = {"namespace": "ns", "name": "d"}
        calls: list[tuple[str, dict[str, Any]]] = [
            ("k8s.get_pods", {"namespace": "ns", "selector": {"app": "a"}}),
            ("k8s.pod_logs", {"namespace": "ns", "pod": "p0"}),
            ("k8s.get_deployment", dep),
            ("k8s.top_pods", {"namespace": "ns", "selector": {"app": "a"}}),
            ("k8s.scale", {**dep, "replicas": 3, "min_replicas": 1, "max_replicas": 5}),
            ("k8s.set_env", {**dep, "container": "app", "env": {"A": "1"}}),
            ("k8s.rollout_restart", dep),
            ("k8s.rollout_undo", dep),
            ("k8s.evict_pods", {"pods": ref[:1], "max_targets": 1}),
            ("k8s.delete_pods", {"pods": ref[1:], "max_targets": 1}),
        ]
        assert {a for a, _ in calls} == set(adapter.actions())  # every action the adapter offers is exercised
        for dry_run in (True, False):
            for action, params in calls:
                step = f"s-{uuid.uuid4().hex[:6]}"
                await registry.dispatch(
                    StepRequest(
                        run_id="r", step_id=step, action=action, connection="k8s", params=params, dry_run=dry_run
                    )
                )
        await adapter.ping("k8s")
        await adapter.close()
    used = {_rule(method, path) for method, path, _ in fake.requests}
    [role] = [d for d in rendered() if d["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert used == granted, f"missing: {used - granted}; granted but unused: {granted - used}"


def _unit() -> tuple[dict[str, str], list[str], float]:
    env: dict[str, str] = {}
    exec_start: list[str] = []
    stop_timeout = 90.0
    for line in (DEPLOY / "remediate.service").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, setting = value.partition("=")
            env[name] = setting
        elif key == "ExecStart":
            exec_start = shlex.split(value)
        elif key == "TimeoutStopSec":
            stop_timeout = float(value)
    return env, exec_start, stop_timeout


@pytest.mark.process
async def test_systemd_unit_exec_start_serves_and_stops_cleanly_on_sigterm(
    temporal_env_address: str, tmp_path: Path
) -> None:
    """The unit's ExecStart, with its Environment lines (paths moved under a scratch root, the listener on
    loopback) and an EnvironmentFile's settings, becomes ready and exits 0 on SIGTERM within TimeoutStopSec."""
    env, exec_start, stop_timeout = _unit()
    assert exec_start[0] == "/opt/remediate/.venv/bin/remediate" and exec_start[1:] == ["serve"]
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "selftest.yaml").write_text((ROOT / "playbooks" / "selftest.yaml").read_text())
    env = {k: v.replace("/etc/remediate", str(tmp_path)) for k, v in env.items()}
    env["REMEDIATE_LISTEN"] = listen = f"127.0.0.1:{free_port()}"
    (tmp_path / "config.yaml").write_text(f'connections:\n  remediate: {{type: http, base_url: "http://{listen}"}}\n')
    # What /etc/remediate/secrets.env holds on a real host.
    env.update({"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_WEBHOOK_TOKEN": "unit-token"})
    env["REMEDIATE_TASK_QUEUE"] = f"unit-{uuid.uuid4().hex[:8]}"
    assert Path(REMEDIATE).name == Path(exec_start[0]).name
    service = start("systemd", exec_start[1:], env, tmp_path, port=int(env["REMEDIATE_LISTEN"].rsplit(":", 1)[1]))
    try:
        await service.wait_ready()
    except AssertionError:
        service.kill()
        raise
    assert await service.terminate(within=stop_timeout) == 0, service.text()[-2000:]
