"""Links from the console to where a run also lives: its workflow in the Temporal UI, its alert in Alertmanager."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Alertmanager's own rule: any other name cannot be matched


@dataclass(frozen=True)
class RunLinks:
    """The two UIs' addresses as people reach them (settings, never input); None: no such link."""

    temporal_ui: str | None = None
    namespace: str = "default"
    alertmanager_ui: str | None = None

    def workflow(self, run_id: str) -> str | None:
        """The Temporal UI's list of this namespace's workflows, narrowed to the run's id (every attempt of it)."""
        if not self.temporal_ui:
            return None
        query = quote(f'WorkflowId="{_escaped(run_id)}"', safe="")
        return f"{self.temporal_ui.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}/workflows?query={query}"

    def alert(self, labels: Mapping[str, str]) -> str | None:
        """Alertmanager's alert list, filtered to exactly this alert's labels."""
        if not self.alertmanager_ui:
            return None
        matchers = ",".join(f'{k}="{_escaped(v)}"' for k, v in sorted(labels.items()) if _LABEL_NAME.fullmatch(k))
        return f"{self.alertmanager_ui.rstrip('/')}/#/alerts?filter={quote('{' + matchers + '}', safe='')}"


def _escaped(value: str) -> str:
    # A quoted value in a matcher or a visibility query: a quote or backslash in it must not end the string.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
