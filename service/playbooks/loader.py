"""Loading playbooks: YAML with positions, every problem as `file:line:col`, versions by SHA-256; nothing half-loads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from service.playbooks.playbook import Path_, Playbook, PlaybookVersion, Position
from service.playbooks.steps import ACTIONS, WriteStep, approval_rule_of
from service.playbooks.template_refs import playbook_problems
from service.playbooks.templating import check_expression, check_template, is_template, iter_strings
from service.vocabulary.errors import PlaybookError, Problem, TemplateError


def _positions(node: Any, path: Path_, out: dict[Path_, Position]) -> None:
    if isinstance(node, CommentedMap):
        for key in node:
            line, col = node.lc.value(key) if node.lc.data.get(key) else (node.lc.line, node.lc.col)
            kline, kcol = node.lc.key(key)
            out[(*path, key)] = (line, col)
            out[(*path, key, "__key__")] = (kline, kcol)
            _positions(node[key], (*path, key), out)
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            out[(*path, i)] = node.lc.item(i)
            _positions(item, (*path, i), out)


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _locate(loc: Sequence[str | int], data: Any, positions: Mapping[Path_, Position]) -> Position:
    # pydantic's loc has extra elements (union tags, validator names): follow only those present in the data.
    path: Path_ = ()
    node: Any = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path = (*path, part)
    if len(path) < len(loc) and (*path, "__key__") in positions:
        return positions[(*path, "__key__")]  # something missing: point at the key that should hold it
    return positions.get(path, positions.get((), (0, 0)))


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    data: Any
    positions: dict[Path_, Position]


def _read(path: Path, text: str | None = None) -> tuple[LoadedFile | None, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), 1, 1, f"cannot read: {exc}")]
    try:
        tree = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Problem(str(path), line, col, f"YAML: {exc.problem or exc.context}")]
    if not isinstance(tree, CommentedMap):
        return None, [Problem(str(path), 1, 1, "a playbook is a YAML mapping")]
    positions: dict[Path_, Position] = {(): (0, 0)}
    _positions(tree, (), positions)
    return LoadedFile(path, _plain(tree), positions), []


def _semantic_problems(file: LoadedFile, playbook: Playbook, connections: Mapping[str, str] | None) -> list[Problem]:
    problems: list[Problem] = []

    def at(path: Path_, message: str) -> None:
        line, col = _locate(path, file.data, file.positions)
        problems.append(Problem(str(file.path), line + 1, col + 1, message))

    if playbook.limits.cooldown_key is not None:
        try:
            check_template(playbook.limits.cooldown_key)
        except TemplateError as exc:
            at(("limits", "cooldown_key"), str(exc))
    if playbook.silence and connections is not None and "alertmanager" not in connections.values():
        at(("silence",), "silence: true needs an alertmanager connection in the configuration")
    for key, value in playbook.inputs.items():
        for sub, text in iter_strings(value):
            try:
                check_template(text)
            except TemplateError as exc:
                at(("inputs", key, *sub), str(exc))
    seen: set[str] = set()
    phases = {"diagnose": playbook.diagnose, "act": playbook.act, "verify": playbook.verify}
    for phase, index, step in ((p, i, s) for p, steps in phases.items() for i, s in enumerate(steps)):
        base: Path_ = (phase, index)
        if step.id in seen:
            at((*base, "id"), f"step id {step.id!r} is used twice; ids are unique across phases")
        seen.add(step.id)
        if connections is not None:
            kind = connections.get(step.connection)
            if kind is None:
                known = ", ".join(sorted(connections)) or "none configured"
                at((*base, "connection"), f"unknown connection {step.connection!r} (known: {known})")
            elif kind != step.connection_type:
                at(
                    (*base, "connection"),
                    f"connection {step.connection!r} is {kind}; "
                    f"{step.action} needs a {step.connection_type} connection",
                )
        for_each = step.for_each if isinstance(step, WriteStep) else None
        rule = approval_rule_of(step)
        expressions = (("when", step.when), ("expect", step.expect), ("for_each", for_each), ("approval", rule))
        for field, source in expressions:
            if source is not None and "{{" in source:
                bare = source.strip().removeprefix("{{").removesuffix("}}").strip()
                at((*base, field), f"{field} is an expression already: drop the braces ({field}: {bare!r})")
            elif source is not None:
                try:
                    check_expression(source)
                except TemplateError as exc:
                    at((*base, field), str(exc))
        params = step.params
        for name, value in params:
            for sub, text in iter_strings(value):
                where = (*base, "with", name, *sub)
                if name in params.literal_fields:
                    if is_template(text):
                        at(where, f"{name} takes no templates: pass alert values as bound parameters instead")
                    continue
                try:
                    check_template(text, escape=params.escapes.get(name, "none"))
                except TemplateError as exc:
                    at(where, str(exc))
    for where, message in playbook_problems(
        playbook.inputs,
        [("diagnose", playbook.diagnose), ("act", playbook.act), ("verify", playbook.verify)],
        playbook.limits.cooldown_key,
    ):
        at(where, message)
    return problems


def _phase_problems(file: LoadedFile) -> dict[Path_, Problem]:
    """Reads in diagnose/verify and writes in act, checked before the model so this reason comes first."""
    found: dict[Path_, Problem] = {}
    data = file.data if isinstance(file.data, dict) else {}
    for phase in ("diagnose", "act", "verify"):
        steps = data.get(phase)
        for index, raw in enumerate(steps if isinstance(steps, list) else []):
            step_type = ACTIONS.get(str(raw.get("action"))) if isinstance(raw, dict) else None
            if step_type is None:
                continue
            effect = "write" if issubclass(step_type, WriteStep) else "read"
            if raw["action"] == "http.request":
                method = (raw.get("with") or {}).get("method", "GET") if isinstance(raw.get("with"), dict) else "GET"
                effect = "read" if method == "GET" else "write"
            want = "write" if phase == "act" else "read"
            if effect != want:
                line, col = _locate((phase, index, "action"), file.data, file.positions)
                found[(phase, index)] = Problem(
                    str(file.path),
                    line + 1,
                    col + 1,
                    f"{phase} step {raw.get('id')!r}: {raw['action']} is a {effect}; {phase} takes only {want} steps",
                )
    return found


def load_file(
    path: Path, connections: Mapping[str, str] | None = None, text: str | None = None
) -> tuple[Playbook | None, list[Problem]]:
    """Load one playbook (from `text` when given: the exact bytes that were hashed); any problem means no
    playbook at all from that file."""
    file, problems = _read(path, text)
    if file is None:
        return None, problems
    misplaced = _phase_problems(file)
    problems.extend(misplaced.values())
    try:
        playbook = Playbook.model_validate(file.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc, message = error["loc"], error["msg"].removeprefix("Value error, ")
            if tuple(loc[:2]) in misplaced:
                continue  # the step is in the wrong phase: that is the reason worth reading
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "action")
                message = (
                    f"unknown action {error['input'].get('action')!r}"
                    if error["type"] == "union_tag_invalid"
                    else "missing action"
                )
                message += f" (known: {', '.join(ACTIONS)})"
            elif "with" in loc[:-1] and isinstance(error.get("input"), str) and is_template(error["input"]):
                message = f"{loc[-1]} takes no templates: it is decided when the playbook is written ({message})"
            line, col = _locate(loc, file.data, file.positions)
            where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and "." in p))
            problems.append(Problem(str(path), line + 1, col + 1, f"{where}: {message}"))
        return None, problems
    problems.extend(_semantic_problems(file, playbook, connections))
    return (None, problems) if problems else (playbook, [])


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to their *.yaml / *.yml files (not recursive: examples live in subfolders)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def load_versioned(
    paths: Iterable[Path], connections: Mapping[str, str] | None = None
) -> list[tuple[Playbook, PlaybookVersion]]:
    """Load every playbook or none, each with its version: raises PlaybookError listing every problem."""
    loaded: list[tuple[Playbook, PlaybookVersion]] = []
    problems: list[Problem] = []
    names: dict[str, Path] = {}
    for path in playbook_files(paths):
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 1, 1, f"cannot read: {exc}"))
            continue
        playbook, found = load_file(path, connections, text)
        problems.extend(found)
        if playbook is None:
            continue
        if playbook.name in names:
            problems.append(
                Problem(str(path), 1, 1, f"playbook name {playbook.name!r} also used in {names[playbook.name]}")
            )
            continue
        names[playbook.name] = path
        loaded.append((playbook, PlaybookVersion(name=playbook.name, file=str(path), sha256=sha256(raw).hexdigest())))
    if problems:
        raise PlaybookError(problems)
    return loaded


def load_playbooks(paths: Iterable[Path], connections: Mapping[str, str] | None = None) -> list[Playbook]:
    """Load every playbook or none: raises PlaybookError listing every problem in every file."""
    return [playbook for playbook, _ in load_versioned(paths, connections)]
