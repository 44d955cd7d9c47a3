"""docs/actions.md from the step models: each system's table of actions, refreshed between generated markers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from service.playbooks.steps import ACTIONS, StepBase, WriteStep

NONE = "\N{EN DASH}"  # an empty table cell, as the hand-written tables had
_BLOCK = re.compile(r"(<!-- generated: actions of (?P<system>[a-z]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _models(annotation: object, listed: bool = False) -> list[tuple[type[BaseModel], bool]]:
    """The models a field holds (a template alternative aside), each with whether it comes as a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, listed)]
    inner = get_args(annotation)
    if get_origin(annotation) is list and inner:
        return _models(inner[0], True)
    return [found for arg in inner for found in _models(arg, listed)]


def _shape(info: FieldInfo) -> str:
    """A nested model's own fields, as `{pid, backend_start}` (a list: `[{…}]`; a list field: `state[]`)."""
    shapes = []
    for model, listed in _models(info.annotation):
        names = [f"{n}[]" if get_origin(f.annotation) is list else n for n, f in model.model_fields.items()]
        shape = "{" + ", ".join(names) + "}"
        shapes.append(f"[{shape}]" if listed else shape)
    return f": `{' | '.join(shapes)}`" if shapes else ""


def _field(name: str, info: FieldInfo) -> str:
    if info.is_required():
        return f"`{name}` (required){_shape(info)}"
    default = info.get_default(call_default_factory=True)
    if isinstance(default, bool | int | float) or (isinstance(default, str) and default):
        return f"`{name}` = `{str(default).lower() if isinstance(default, bool) else default}`"
    return f"`{name}`{_shape(info)}"


def _effect(step: type[StepBase]) -> str:
    return step.effect_rule or ("write" if issubclass(step, WriteStep) else "read")


def _approval(step: type[StepBase]) -> str:
    if not issubclass(step, WriteStep):
        return NONE
    return step.approval_rule or step.default_approval


def _params(step: type[StepBase]) -> str:
    fields = step.params_model().model_fields
    return ", ".join(_field(name, info) for name, info in fields.items())


def _notes(steps: Iterable[type[StepBase]]) -> list[str]:
    lines: list[str] = []
    for step in steps:
        model = step.params_model()
        described = [
            f"`{name}`: {info.description.rstrip('.')}" for name, info in model.model_fields.items() if info.description
        ] + [
            f"`{name}.{inner}`: {field.description.rstrip('.')}"
            for name, info in model.model_fields.items()
            for nested, _ in _models(info.annotation)
            for inner, field in nested.model_fields.items()
            if field.description
        ]
        what = _first_line(step.__doc__)
        lines.append(f"- `{step.action_name()}`: {what}" + (f" {'; '.join(described)}." if described else ""))
    return lines


def system_table(system: str) -> str:
    """The generated block of one system: a table of its actions, then what each does and its fields mean."""
    steps = [s for s in ACTIONS.values() if s.connection_type == system]
    lines = [
        "| action | effect | `with` | result | dry-run | approval by default |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{s.action_name()}` | {_effect(s)} | {_params(s)} | {s.returns or NONE} | {s.dry_run_behaviour} | "
            f"{_approval(s)} |"
            for s in steps
        ),
        "",
        *_notes(steps),
    ]
    return "\n".join(lines) + "\n"


def refresh(document: str) -> str:
    """The document with every generated block rewritten from the step models; the prose around them is kept."""

    systems = sorted({s.connection_type for s in ACTIONS.values()})

    def block(match: re.Match[str]) -> str:
        system = match["system"]
        if system not in systems:
            raise ValueError(f"docs/actions.md names an unknown system {system!r} (known: {', '.join(systems)})")
        return f"{match.group(1)}{system_table(system)}{match.group(4)}"

    refreshed = _BLOCK.sub(block, document)
    missing = sorted(set(systems) - {m["system"] for m in _BLOCK.finditer(document)})
    if missing:
        raise ValueError(f"docs/actions.md has no generated block for {', '.join(missing)}")
    return refreshed
