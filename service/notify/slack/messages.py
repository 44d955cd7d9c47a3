"""Slack messages: approval requests as Block Kit messages kept current, outcomes and announcements."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx2

from service.vocabulary.approvals import Gate, MessageRef, Notice
from service.vocabulary.errors import NotifyError
from service.vocabulary.outcomes import OutcomeNotice

NAME = "slack"  # the notifier named in a gate's message reference
_CLOSED = {
    "approved": "✅ Approved",
    "rejected": "⛔ Rejected",
    "expired": "⌛ Expired: nobody decided in time",
    "resolved": "🟢 The alert resolved: nothing will be done",
}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:2900]}


def escape(text: str) -> str:
    """Slack's own escaping: alert text can never become a mention, a channel ping or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def approval_blocks(gate: Gate, outcome: str = "") -> list[dict[str, Any]]:
    """The message: what fired, what was found, each planned write with targets and blast radius, who decides."""
    r = gate.request
    labels = escape(", ".join(f"{k}={v}" for k, v in sorted(r.labels.items()) if k != "alertname"))
    expires = int(r.expires_at.timestamp())
    diagnosis = "\n".join(f"• {escape(d)}" for d in r.diagnosis[:10])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Approval needed: {r.playbook}"[:150]}},
        {"type": "section", "text": _mrkdwn(f"*{escape(r.alertname)}* {labels}\nRun `{escape(r.run_id)}`")},
        {"type": "section", "text": _mrkdwn("*Diagnosis*\n" + diagnosis)},
    ]
    if r.caution:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Why a human is asked*\n{escape(r.caution)}")})
    for w in r.writes:
        shown = escape(", ".join(w.targets[:10])) + (
            f" … and {len(w.targets) - 10} more" if len(w.targets) > 10 else ""
        )
        gate_note = "" if w.gated else " _(no approval needed on its own; runs after this gate)_"
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"*{escape(w.step)}* `{escape(w.action)}`{gate_note}\n{escape(w.summary)}\n"
                    f"Targets: {shown or 'none'}\nBlast radius: {escape(w.blast_radius)}"
                ),
            }
        )
    approvers = " ".join(f"<@{a}>" if a.startswith(("U", "W")) else a for a in r.approvers)
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"Approvers: {approvers} · needs {r.min_approvals} · expires "
                    f"<!date^{expires}^{{date_short_pretty}} {{time}}|{r.expires_at.isoformat()}>"
                )
            ],
        }
    )
    refused = [d for d in gate.decisions if d.outcome == "refused"]
    notes = [f"<@{escape(d.user)}> refused: {escape(d.reason)}" for d in refused[-3:]]
    if gate.approved_by and gate.status == "open":
        notes.append("Approved so far by " + ", ".join(f"<@{escape(u)}>" for u in gate.approved_by))
    if gate.notice:
        notes.append(escape(gate.notice))
    if notes:
        blocks.append({"type": "context", "elements": [_mrkdwn("\n".join(notes))]})
    if gate.status == "open":
        value = json.dumps({"run": r.run_id, "gate": r.gate})
        blocks.append(
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "style": "primary",
                        "value": value,
                        "text": {"type": "plain_text", "text": "Approve"},
                    },
                    {
                        "type": "button",
                        "action_id": "reject",
                        "style": "danger",
                        "value": value,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Reject this remediation?"},
                            "text": _mrkdwn("Nothing will be written and the run ends as rejected."),
                            "confirm": {"type": "plain_text", "text": "Reject"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                            "style": "danger",
                        },
                    },
                ],
            }
        )
    else:
        who = {
            "approved": " by " + ", ".join(f"<@{escape(u)}>" for u in gate.approved_by),
            "rejected": f" by <@{escape(gate.rejected_by or '')}>",
        }.get(gate.status, "")
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"*{_CLOSED[gate.status]}{who}*" + (f"\nOutcome: {escape(outcome)}" if outcome else "")
                ),
            }
        )
    return blocks


class SlackNotifier:
    """Posts a gate with chat.postMessage and keeps it current with chat.update."""

    def __init__(
        self,
        token: str | None,
        default_channel: str | None,
        api_url: str = "https://slack.com/api",
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._token, self._channel = token, default_channel
        self._client = httpx2.AsyncClient(base_url=api_url.rstrip("/"), timeout=10.0, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def publish(self, notice: Notice) -> MessageRef:
        gate = notice.gate
        posted = gate.message if gate.message and gate.message.notifier == NAME else None
        channel = (posted.channel if posted else None) or notice.channel or self._channel
        if not self._token or not channel:
            return MessageRef()
        # The fallback `text` is what notifications show: escaped like the blocks, or a label could @channel.
        text = escape(f"Approval needed: {gate.request.playbook} for {gate.request.alertname} ({gate.status})")
        body: dict[str, Any] = {"channel": channel, "text": text, "blocks": approval_blocks(gate, notice.outcome)}
        method = "chat.update" if posted else "chat.postMessage"
        if posted:
            body["ts"] = posted.id
        payload = await self._call(method, body)
        ts = str(payload.get("ts", posted.id if posted else ""))
        return MessageRef(notifier=NAME, channel=str(payload.get("channel", channel)), id=ts)

    async def report(self, notice: OutcomeNotice) -> MessageRef:
        posted = notice.message if notice.message and notice.message.notifier == NAME else None
        channel = (posted.channel if posted else None) or notice.channel or self._channel
        if not self._token or not channel:
            return MessageRef()
        lines = [f"*{escape(notice.text())}*"] + [f"• {escape(w)}" for w in notice.writes[:20]]
        if not notice.ended:
            lines.append("_in progress: this message is updated when the run ends_")
        lines.append(f"`remediate runs show {escape(notice.run_id)}`")
        body: dict[str, Any] = {
            "channel": channel,
            "text": escape(notice.text()),
            "blocks": [{"type": "section", "text": _mrkdwn("\n".join(lines))}],
        }
        if posted:
            body["ts"] = posted.id
        payload = await self._call("chat.update" if posted else "chat.postMessage", body)
        ts = str(payload.get("ts", posted.id if posted else ""))
        return MessageRef(notifier=NAME, channel=str(payload.get("channel", channel)), id=ts)

    async def announce(self, text: str) -> None:
        if self._token and self._channel:
            body = {"channel": self._channel, "text": escape(text), "blocks": [_section(text)]}
            await self._call("chat.postMessage", body)

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(
                f"/{method}", json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx2.HTTPError as exc:
            raise NotifyError(f"{method}: {exc}") from exc
        if response.status_code == 429:
            wait = int(response.headers.get("retry-after", "1") or 1)
            raise NotifyError(f"{method}: rate limited", retry_after=timedelta(seconds=wait))
        if response.status_code >= 500:
            raise NotifyError(f"{method}: Slack answered {response.status_code}")
        payload: dict[str, Any] = response.json()
        if not payload.get("ok"):
            error = str(payload.get("error", "unknown"))
            raise NotifyError(f"{method}: {error}", retryable=error in ("ratelimited", "internal_error"))
        return payload


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(escape(text))}
