"""docs/actions.md is generated from the step models, and the registry is built from typed action specs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.playbooks.steps import ACTIONS
from service.playbooks.systems.kubernetes import GetPods, GetPodsParams, TopPods
from service.playbooks.systems.redis import ExpireParams
from service.runs.registry import Action, Registry, specs
from service.runs.state import StepRequest, StepResult
from service.vocabulary.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REMEDIATE = str(Path(sys.executable).parent / "remediate")


def test_committed_actions_doc_is_what_the_step_models_generate() -> None:
    """`remediate schema --actions-doc docs/actions.md` (a real process) reprints the committed file unchanged."""
    doc = ROOT / "docs" / "actions.md"
    out = subprocess.run(
        [REMEDIATE, "schema", "--actions-doc", str(doc)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out == doc.read_text(encoding="utf-8"), "run: remediate schema --actions-doc docs/actions.md"
    for action in ACTIONS:
        assert f"| `{action}` |" in out  # every action of the catalog has its row
    # Nested parameters show their shape and their fields' meaning, not just their name.
    assert "`backends` (required): `[{pid, backend_start}]`" in out
    assert "`still`: `{state[], idle_for, in_transaction_for}`" in out and "`still.in_transaction_for`: " in out


def test_remediate_schema_prints_the_committed_schema() -> None:
    """`remediate schema` (a real process) prints exactly the committed playbooks/schema.json."""
    out = subprocess.run([REMEDIATE, "schema"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == json.loads((ROOT / "playbooks" / "schema.json").read_text(encoding="utf-8"))


async def _pods(request: StepRequest, params: GetPodsParams) -> StepResult:
    return StepResult(summary=f"{params.namespace} {dict(params.selector)}")


async def test_an_action_gets_its_own_typed_parameters() -> None:
    """The registry hands a handler the parameter model its step declares, validated once as rendered values."""
    registry = Registry([specs(Action(GetPods, _pods))], require_all=False)
    request = StepRequest(
        run_id="r",
        step_id="s",
        action="k8s.get_pods",
        connection="c",
        params={"namespace": "ns", "selector": {"a": "b"}},
    )
    assert (await registry.dispatch(request)).summary == "ns {'a': 'b'}"


def test_registry_fails_at_start_up_on_a_gap_or_a_duplicate() -> None:
    """Two handlers for one action, a spec under another action's name, or a missing action stop start-up."""
    with pytest.raises(ConfigError, match="two handlers"):
        specs(Action(GetPods, _pods), Action(GetPods, _pods))
    with pytest.raises(ConfigError, match="two handlers"):
        Registry([specs(Action(GetPods, _pods)), specs(Action(GetPods, _pods))], require_all=False)
    with pytest.raises(ConfigError, match="unknown action"):
        Registry([{"k8s.top_pods": Action(GetPods, _pods)}], require_all=False)
    with pytest.raises(ConfigError, match="no handler for action"):
        Registry([specs(Action(GetPods, _pods))])
    assert TopPods.action_name() == "k8s.top_pods"


def test_each_write_reports_its_own_blast_radius() -> None:
    """A write's parameter model names its caps; the touched part comes from the result."""
    params = ExpireParams.model_validate(
        {"keys": [{"key": "k", "value": "v"}], "max_targets": 2, "ttl": "1m"}, context={"rendered": True}
    )
    assert params.blast_radius({}, ["key k"]) == "1 target(s); cap: max_targets 2"
