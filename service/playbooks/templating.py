"""Sandboxed Jinja2 expressions and templates; alert values are only ever variables, never template source."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import JsonValue

from service.vocabulary.errors import TemplateError

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


def is_template(text: str) -> bool:
    """True when a string holds template syntax; plain strings are taken literally."""
    return any(marker in text for marker in _MARKERS)


Escape = Literal["none", "url", "promql", "visibility", "glob"]


def _url_segment(value: object) -> str:
    # Every value rendered into a URL path becomes one encoded segment: '?a=b' stays data. A value that would be
    # no segment, a step up, or more than one segment once a server decodes it is refused outright.
    text = str(value)
    if text in ("", ".", "..") or any(c in text for c in "/\\"):
        raise TemplateError(f"value {text!r} cannot be one URL path segment (empty, '.', '..' or a separator)")
    return quote(text, safe="")


def _promql_string(value: object) -> str:
    # Values land inside PromQL double-quoted strings; escaping keeps a label value from closing them.
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _visibility_string(value: object) -> str:
    # Temporal's list filter has no escape for quotes: a value that could end a string literal is refused.
    text = str(value)
    if any(c in text for c in "'\"\\`\n\r"):
        raise TemplateError(f"value {text!r} cannot be placed in a visibility query (quotes or backslashes)")
    return text


def _glob_literal(value: object) -> str:
    # Redis MATCH patterns: a value matches itself only, never as a wildcard.
    return re.sub(r"([*?\[\]\\^])", r"\\\1", str(value))


_FINALIZERS = {
    "none": None,
    "url": _url_segment,
    "promql": _promql_string,
    "visibility": _visibility_string,
    "glob": _glob_literal,
}


MAX_PRODUCED = 64 * 1024  # items or characters one `*` or `**` may produce: a label value cannot ask for gigabytes


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with repetition and powers bounded: `'x' * (alert.labels.n|int)` fails the step, not the worker."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_PRODUCED:
                    raise OverflowError(f"repetition would produce {len(seq) * times} items, over {MAX_PRODUCED}")
            return operator.mul(left, right)
        if isinstance(left, int) and isinstance(right, int) and abs(right) > 64 and abs(left) > 1:
            raise OverflowError(f"{left} ** {right} is too large")
        return super().call_binop(context, operator_name, left, right)


@lru_cache(maxsize=8)
def _environment(escape: Escape) -> ImmutableSandboxedEnvironment:
    return _BoundedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=_FINALIZERS[escape],
        keep_trailing_newline=True,
    )


def _single_expression(source: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    inner = match.group("expr")
    if "{{" in inner or "}}" in inner or "{%" in inner:
        return None
    return inner


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    try:
        return _environment("none").compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from exc


@lru_cache(maxsize=4096)
def _compiled_template(source: str, escape: Escape) -> jinja2.Template:
    try:
        return _environment(escape).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on template line {exc.lineno}: {exc.message}") from exc


def check_expression(source: str) -> None:
    """Compile an expression (a `when` or `expect`) so that syntax errors surface at load time."""
    _compiled_expression(source)


def check_template(source: str, *, escape: Escape = "none") -> None:
    """Compile a template string at load time; plain strings pass unchanged."""
    if not is_template(source):
        return
    inner = _single_expression(source)
    if inner is not None and escape == "none":
        _compiled_expression(inner)
    else:
        _compiled_template(source, escape)


def _to_json(value: Any) -> JsonValue:
    # Jinja filters such as map() yield generators; a list is what a playbook author means.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming what was missing
        raise TemplateError("expression produced an undefined value")
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, Iterable | Iterator):
        return [_to_json(v) for v in value]
    raise TemplateError(f"expression produced a {type(value).__name__}, which is not JSON data")


@contextmanager
def _evaluating(source: str) -> Iterator[None]:
    """The one place where evaluating a template on hostile values fails: whatever the sandbox or a filter raises
    (OverflowError from `range`, RecursionError, a filter's own bug) becomes a TemplateError that fails the step,
    never an exception that fails the workflow task and retries it for ever."""
    where = source.strip()[:200]
    try:
        yield
    except TemplateError:
        raise
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{where!r}: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{where!r}: refused by the sandbox: {exc}") from exc
    except Exception as exc:
        raise TemplateError(f"{where!r}: {type(exc).__name__}: {str(exc)[:300]}") from exc


def evaluate(source: str, context: Mapping[str, Any]) -> JsonValue:
    """Evaluate one expression to native JSON data."""
    with _evaluating(source):
        return _to_json(_compiled_expression(source)(**context))


def condition(source: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a `when`/`expect` expression as a boolean."""
    return bool(evaluate(source, context))


def render(value: JsonValue, context: Mapping[str, Any], *, escape: Escape = "none") -> JsonValue:
    """Render templates inside a JSON value once; a string that is exactly one `{{ expr }}` keeps its type."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        inner = _single_expression(value)
        if inner is not None and escape == "none":
            return evaluate(inner, context)
        with _evaluating(value):
            return _compiled_template(value, escape).render(**context)
    if isinstance(value, list):
        return [render(v, context, escape=escape) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, escape=escape) for k, v in value.items()}
    return value


def iter_strings(value: JsonValue) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON value with its path, for load-time checks."""
    if isinstance(value, str):
        yield (), value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for path, text in iter_strings(item):
                yield (i, *path), text
    elif isinstance(value, dict):
        for key, item in value.items():
            for path, text in iter_strings(item):
                yield (key, *path), text
