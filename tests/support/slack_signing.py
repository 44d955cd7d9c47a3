"""Slack's request signing (v0) and a decision app over recorded runs, for tests."""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.applications import Starlette
from starlette.testclient import TestClient

from service.notify.slack.kind import SLACK, SlackSettings
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision
from service.web.credentials import ApproverTokens, WebAuth
from service.web.decisions import decision_routes

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class RecordingRuns(TemporalRuns):
    """Stands in for the run side of the web app: records what would be signalled."""

    def __init__(self) -> None:
        self.decided: list[tuple[str, Decision]] = []

    async def decide(self, run_id: str, decision: Decision) -> None:
        self.decided.append((run_id, decision))


def client() -> tuple[TestClient, RecordingRuns]:
    runs = RecordingRuns()
    clicks = [SLACK.clicks(SlackSettings(signing_secret=SECRET))] if SLACK.clicks else []
    return TestClient(Starlette(routes=decision_routes(runs, WebAuth(), ApproverTokens(), clicks))), runs


def sign(raw: bytes, ts: int, secret: str = SECRET) -> str:
    return "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()


def signed_headers(raw: bytes) -> dict[str, str]:
    """The headers Slack sends with a body: the timestamp now and its v0 signature."""
    ts = int(time.time())
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(raw, ts)}
