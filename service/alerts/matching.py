"""Alertmanager-style matching, parsed once at load time: label matchers (RE2, anchored) and a playbook's match."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from service.alerts.webhook import Alert
from service.vocabulary.checked import checked_before

_MATCHER = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$")
MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True)
class LabelMatcher:
    """One Alertmanager matcher; regexes are fully anchored, a missing label matches as ''."""

    name: str
    op: MatchOp
    value: str

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        match = _MATCHER.match(text)
        if match is None:
            raise ValueError(f"bad matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex")
        raw = match["value"]
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"bad matcher {text!r}: unterminated or invalid quoted value") from exc
            if not isinstance(value, str):
                raise ValueError(f"bad matcher {text!r}: value must be a string")
        else:
            value = raw
        op: MatchOp = match["op"]  # type: ignore[assignment]
        if op in ("=~", "!~"):
            try:
                anchored(value)
            except re2.error as exc:
                message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                raise ValueError(f"bad regex in matcher {text!r} (RE2, as Alertmanager): {message}") from exc
        return cls(match["name"], op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = anchored(self.value).search(actual) is not None
        return found if self.op == "=~" else not found


@lru_cache(maxsize=4096)
def anchored(pattern: str) -> re2._Regexp[str]:
    """Compile a matcher regex as Alertmanager does: RE2 (linear time, no backreferences), anchored at both ends."""
    options = re2.Options()
    options.log_errors = False  # a bad pattern is reported as a lint problem, not on stderr
    return re2.compile(f"^(?:{pattern})$", options)


class Match(BaseModel):
    """Which alerts start this playbook."""

    model_config = ConfigDict(extra="forbid")

    alertname: str | None = None
    matchers: list[str] = Field(default_factory=list, description='Alertmanager matchers, e.g. severity=~"warn|crit"')
    status: Literal["firing", "resolved"] = "firing"

    _parsed: list[LabelMatcher] = PrivateAttr(default_factory=list)

    @field_validator("matchers")
    @classmethod
    def _parse_matchers(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for text in value if not checked_before(info) else ():
            LabelMatcher.parse(text)
        return value

    @model_validator(mode="after")
    def _not_everything(self) -> Match:
        if self.alertname is None and not self.matchers:
            raise ValueError("match needs an alertname or at least one matcher; a playbook never matches everything")
        self._parsed = [LabelMatcher.parse(text) for text in self.matchers]  # once, not per alert
        return self

    def matches(self, alert: Alert) -> bool:
        return alert.status == self.status and self.matches_labels(alert)

    def closes(self, alert: Alert) -> bool:
        """A resolved alert of an occurrence this playbook started a run for: it ends that run's writes."""
        return alert.status == "resolved" and self.status == "firing" and self.matches_labels(alert)

    def matches_labels(self, alert: Alert) -> bool:
        if self.alertname is not None and alert.alertname != self.alertname:
            return False
        return all(matcher.matches(alert.labels) for matcher in self._parsed)
