"""A notifier is its declaration: settings, build, secrets and click route come from it, and nothing else names it."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.testclient import TestClient

from service.app.compose import NOTIFIERS, Notifiers
from service.config import Settings
from service.config_file import ConfigFile
from service.notify.base import ClickAnswer, ClickRoute, Decide, Headers, NotifierKind
from service.notify.slack.kind import SlackSettings
from service.notify.webhook import WebhookSettings
from service.stores.setup import scrubber
from service.vocabulary.approvals import Decision, NoNotifier
from service.web.credentials import ApproverTokens, WebAuth
from service.web.decisions import decision_routes
from tests.support.slack_signing import RecordingRuns


class PagerSettings(BaseSettings):
    """A toy tool's settings, read from REMEDIATE_PAGER_*."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATE_PAGER_", extra="ignore")

    token: SecretStr | None = None


async def _pager_clicks(body: bytes, headers: Headers, decide: Decide, now: float) -> ClickAnswer:
    if headers("x-pager-token") != ["s3cret-pager-token"]:
        return ClickAnswer(401, "bad pager token")
    run, _, verdict = body.decode().partition(":")
    verdict_of = "approve" if verdict == "yes" else "reject"
    await decide(run, Decision(verdict=verdict_of, user="U_PAGE", source="pager", decision_id=f"pager:{now}"))
    return ClickAnswer(200)


PAGER = NotifierKind(
    name="pager",
    settings=PagerSettings,
    set_up=lambda s: s.token is not None,
    build=lambda s: NoNotifier(),
    secrets=lambda s: [s.token.get_secret_value()] if s.token else [],
    clicks=lambda s: ClickRoute("/pager/clicks", 1024, _pager_clicks),
)


def test_a_new_notifier_is_its_declaration_plus_one_line() -> None:
    """A declared kind's click route is served, its clicks become decisions with its own source, its secret is
    masked in the audit trail, and it turns outcome messages on: nothing outside its declaration names it."""
    pager = PagerSettings(token=SecretStr("s3cret-pager-token"))
    notifiers = Notifiers({"pager": pager}, kinds=(*NOTIFIERS, PAGER))
    runs = RecordingRuns()
    app = Starlette(routes=decision_routes(runs, WebAuth(), ApproverTokens(), notifiers.clicks()))
    with TestClient(app) as http:
        assert http.post("/pager/clicks", content=b"run-1:yes").json() == {"error": "bad pager token"}
        answer = http.post("/pager/clicks", content=b"run-1:yes", headers={"x-pager-token": "s3cret-pager-token"})
        assert answer.status_code == 200
        assert http.post("/slack/interactions", content=b"payload=x").status_code == 401  # Slack: not set up
    [(run, decision)] = runs.decided
    assert (run, decision.source, decision.verdict) == ("run-1", "pager", "approve")
    assert notifiers.configured
    assert "s3cret" not in scrubber(Settings(), ConfigFile(), notifiers.secrets()).text("t=s3cret-pager-token")


def test_every_notifiers_secrets_are_masked_the_webhook_url_among_them() -> None:
    """The webhook notifier's URL (it may carry a token) and Slack's token and signing secret never reach the trail."""
    notifiers = Notifiers(
        {
            "slack": SlackSettings(bot_token="xoxb-sl4ck-t0ken", signing_secret="sl4ck-s1gning-secret"),
            "webhook": WebhookSettings(url=SecretStr("https://hooks.example/T0K3N-in-the-path")),
        }
    )
    scrub = scrubber(Settings(), ConfigFile(), notifiers.secrets())
    text = "xoxb-sl4ck-t0ken sl4ck-s1gning-secret https://hooks.example/T0K3N-in-the-path"
    assert "t0ken" not in scrub.text(text) and "s1gning" not in scrub.text(text) and "T0K3N" not in scrub.text(text)
    assert notifiers.channel() is None and notifiers.configured


def test_no_notifier_set_up_means_no_outcome_messages() -> None:
    """Without any notifier's settings the runs carry notify=false and approvals go through the API and the CLI."""
    notifiers = Notifiers({"slack": SlackSettings(), "webhook": WebhookSettings()})
    assert not notifiers.configured and isinstance(notifiers.notifier(), NoNotifier)
    assert [click.path for click in notifiers.clicks()] == ["/slack/interactions"]
