"""Slack as a notifier: its settings (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, REMEDIATE_SLACK_*) and declaration."""

from __future__ import annotations

from functools import partial

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.notify.base import ClickRoute, NotifierKind
from service.notify.slack.clicks import BODY_LIMIT, answer_clicks
from service.notify.slack.messages import NAME, SlackNotifier


class SlackSettings(BaseSettings):
    """Slack's settings; documented in docs/configuration.md with every other."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATE_SLACK_", extra="ignore", populate_by_name=True)

    bot_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "bot_token"))
    signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "signing_secret")
    )
    channel: str | None = Field(default=None, description="Channel id for approval requests.")
    api_url: str = "https://slack.com/api"


def _build(settings: SlackSettings) -> SlackNotifier:
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    return SlackNotifier(token, settings.channel, settings.api_url)


def _clicks(settings: SlackSettings) -> ClickRoute:
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    return ClickRoute("/slack/interactions", BODY_LIMIT, partial(answer_clicks, secret))


SLACK = NotifierKind(
    name=NAME,
    settings=SlackSettings,
    set_up=lambda s: s.bot_token is not None,
    build=_build,
    secrets=lambda s: [v.get_secret_value() for v in (s.bot_token, s.signing_secret) if v is not None],
    channel=lambda s: s.channel,
    clicks=_clicks,
)
