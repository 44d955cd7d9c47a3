"""The replay and shadow tests' playbook: one HTTP write per JobsStuck alert, its cooldown keyed by queue."""

from __future__ import annotations

from typing import Any

from service.playbooks.playbook import Playbook


def requeue(limits: dict[str, Any]) -> Playbook:
    """`requeue` with these limits (besides `cooldown_key: queue`)."""
    return Playbook.model_validate(
        {
            "name": "requeue",
            "match": {"alertname": "JobsStuck"},
            "act": [
                {
                    "id": "poke",
                    "action": "http.request",
                    "connection": "svc",
                    "approval": "none",
                    "with": {"method": "POST", "path": "/poke/{{ alert.labels.queue }}"},
                }
            ],
            "limits": {"cooldown_key": "{{ alert.labels.queue }}", **limits},
        }
    )
