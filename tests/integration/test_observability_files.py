"""The shipped Grafana dashboard and Prometheus health rules: valid, tested by promtool, and about metrics the
service really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from service.durable.policy_activities import PolicyMetrics
from service.web.app import Metrics
from service.web.run_metrics import ApprovalGauges, worker_up
from tests.support.paths import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "remediate-dashboard.json"
HEALTH = ROOT / "deploy" / "prometheus" / "health"
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|range|interval)")
METRIC = re.compile(r"\bremediate_[a-z_]+\b")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def exported() -> set[str]:
    """Every sample name a serve process can export (as composed in service.app.process.serve)."""
    metrics = Metrics()
    PolicyMetrics(metrics.registry)
    ApprovalGauges(metrics.registry)
    worker_up(metrics.registry, lambda: None)
    registry: CollectorRegistry = metrics.registry
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum", "_created"))
    return names


def exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_the_dashboard_is_grafana_dashboard_json_with_a_prometheus_datasource_variable() -> None:
    """Unique panel ids, a grid position and a titled target on every panel, every query on the chosen datasource."""
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    (variable,) = board["templating"]["list"]
    assert variable == {**variable, "name": "datasource", "type": "datasource", "query": "prometheus"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    for panel in board["panels"]:
        assert panel["title"] and panel["type"] in ("timeseries", "stat", "table")
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        for target in panel["targets"]:
            assert target["refId"] and target["expr"] and target["datasource"]["uid"] == "${datasource}"


def test_every_dashboard_query_is_valid_promql_about_exported_metrics(tmp_path: Path) -> None:
    """Each query (Grafana's range variables made concrete) passes promtool as a recording rule, and every metric
    it names is one the service exports."""
    queries = exprs()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": GRAFANA_RANGES.sub("5m", q)}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    file = tmp_path / "dashboard-queries.yaml"
    file.write_text(json.dumps(rules))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(file)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = exported()
    unknown = {m for q in queries for m in METRIC.findall(q)} - names
    assert not unknown, unknown


def test_the_health_rules_pass_promtool_and_their_unit_tests_and_name_exported_metrics() -> None:
    """`promtool check rules` and `promtool test rules` as CI runs them; the rules watch metrics that exist."""
    rules = HEALTH / "remediate.rules.yaml"
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(HEALTH / "remediate.test.yaml")], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    loaded = YAML(typ="safe", pure=True).load(rules.read_text())
    alerts = {r["alert"]: r["expr"] for g in loaded["groups"] for r in g["rules"]}
    assert set(alerts) >= {
        "RemediateRunsFailing",
        "RemediateWebhookErrors",
        "RemediateNoWorkerPolling",
        "RemediateApprovalWaitingTooLong",
    }
    unknown = {m for expr in alerts.values() for m in METRIC.findall(expr)} - exported()
    assert not unknown, unknown
