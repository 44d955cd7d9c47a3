"""What a shadow run records after its plan: whether the alert cleared by itself, and whether someone else acted."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ShadowVerdict = Literal[
    "watching", "human_acted", "cleared_without_action", "still_firing", "nothing_planned", "unknown"
]
VerifyNow = Literal["passed", "failed", "not_run"]
SHADOW_VERDICTS: dict[ShadowVerdict, str] = {  # how reports and pages name each verdict
    "watching": "watching",
    "human_acted": "a human acted",
    "cleared_without_action": "cleared without action",
    "still_firing": "still firing",
    "nothing_planned": "nothing planned",
    "unknown": "unknown",
}


class ShadowWatch(BaseModel):
    """What a shadow run saw after its plan: whether the alert cleared, and whether its targets changed meanwhile."""

    verdict: ShadowVerdict
    summary: str = ""
    watched_seconds: float = 0.0
    cleared_after: float | None = Field(default=None, description="Seconds from the run's start to the resolve.")
    planned: dict[str, list[str]] = Field(default_factory=dict, description="Write step -> the targets it planned.")
    still: dict[str, list[str]] = Field(default_factory=dict, description="The same writes' targets when it looked.")
    changed: list[str] = Field(default_factory=list, description="Planned targets no longer there when it looked.")
    verify: VerifyNow = "not_run"
