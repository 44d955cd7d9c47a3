"""Slack's clicks: signed interaction payloads (signature v0) turned into decisions, at /slack/interactions."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.notify.base import ClickAnswer, Decide, Headers
from service.vocabulary.approvals import Decision, Verdict

SIGNATURE_WINDOW = 300  # seconds, as Slack recommends against replays
BODY_LIMIT = 64 * 1024


def verify_signature(
    secret: str, timestamps: Sequence[str], signatures: Sequence[str], body: bytes, now: float
) -> bool:
    """Slack signature v0: HMAC-SHA256 over `v0:{ts}:{raw body}`, within 5 minutes, compared in constant time."""
    # Parsed defensively: ASCII digits only, and few enough that the arithmetic below cannot overflow.
    if len(timestamps) != 1 or len(signatures) != 1 or not re.fullmatch(r"[0-9]{1,12}", timestamps[0]):
        return False
    if abs(now - int(timestamps[0])) > SIGNATURE_WINDOW:
        return False
    base = b"v0:" + timestamps[0].encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signatures[0].encode())


class _SlackUser(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")


class _SlackAction(BaseModel):
    action_id: str = Field(max_length=255)
    value: str = Field(default="", max_length=2000)
    action_ts: str = Field(default="", max_length=40)


class _SlackPayload(BaseModel):
    """The part of a block_actions payload we read; anything else Slack sends is ignored."""

    user: _SlackUser
    actions: list[_SlackAction] = Field(max_length=20)


class ButtonValue(BaseModel):
    """What our buttons carry: only the run and the gate, never what to do."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(min_length=1, max_length=300)
    gate: str = Field(default="act", min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class Click:
    """One Approve or Reject press, validated."""

    verdict: Verdict
    user: str
    run: str
    gate: str
    action_ts: str


def interaction_decisions(body: bytes) -> list[tuple[str, Decision]]:
    """The run and the decision of each Approve or Reject press in a signed interaction body (ValueError if bad);
    Slack's own user id and action timestamp make a re-delivered click count once."""
    return [
        (
            click.run,
            Decision(
                gate=click.gate,
                verdict=click.verdict,
                user=click.user,
                source="slack",
                decision_id=f"slack:{click.user}:{click.action_ts}"[:200],
            ),
        )
        for click in parse_interaction(body)
    ]


def parse_interaction(body: bytes) -> list[Click]:
    """The approve/reject clicks in a signed interaction body; ValueError with a reason for anything malformed."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False, max_num_fields=5)
        raw = form.get("payload", [""])
        if len(raw) != 1:
            raise ValueError("exactly one `payload` field is expected")
        payload = _SlackPayload.model_validate_json(raw[0])
        clicks = []
        for action in payload.actions:
            if action.action_id in ("approve", "reject"):
                value = ButtonValue.model_validate_json(action.value)
                verdict: Verdict = "approve" if action.action_id == "approve" else "reject"
                clicks.append(Click(verdict, payload.user.id, value.run, value.gate, action.action_ts))
    except (UnicodeDecodeError, ValidationError) as exc:
        raise ValueError(f"not a block_actions payload: {exc}".splitlines()[0][:300]) from exc
    return clicks


async def answer_clicks(secret: str | None, body: bytes, headers: Headers, decide: Decide, now: float) -> ClickAnswer:
    """Verify the raw bytes before anything is parsed, then send each click's decision to its run."""
    if not secret or not verify_signature(
        secret, headers("x-slack-request-timestamp"), headers("x-slack-signature"), body, now
    ):
        return ClickAnswer(401, "bad Slack signature")
    try:
        decisions = interaction_decisions(body)
    except ValueError as exc:
        return ClickAnswer(400, str(exc))
    for run_id, decision in decisions:
        await decide(run_id, decision)
    return ClickAnswer(200)  # Slack wants an answer within 3 s; the run updates the message
