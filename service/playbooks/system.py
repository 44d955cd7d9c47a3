"""A target system as playbooks see it, declared once: its connection model and its step models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from pydantic import BaseModel, ConfigDict

from service.playbooks.step_base import StepBase
from service.vocabulary.secrets import SecretRef


class ConnectionModel(BaseModel):
    """A connection of the configuration file: its `type` names the system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class HttpAuth(BaseModel):
    """Bearer token or basic credentials, as references (the systems reached over HTTP share it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bearer: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None


@dataclass(frozen=True)
class System:
    """One target system: the config file's connection union, the step union and the adapters derive from these."""

    connection: type[ConnectionModel]
    steps: tuple[type[StepBase], ...] = ()

    @property
    def name(self) -> str:
        """The connection's `type`, which steps name as their `connection_type` and adapters serve."""
        (name,) = get_args(self.connection.model_fields["type"].annotation)
        return str(name)
