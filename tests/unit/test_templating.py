"""Sandboxed templates: native types, strictness, escaping, and alert values staying data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.playbooks.templating import check_template, condition, render
from service.vocabulary.errors import TemplateError

CTX = {"alert": {"labels": {"queue": "q1"}}, "inputs": {}, "steps": {"stuck": {"rows": [{"id": 1}, {"id": 2}]}}}


def test_a_single_expression_keeps_its_native_type() -> None:
    """'{{ expr }}' alone yields a list or int; mixed text yields a string."""
    assert render("{{ steps.stuck.rows | map(attribute='id') | list }}", CTX) == [1, 2]
    assert render("{{ steps.stuck.rows | length }}", CTX) == 2
    assert render("n={{ steps.stuck.rows | length }}", CTX) == "n=2"
    assert render({"a": ["{{ alert.labels.queue }}", 3]}, CTX) == {"a": ["q1", 3]}


def test_undefined_names_are_errors_not_empty_strings() -> None:
    """StrictUndefined: a typo fails the step instead of rendering '' into a target."""
    with pytest.raises(TemplateError, match="no attribute"):
        render("{{ alert.labels.nope }}", CTX)


def test_sandbox_refuses_internals() -> None:
    """The sandbox blocks access to Python internals from a template."""
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__mro__ }}", CTX)


def test_syntax_errors_surface_at_load() -> None:
    """check_template compiles at load time and reports syntax errors."""
    with pytest.raises(TemplateError, match="syntax"):
        check_template("{{ steps. }}")


@given(st.text(max_size=200))
def test_hostile_label_values_are_never_rendered_as_templates(value: str) -> None:
    """Whatever a label holds ('{{ 7*7 }}', quotes, newlines), it comes out exactly as it went in."""
    ctx = {"alert": {"labels": {"x": value}}}
    assert render("{{ alert.labels.x }}", ctx) == value
    assert render("v:{{ alert.labels.x }}", ctx) == f"v:{value}"


@given(st.text(max_size=100))
def test_url_path_values_become_one_encoded_segment(value: str) -> None:
    """A value in a URL path can never add segments, a query or a fragment: it is one segment, or refused."""
    try:
        path = render("/api/{{ alert.labels.x }}/cancel", {"alert": {"labels": {"x": value}}}, escape="url")
    except TemplateError:
        assert value in ("", ".", "..") or "/" in value or "\\" in value
        return
    assert isinstance(path, str)
    middle = path[len("/api/") : -len("/cancel")]
    assert "/" not in middle and "?" not in middle and "#" not in middle


@given(st.text(max_size=100))
def test_promql_values_cannot_close_the_string(value: str) -> None:
    """A value inside a PromQL string literal is escaped so it cannot end the literal."""
    query = render('up{job="{{ alert.labels.x }}"}', {"alert": {"labels": {"x": value}}}, escape="promql")
    assert isinstance(query, str)
    inner = query[len('up{job="') : -2]
    unescaped_quotes = [
        i for i, c in enumerate(inner) if c == '"' and (len(inner[:i]) - len(inner[:i].rstrip("\\"))) % 2 == 0
    ]
    assert unescaped_quotes == []


def test_conditions_evaluate_to_booleans() -> None:
    """when/expect expressions are evaluated against earlier results."""
    assert condition("steps.stuck.rows | length > 0", CTX) is True
    assert condition("steps['stuck'].rows[0].id == 2", CTX) is False
