"""The configuration file (REMEDIATE_CONFIG): connections of the declared systems, approvers and their tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.config import resolve_secret
from service.playbooks.steps import SYSTEMS
from service.playbooks.system import ConnectionModel
from service.rails.governor_state import Limits
from service.vocabulary.errors import ConfigError
from service.vocabulary.secrets import SecretRef

if TYPE_CHECKING:
    Connection = ConnectionModel
else:  # one of the systems' connection models, told apart by `type`
    Connection = Annotated[Union[tuple(s.connection for s in SYSTEMS)], Field(discriminator="type")]  # noqa: UP007


class ConfigFile(BaseModel):
    """The optional YAML file named by REMEDIATE_CONFIG."""

    model_config = ConfigDict(extra="forbid")

    connections: dict[str, Connection] = Field(default_factory=dict)
    approvers: list[str] = Field(default_factory=list, description="Default approvers: user ids or group names.")
    approver_groups: dict[str, list[str]] = Field(default_factory=dict, description="Group name -> user ids.")
    limits: Limits = Field(
        default_factory=Limits, description="Service-wide defaults for every playbook's `limits` (each field)."
    )
    approver_tokens: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="User id or group name -> a reference to the bearer token that decides as them in the API.",
    )
    viewer_tokens: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="Name -> a reference to a token that signs in to the console to read, never to decide or flip.",
    )

    @field_validator("connections")
    @classmethod
    def _names(cls, value: dict[str, Connection]) -> dict[str, Connection]:
        for name in value:
            if not name or len(name) > 63 or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"connection name {name!r}: use letters, digits, '-' and '_'")
            if name == "audit":  # `remediate migrate audit` means the audit store
                raise ValueError("connection name 'audit' is reserved for the audit store; choose another")
        return value

    def alertmanager(self, named: str | None) -> str | None:
        """The Alertmanager connection the rails use: the one named, else the only one configured."""
        found = [n for n, c in self.connections.items() if c.type == "alertmanager"]
        if named is not None:
            if named not in found:
                raise ConfigError(f"REMEDIATE_ALERTMANAGER={named}: no alertmanager connection of that name")
            return named
        return found[0] if len(found) == 1 else None

    def kinds(self) -> dict[str, str]:
        return {name: conn.type for name, conn in self.connections.items()}

    def resolve_approvers(self, names: list[str]) -> list[str]:
        """User ids allowed to decide: the playbook's list (or the default), with group names expanded."""
        resolved: list[str] = []
        for name in names or self.approvers:
            members = self.approver_groups.get(name, [name])
            if name in self.approver_groups and name in self.approver_tokens:
                members = [*members, f"group:{name}"]  # the group's own token decides as the group
            for user in members:
                if user not in resolved:
                    resolved.append(user)
        return resolved

    def approver_identities(self) -> dict[str, str]:
        """Resolved token -> identity (`group:<name>` for a group's token); refuses short or shared tokens."""
        found: dict[str, str] = {}
        for who, ref in self.approver_tokens.items():
            token = resolve_secret(ref)
            if len(token) < 16:
                raise ConfigError(f"approver token for {who} is shorter than 16 characters")
            if token in found:
                raise ConfigError(f"approver tokens for {found[token]} and {who} are the same")
            found[token] = f"group:{who}" if who in self.approver_groups else who
        return found

    def viewer_identities(self) -> dict[str, str]:
        """Resolved viewer token -> name; refuses short tokens and any token an approver or another viewer holds."""
        approvers, found = self.approver_identities(), dict[str, str]()
        for who, ref in self.viewer_tokens.items():
            token = resolve_secret(ref)
            if len(token) < 16:
                raise ConfigError(f"viewer token for {who} is shorter than 16 characters")
            if token in found or token in approvers:
                raise ConfigError(f"the viewer token for {who} is also someone else's token")
            found[token] = who
        return found


def load_config_file(path: Path | None) -> ConfigFile:
    if path is None:
        return ConfigFile()
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
