"""What a template or expression names (variable roots, alert fields, inputs, step ids), checked at load time."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import JsonValue

from service.playbooks.steps import StepBase, WriteStep, approval_rule_of
from service.playbooks.templating import is_template, iter_strings

ROOTS = ("alert", "inputs", "steps", "item")
ALERT_FIELDS = ("labels", "annotations", "status", "alertname", "fingerprint", "startsAt", "generatorURL")
_ENV = ImmutableSandboxedEnvironment()


@dataclass(frozen=True)
class Names:
    """What one place in a playbook may name: the inputs defined so far, the steps that ran before it."""

    inputs: Sequence[str]
    earlier: Sequence[str]  # step ids whose results exist here, in run order
    later: Sequence[str] = ()  # step ids that exist but run after this place
    own: str | None = None  # the step itself (its `expect` reads its own result)
    item: bool = False  # inside a for_each step
    steps_allowed: bool = True
    everything: Sequence[str] = field(default_factory=tuple)  # every step id, for hyphen hints
    extra: Sequence[str] = ()  # names a place adds (`targets` in approval.required_if)


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _parse(source: str, expression: bool) -> nodes.Template | None:
    try:
        return _ENV.parse("{{ (" + source + ") }}" if expression else source)
    except jinja2.TemplateSyntaxError:
        return None  # syntax is reported by the compile check, with its own message


def _step_ref(node: nodes.Node) -> tuple[str, bool] | None:
    """`steps.x` (dotted) or `steps['x']` (bracketed) under this node, as (id, dotted)."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "steps":
        return node.attr, True
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "steps"
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value, False
    return None


def _attr_of(node: nodes.Node, root: str) -> str | None:
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == root:
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == root
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def problems(source: str, names: Names, *, expression: bool = False) -> Iterator[str]:
    """Each thing `source` names that will not be there when it is evaluated, with a hint."""
    tree = _parse(source, expression)
    if tree is None:
        return
    dotted: list[str] = []  # `steps.a-b` parses as `steps.a - b`: `b` then looks like a variable
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        ref = _step_ref(node)
        if ref is not None and names.steps_allowed:
            if ref[1]:
                dotted.append(ref[0])
            yield from _step_problems(*ref, names)
        field_name = _attr_of(node, "alert")
        if field_name is not None and field_name not in ALERT_FIELDS:
            yield f"alert has no {field_name!r} (it has {', '.join(ALERT_FIELDS)}){_suggest(field_name, ALERT_FIELDS)}"
        input_name = _attr_of(node, "inputs")
        if input_name is not None and input_name not in names.inputs:
            known = ", ".join(names.inputs) or "none"
            yield f"no input {input_name!r} here (defined before it: {known}){_suggest(input_name, names.inputs)}"
    allowed = [r for r in ROOTS if (r != "item" or names.item) and (r != "steps" or names.steps_allowed)]
    allowed += list(names.extra)
    for name in sorted(meta.find_undeclared_variables(tree)):
        if name in allowed or name in _ENV.globals:
            continue
        joined = next((s for s in names.everything for d in dotted if s.startswith(f"{d}-{name}")), None)
        if joined is not None:
            yield f"steps.{joined} is read as a subtraction: a step id with '-' needs brackets, steps[{joined!r}]"
            continue
        if name == "item":
            yield "`item` is only defined in the `with` of a step with for_each"
        elif name == "steps":
            yield "`steps` is not available here: no step has run yet"
        else:
            yield f"unknown variable {name!r} (known: {', '.join(allowed)}){_suggest(name, allowed)}"


def _step_problems(step: str, dotted: bool, names: Names) -> Iterator[str]:
    if dotted and "-" in step:
        yield f"a step id with '-' needs brackets: steps[{step!r}]"
        return
    if dotted and step not in names.everything:
        hyphenated = [s for s in names.everything if s.startswith(f"{step}-")]
        if hyphenated:  # the rest of the id was parsed as a subtraction; said once, with the variable it became
            return
    if step in names.earlier or step == names.own:
        return
    if step in names.later:
        yield f"step {step!r} runs after this one, so its result is not there yet"
        return
    known = ", ".join(names.earlier) or "none"
    yield f"no step {step!r} before this one (earlier: {known}){_suggest(step, names.earlier)}"


Where = tuple[str | int, ...]


def playbook_problems(
    inputs: Mapping[str, JsonValue], phases: Sequence[tuple[str, Sequence[StepBase]]], cooldown_key: str | None
) -> Iterator[tuple[Where, str]]:
    """Every reference problem in a playbook, with the path of the field it is in."""
    defined: list[str] = []
    for key, value in inputs.items():
        for sub, text in iter_strings(value):
            for problem in problems(text, Names(inputs=list(defined), earlier=(), steps_allowed=False)):
                yield ("inputs", key, *sub), problem
        defined.append(key)
    order = [(phase, index, step) for phase, steps in phases for index, step in enumerate(steps)]
    ids = [step.id for _, _, step in order]
    for position, (phase, index, step) in enumerate(order):
        base: Where = (phase, index)
        names = Names(inputs=defined, earlier=ids[:position], later=ids[position + 1 :], everything=ids)
        for_each = step.for_each if isinstance(step, WriteStep) else None
        for name, source in (("when", step.when), ("for_each", for_each)):
            if source is not None:
                for problem in problems(source, names, expression=True):
                    yield (*base, name), problem
        rule = approval_rule_of(step)
        if rule is not None:
            for problem in problems(rule, replace(names, extra=("targets",)), expression=True):
                yield (*base, "approval", "required_if"), problem
        if step.expect is not None:
            for problem in problems(step.expect, replace(names, own=step.id), expression=True):
                yield (*base, "expect"), problem
        in_with = replace(names, item=for_each is not None)
        for param, value in step.params:
            for sub, text in iter_strings(value):
                if is_template(text):
                    for problem in problems(text, in_with):
                        yield (*base, "with", param, *sub), problem
    if cooldown_key is not None:
        diagnosed = [step.id for phase, _, step in order if phase == "diagnose"]
        for problem in problems(cooldown_key, Names(inputs=defined, earlier=diagnosed, everything=ids)):
            yield ("limits", "cooldown_key"), problem
