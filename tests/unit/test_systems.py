"""A target system is declared once (its connection and steps): the unions and the adapters follow from it."""

from __future__ import annotations

import pytest

from service.app import compose
from service.config_file import ConfigFile
from service.playbooks.steps import ACTIONS, SYSTEMS
from service.vocabulary.errors import ConfigError


def test_every_action_and_connection_type_comes_from_one_declared_system() -> None:
    """Each step names the system that declares it, and the configuration accepts exactly the systems' types."""
    declared = {step.action_name(): system.name for system in SYSTEMS for step in system.steps}
    assert declared == {action: step.connection_type for action, step in ACTIONS.items()}
    assert len({s.name for s in SYSTEMS}) == len(SYSTEMS)
    schema = ConfigFile.model_json_schema()
    types = {d["properties"]["type"]["const"] for d in schema["$defs"].values() if "type" in d.get("properties", {})}
    assert types == {s.name for s in SYSTEMS}


def test_a_system_without_an_adapter_stops_the_process_from_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """Left out of ADAPTERS (or served twice), a declared system is refused when adapters are built, not at a run."""
    assert {a.system for a in compose.ADAPTERS} == set(SYSTEMS)
    monkeypatch.setattr(compose, "ADAPTERS", compose.ADAPTERS[1:])
    with pytest.raises(ConfigError, match="declared systems"):
        compose.Adapters.build(ConfigFile())
    monkeypatch.setattr(compose, "ADAPTERS", (*compose.ADAPTERS, compose.ADAPTERS[0]))
    with pytest.raises(ConfigError, match="declared systems"):
        compose.Adapters.build(ConfigFile())
