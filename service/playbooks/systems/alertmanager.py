"""Alertmanager as the rails see it: a connection to its API v2 (is an alert still firing, silences); no steps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.playbooks.system import ConnectionModel, HttpAuth, System


class AlertmanagerConnection(ConnectionModel):
    """An Alertmanager (API v2): whether a fixed alert stopped firing, and silences while a run acts."""

    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None
    timeout: float = Field(default=5.0, gt=0)


ALERTMANAGER = System(AlertmanagerConnection, ())
