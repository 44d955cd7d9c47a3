"""Lint checks what the engine will enforce: names in templates, step references, braces, units, phases."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.playbooks.loader import load_playbooks
from service.vocabulary.errors import PlaybookError

BASE = """name: refs
match: {alertname: Refs}
inputs:
  queue: "{{ alert.labels.queue }}"
diagnose:
  - id: idle
    action: postgres.query
    connection: db
    with: {sql: "select pid from pg_stat_activity where state = 'idle in transaction'"}
  - id: terminate-few
    action: postgres.query
    connection: db
    with: {sql: "select 1 as n"}
act:
  - id: fix
    action: postgres.terminate_backends
    connection: db
    when: "steps.idle.rows | length > 0"
    with:
      backends: "{{ steps.idle.rows }}"
      max_targets: 5
"""


def problems_of(tmp_path: Path, old: str, new: str) -> list[str]:
    text = BASE.replace(old, new)
    assert text != BASE, f"{old!r} is not in the base playbook"
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([tmp_path / "p.yaml"], {"db": "postgres"})
    return [f"{p.line}:{p.col}: {p.message}" for p in caught.value.problems]


def test_the_base_playbook_is_clean(tmp_path: Path) -> None:
    """The playbook every case below breaks in one place loads without a problem."""
    (tmp_path / "p.yaml").write_text(BASE)
    assert [p.name for p in load_playbooks([tmp_path / "p.yaml"], {"db": "postgres"})] == ["refs"]


CASES = [
    (
        '"{{ alert.labels.queue }}"',
        '"{{ alert.label.datname }}"',
        "4:10: alert has no 'label' (it has labels, annotations, status, alertname, fingerprint, startsAt, "
        "generatorURL); did you mean 'labels'?",
    ),
    (
        '"{{ alert.labels.queue }}"',
        '"{{ alrt.labels.queue }}"',
        "4:10: unknown variable 'alrt' (known: alert, inputs); did you mean 'alert'?",
    ),
    (
        '"steps.idle.rows | length > 0"',
        '"steps.idel.rows | length > 0"',
        "18:11: no step 'idel' before this one (earlier: idle, terminate-few); did you mean 'idle'?",
    ),
    (
        '"steps.idle.rows | length > 0"',
        '"steps.terminate-few is defined"',
        "18:11: steps.terminate-few is read as a subtraction: a step id with '-' needs brackets, "
        "steps['terminate-few']",
    ),
    (
        '"steps.idle.rows | length > 0"',
        '"steps.fix.count > 0"',
        "18:11: no step 'fix' before this one (earlier: idle, terminate-few)",
    ),
    (
        '"steps.idle.rows | length > 0"',
        '"{{ steps.idle.rows | length > 0 }}"',
        "18:11: when is an expression already: drop the braces (when: 'steps.idle.rows | length > 0')",
    ),
    (
        '"{{ steps.idle.rows }}"',
        '"{{ item }}"',
        "20:17: `item` is only defined in the `with` of a step with for_each",
    ),
    (
        '"{{ steps.idle.rows }}"',
        '"{{ inputs.queu }}"',
        "20:17: no input 'queu' here (defined before it: queue); did you mean 'queue'?",
    ),
    (
        "      max_targets: 5\n",
        '      max_targets: 5\n    approval: {required_if: "targts > 2"}\n',
        "22:29: unknown variable 'targts' (known: alert, inputs, steps, targets); did you mean 'targets'?",
    ),
    (
        "    when: ",
        "    timeout: 30\n    when: ",
        "18:5: act.0.timeout: 30 has no unit: write it as 30s, 30m or 30h",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES, ids=[c[2][:40] for c in CASES])
def test_each_mistake_is_reported_where_it_is_with_a_hint(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """One mistake, one problem at its line and column, saying what is wrong and what was probably meant."""
    assert expected in problems_of(tmp_path, old, new)


def test_a_write_in_diagnose_says_so_first(tmp_path: Path) -> None:
    """A write step placed in diagnose is reported as a write in the wrong phase, not as a missing field."""
    found = problems_of(
        tmp_path,
        "  - id: terminate-few\n    action: postgres.query",
        "  - id: terminate-few\n    action: postgres.execute",
    )
    assert found[0].endswith(
        "diagnose step 'terminate-few': postgres.execute is a write; diagnose takes only read steps"
    )
    assert not any("max_rows" in f for f in found), found
