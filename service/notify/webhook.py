"""A generic webhook notifier: approval requests, announcements and run outcomes as JSON POSTs, for chat or paging
tools other than Slack (one URL; each body says what it is, and a run's messages share its id)."""

from __future__ import annotations

from typing import Any

import httpx2
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.notify.base import NotifierKind
from service.vocabulary.approvals import MessageRef, Notice
from service.vocabulary.errors import NotifyError
from service.vocabulary.outcomes import OutcomeNotice
from service.vocabulary.redact import redact

NAME = "webhook"


class WebhookNotifier:
    """POSTs JSON to REMEDIATE_NOTIFY_WEBHOOK_URL; a 5xx, 429 or connection error is retried by the run."""

    def __init__(self, url: str, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self._url = url
        self._client = httpx2.AsyncClient(timeout=10.0, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def publish(self, notice: Notice) -> MessageRef:
        request = notice.gate.request
        await self._post(
            {
                "kind": "approval",
                "run_id": request.run_id,
                "playbook": request.playbook,
                "alertname": request.alertname,
                "status": notice.gate.status,
                "outcome": notice.outcome,
                "writes": [w.model_dump(mode="json") for w in request.writes],
                "expires_at": request.expires_at.isoformat(),
            },
            key=f"{request.run_id}/approval/{notice.gate.status}/{bool(notice.outcome)}",
        )
        return MessageRef()  # the webhook's message needs no id: each POST stands alone

    async def report(self, notice: OutcomeNotice) -> MessageRef:
        body = {"kind": "outcome", "text": notice.text(), **notice.model_dump(mode="json", exclude={"message"})}
        await self._post(body, key=f"{notice.run_id}/outcome/{notice.sequence}")
        return MessageRef(notifier=NAME, id=notice.run_id)

    async def announce(self, text: str) -> None:
        await self._post({"kind": "announcement", "text": text}, key="")

    async def _post(self, body: dict[str, Any], key: str) -> None:
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = await self._client.post(self._url, json=body, headers=headers)
        except httpx2.HTTPError as exc:
            raise NotifyError(f"notify webhook: {redact(str(exc))}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise NotifyError(f"notify webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise NotifyError(f"notify webhook refused the message: {response.status_code}", retryable=False)


class WebhookSettings(BaseSettings):
    """The webhook notifier's one setting, REMEDIATE_NOTIFY_WEBHOOK_URL (a secret: it may carry a token)."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATE_NOTIFY_WEBHOOK_", extra="ignore")

    url: SecretStr | None = Field(
        default=None, description="Also POST approval requests, announcements and run outcomes here as JSON."
    )


def _build(settings: WebhookSettings) -> WebhookNotifier:
    return WebhookNotifier(settings.url.get_secret_value() if settings.url else "")


WEBHOOK = NotifierKind(
    name=NAME,
    settings=WebhookSettings,
    set_up=lambda s: s.url is not None,
    build=_build,
    secrets=lambda s: [s.url.get_secret_value()] if s.url is not None else [],
)
