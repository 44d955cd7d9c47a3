"""One webhook message as one durable delivery: the runs it starts and resolves, each playbook carried once."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from service.alerts.webhook import Alert, run_id
from service.playbooks.playbook import PlaybookVersion
from service.playbooks.shelf import CarriesPlaybook
from service.rails.governance import Governance
from service.runs.state import Durability, RunStart
from service.vocabulary.modes import Mode

DELIVER = "deliver"  # the local activity that starts and resolves a delivery's runs
DELIVERY_PREFIX = "delivery/"


class PlaybookTerms(CarriesPlaybook):
    """What every run of one playbook in a delivery carries: the playbook's document, its mode, approvers, rails."""

    mode: Mode
    approvers: list[str] = Field(default_factory=list)
    approval_channel: str | None = None
    governance: Governance = Field(default_factory=Governance)
    version: PlaybookVersion | None = None


class Delivery(BaseModel):
    """The durable form of one webhook message: the workflow that carries it starts or signals every run.

    Playbooks and alerts are each held once and runs name them by index, so a 50-alert message matched by one
    playbook carries the playbook once, not fifty times.
    """

    delivery_id: str
    durability: Durability = Field(default_factory=Durability)
    terms: list[PlaybookTerms] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    starts: list[tuple[int, int]] = Field(default_factory=list, description="(terms index, alert index) per run.")
    resolves: list[str] = Field(default_factory=list, description="Run ids whose alert resolved.")

    def runs(self) -> list[RunStart]:
        """Each run to start, exactly as the receiver would have started it itself."""
        runs = []
        for t, a in self.starts:
            terms, alert = self.terms[t], self.alerts[a]
            runs.append(
                RunStart(
                    run_id=run_id(terms.playbook_name, alert),
                    document=terms.document,
                    playbook=terms.playbook,
                    alert=alert,
                    mode=terms.mode,
                    approvers=terms.approvers,
                    approval_channel=terms.approval_channel,
                    durability=self.durability,
                    governance=terms.governance,
                    version=terms.version,
                )
            )
        return runs


class DeliveryCounts(BaseModel):
    """What a delivery did: runs started, runs that already existed, resolved signals delivered or not."""

    started: int = 0
    duplicates: int = 0
    resolved: int = 0
    not_open: int = Field(default=0, description="Resolved alerts with no open run (finished, or never started).")


def delivery_id(starts: list[str], resolves: list[str], window: int) -> str:
    """A delivery's workflow id: the same message (its occurrences and statuses) in the same window names the same
    delivery, so an identical resend is one rejected start; after the window it is delivered again, which lets
    a later resend start another attempt of a run that failed."""
    lines = sorted([f"start {k}" for k in starts] + [f"resolve {k}" for k in resolves])
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]
    return f"{DELIVERY_PREFIX}{digest}/{window}"
