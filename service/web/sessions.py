"""Console sessions: an approver token signs in once; a signed, expiring cookie and a CSRF token carry the session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from service.web.credentials import ApproverTokens

COOKIE = "remediate_console"
SESSION_SECONDS = 12 * 3600  # one on-call shift; then sign in again


@dataclass(frozen=True)
class Session:
    """Who is signed in (the identity their token maps to) and the CSRF token every POST of theirs must carry."""

    identity: str
    csrf: str
    viewer: bool = False  # signed in with a viewer token: reads everything, decides and flips nothing


def session_key(approvers: ApproverTokens, viewers: ApproverTokens | None = None) -> bytes:
    """The cookie's signing key, derived from every approver and viewer token: replicas with the same configuration
    accept each other's cookies without a new setting, and changing any token ends every session."""
    tokens = {**approvers.identities, **(viewers.identities if viewers else {})}
    material = "\n".join(sorted(f"{token}={who}" for token, who in tokens.items()))
    return hashlib.sha256(b"remediate console session\n" + material.encode()).digest()


class Sessions:
    """Signs sessions into cookies and reads them back; a cookie that is forged, altered or expired is no session."""

    def __init__(
        self, approvers: ApproverTokens, viewers: ApproverTokens | None = None, max_age: int = SESSION_SECONDS
    ) -> None:
        self.approvers, self.viewers, self.max_age = approvers, viewers or ApproverTokens(), max_age
        self._signer = URLSafeTimedSerializer(session_key(approvers, viewers), salt="console")

    def sign_in(self, token: str) -> Session | None:
        """A session for an approver's or a viewer's token; None for any other value (the webhook's token is
        neither)."""
        identity = self.approvers.identity(f"Bearer {token}")
        if identity is not None:
            return Session(identity, secrets.token_urlsafe(24))
        viewer = self.viewers.identity(f"Bearer {token}")
        return Session(viewer, secrets.token_urlsafe(24), viewer=True) if viewer else None

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("who"), str) or not isinstance(data.get("csrf"), str):
            return None
        return Session(data["who"], data["csrf"], viewer=data.get("viewer") is True)

    def write(self, response: Response, session: Session, secure: bool) -> None:
        value = self._signer.dumps({"who": session.identity, "csrf": session.csrf, "viewer": session.viewer})
        response.set_cookie(
            COOKIE, value, max_age=self.max_age, httponly=True, secure=secure, samesite="strict", path="/ui"
        )

    @staticmethod
    def end(response: Response, secure: bool) -> None:
        response.delete_cookie(COOKIE, path="/ui", httponly=True, secure=secure, samesite="strict")


def csrf_ok(session: Session, given: object) -> bool:
    """The form's CSRF token is the session's own (compared in constant time)."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())
