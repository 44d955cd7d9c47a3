"""`remediate dev`'s embedded connections take the user's REMEDIATE_CONFIG on top, approver tokens and limits too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service.cli.dev import dev_config
from service.config import Settings


def test_the_users_connections_tokens_and_limits_are_kept_over_the_embedded_ones(tmp_path: Path) -> None:
    """A name in the user's file wins; its approver tokens and service-wide limits are not dropped."""
    (tmp_path / "config.yaml").write_text(
        "connections: {jobs-db: {type: postgres, dsn: 'env:MY_DSN'}}\n"
        "approver_tokens: {oncall: 'env:ONCALL_TOKEN'}\n"
        "limits: {cooldown: 10m, max_runs_per_hour: 5}\n"
    )
    config = dev_config(Settings(config=tmp_path / "config.yaml"))
    assert config.connections["jobs-db"].model_dump()["dsn"] == "env:MY_DSN"
    assert "remediate" in config.connections  # the embedded ones stay
    assert config.approver_tokens == {"oncall": "env:ONCALL_TOKEN"}
    assert config.limits.cooldown == timedelta(minutes=10) and config.limits.max_runs_per_hour == 5
