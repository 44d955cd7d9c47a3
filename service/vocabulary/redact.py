"""Secrets never reach a log line or an error text: credentials in URLs and DSNs are replaced, whoever wrote them."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import traceback
from collections.abc import Iterable, Sequence

MASK = "***"
# scheme://user:password@host (DSNs, Redis URLs, HTTP URLs), the password part only.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)(?P<secret>[^@\s'\"]*)@")
# key=value forms: libpq keyword DSNs (password=…), query strings (?token=…), headers written out.
_KEY_VALUE = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key)\s*[=:]\s*)"
    r"(?P<secret>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)"
)
_BEARER = re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})")


def _credential(scheme: str, value: str) -> bool:
    """Whether the word after `Basic`/`Bearer` is a credential, not prose ("basic functionality"): Basic carries
    base64 of `user:password`; a bearer token is long or has digits or symbols, which plain words do not."""
    if scheme.lower() == "basic":
        try:
            return ":" in base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return False
    return len(value) >= 20 or not value.isalpha()


def redact(text: str) -> str:
    """The text with every credential-looking part masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}" if _credential(m["head"].strip(), m["secret"]) else m[0], text)


def mask(text: str, known: Sequence[str]) -> str:
    """The text with each known secret value masked (longest first), then whatever looks like a credential."""
    for secret in known:
        text = text.replace(secret, MASK)
    return redact(text)


def worth_masking(values: Iterable[str]) -> list[str]:
    """Secret values long enough to mask safely (a short one would mask ordinary words), longest first."""
    return sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)


class RedactSecrets(logging.Filter):
    """On a handler: every record it writes, ours or a library's, with its traceback, is redacted first; `known`
    are the secret values this process resolved, masked wherever they appear."""

    def __init__(self, known: Sequence[str] = ()) -> None:
        super().__init__()
        self.known = list(known)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = mask(message, self.known)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask("".join(traceback.format_exception(*record.exc_info)).rstrip(), self.known)
        elif record.exc_text:
            record.exc_text = mask(record.exc_text, self.known)
        return True


def install(logger: logging.Logger | None = None, known: Iterable[str] | None = None) -> None:
    """Put the filter on every handler of the root logger, where library records end up too; `known` (when given)
    replaces the secret values it masks."""
    for handler in (logger or logging.getLogger()).handlers:
        present = [f for f in handler.filters if isinstance(f, RedactSecrets)]
        if not present:
            handler.addFilter(RedactSecrets())
        if known is not None:
            for f in handler.filters:
                if isinstance(f, RedactSecrets):
                    f.known = worth_masking(known)
