"""The playbook loader: the issue's example loads as written, and every problem is reported as file:line:col."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from service.alerts.webhook import WebhookMessage
from service.cli.dev import DEV_CONFIG
from service.cli.main import main
from service.config_file import load_config_file
from service.playbooks.loader import load_file, load_playbooks
from service.playbooks.playbook import playbook_schema
from service.vocabulary.errors import PlaybookError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "playbooks" / "stuck-jobs.yaml").read_text()
KINDS = {"jobs-db": "postgres"}


def _problems(tmp_path: Path, text: str, kinds: dict[str, str] | None = KINDS) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    playbook, problems = load_file(path, kinds)
    assert playbook is None or not problems
    return [str(p).replace(str(path), "p.yaml") for p in problems]


def test_the_example_loads_exactly_as_written(tmp_path: Path) -> None:
    """The issue's stuck-jobs playbook loads with its diagnose, act and verify steps."""
    assert _problems(tmp_path, EXAMPLE) == []
    playbook = load_playbooks([ROOT / "playbooks" / "stuck-jobs.yaml"], KINDS)[0]
    assert [s.id for _, s in playbook.steps()] == ["stuck", "requeue", "none-left"]
    assert playbook.verify[0].retry is not None and playbook.verify[0].retry.attempts == 5


def test_yaml_syntax_errors_have_positions(tmp_path: Path) -> None:
    """A YAML error names its line and column."""
    assert _problems(tmp_path, "name: x\nmatch: [unclosed\n")[0].startswith("p.yaml:3:1: YAML")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    action: postgres.execute",
            "    action: postgres.exec",
            "p.yaml:21:13: act.0: unknown action 'postgres.exec'",
        ),
        ("      max_rows: 50", "      max_rows: 50\n      bogus: 1", "p.yaml:31:7: act.0.with.bogus: Extra inputs"),
        ("      max_rows: 50", "", "p.yaml:25:5: act.0.with.max_rows: Field required"),
        ("length > 0", "length >", "p.yaml:23:11: expression syntax error"),
        (
            '  queue: "{{ alert.labels.queue }}"',
            '  queue: "{{ alert.labels.queue "',
            "p.yaml:8:10: template syntax error",
        ),
        ("and status = 'running'", "and status = '{{ inputs.queue }}'", "p.yaml:26:12: sql takes no templates"),
        ("      max_rows: 50", '      max_rows: "{{ alert.labels.n }}"', "max_rows takes no templates"),
        ("  - id: none-left", "  - id: stuck", "p.yaml:32:9: step id 'stuck' is used twice"),
        (
            "    action: postgres.query\n    connection: jobs-db\n    with:\n      sql: >-\n        select id",
            "    action: postgres.execute\n    connection: jobs-db\n    with:\n      max_rows: 1\n"
            "      sql: >-\n        update x set id",
            "diagnose step 'stuck': postgres.execute is a write",
        ),
        ("connection: jobs-db\n    when", "connection: jobs\n    when", "p.yaml:22:17: unknown connection 'jobs'"),
    ],
)
def test_each_problem_is_located(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """Unknown actions, fields, connections, template errors and templated SQL or caps point at their line."""
    assert old in EXAMPLE
    problems = _problems(tmp_path, EXAMPLE.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_a_bad_file_never_half_loads(tmp_path: Path) -> None:
    """One broken file makes the whole load fail; nothing from the good files is returned either."""
    (tmp_path / "good.yaml").write_text(EXAMPLE)
    (tmp_path / "bad.yaml").write_text(EXAMPLE.replace("name: stuck-jobs", "name: other").replace("max_rows: 50", ""))
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([tmp_path], KINDS)
    assert len(caught.value.problems) == 1 and "bad.yaml" in caught.value.problems[0].file


def test_lint_prints_file_line_col_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`remediate lint` prints one line per problem and exits 1; clean playbooks exit 0."""
    (tmp_path / "bad.yaml").write_text(EXAMPLE.replace("postgres.execute", "postgres.nope"))
    assert main(["lint", str(tmp_path)]) == 1
    assert f"{tmp_path / 'bad.yaml'}:21:13:" in capsys.readouterr().out
    assert main(["lint", str(ROOT / "playbooks")]) == 0


def test_committed_schema_is_in_sync() -> None:
    """playbooks/schema.json equals what `remediate schema` prints."""
    committed = json.loads((ROOT / "playbooks" / "schema.json").read_text())
    assert committed == playbook_schema()


def test_every_default_in_the_schema_satisfies_its_own_pattern() -> None:
    """Durations default to `30s`-style text, which the schema's own pattern accepts (no `PT30S`)."""
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("default"), str) and "pattern" in node:
                found.append((node["default"], node["pattern"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(playbook_schema())
    assert found and all(re.fullmatch(pattern, default) for default, pattern in found), found


def test_shipped_playbooks_lint_against_the_dev_connections(tmp_path: Path) -> None:
    """Every shipped playbook loads with the connections `remediate dev` embeds."""
    (tmp_path / "dev.yaml").write_text(DEV_CONFIG.format(listen="127.0.0.1:8080", home=tmp_path))
    playbooks = load_playbooks([ROOT / "playbooks"], load_config_file(tmp_path / "dev.yaml").kinds())
    assert {p.name for p in playbooks} >= {"stuck-jobs", "selftest", "workflow-stuck"}


def test_each_example_alert_matches_exactly_its_playbook(tmp_path: Path) -> None:
    """playbooks/examples/<name>.json starts exactly the playbook <name>, so `remediate plan` on it is meaningful."""
    (tmp_path / "dev.yaml").write_text(DEV_CONFIG.format(listen="127.0.0.1:8080", home=tmp_path))
    playbooks = load_playbooks([ROOT / "playbooks"], load_config_file(tmp_path / "dev.yaml").kinds())
    examples = sorted((ROOT / "playbooks" / "examples").glob("*.json"))
    assert {e.stem for e in examples} >= {p.name for p in playbooks} - {"selftest"}
    for example in examples:
        message = WebhookMessage.model_validate_json(example.read_text())
        assert [p.name for p in playbooks if p.matches(message.alerts[0])] == [example.stem], example.name


def test_every_shipped_rule_names_a_shipped_playbook() -> None:
    """Each alert rule in deploy/prometheus/rules links a playbook that exists and a doc that exists."""
    from ruamel.yaml import YAML

    names = {p.stem for p in (ROOT / "playbooks").glob("*.yaml")}
    for rule_file in (ROOT / "deploy" / "prometheus" / "rules").glob("*.yaml"):
        for group in YAML(typ="safe", pure=True).load(rule_file.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["playbook"] in names, rule["alert"]
                doc = rule["annotations"]["runbook_url"].rsplit("/", 1)[-1]
                assert (ROOT / "docs" / "playbooks" / doc).is_file(), doc
