"""Who may call: the webhook's credential (Alertmanager), and approver tokens, each naming the person or group."""

from __future__ import annotations

import hmac
import ipaddress
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class WebAuth:
    """Bearer token and/or basic credentials for the webhook and the run API; none set means open."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.token or (self.username and self.password))

    def allows(self, header: str | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                user, _, password = b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            # Compare both parts, always, so timing says nothing about which one was wrong.
            ok_user = hmac.compare_digest(user.encode(), self.username.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            return ok_user and ok_password
        return False


@dataclass
class ApproverTokens:
    """Bearer tokens that decide at approval gates; the identity comes from the token, never from the request."""

    identities: Mapping[str, str] = field(default_factory=dict)  # token -> user id, or group:<name>

    def identity(self, header: str | None) -> str | None:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        found = None
        for token, who in self.identities.items():  # compare with every token, so timing tells nothing
            if hmac.compare_digest(value.strip().encode(), token.encode()):
                found = who
        return found


def is_loopback(host: str) -> bool:
    """Exactly a loopback address or `localhost`: `127.0.0.1.nip.io` and `localhost.example` are other hosts."""
    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
