"""Which test files a `remediate test` path means, and the playbook directory each belongs to (one rule).

Like `promtool test rules`: a playbook directory keeps its tests beside its playbooks, in `DIR/tests/`. So a path
given to `remediate test` is a test file, a directory named `tests` (its test files), or else a playbook directory
(the test files in its `tests/`). A test file's playbooks are those of the directory that holds its `tests/` (a
file elsewhere uses REMEDIATE_PLAYBOOKS), plus any `--playbooks DIR`.
"""

from __future__ import annotations

from pathlib import Path

TESTS = "tests"


def tests_in(path: Path) -> list[Path]:
    """The test files a path names, sorted; none for a directory without tests."""
    if path.is_file():
        return [path]
    where = path if path.name == TESTS else path / TESTS
    return sorted(where.glob("*.yaml")) + sorted(where.glob("*.yml")) if where.is_dir() else []


def where_tests_are(path: Path) -> Path:
    """Where `tests_in` looked, for the message when it found nothing."""
    return path if path.is_file() or path.name == TESTS else path / TESTS


def playbooks_of(test_file: Path) -> Path | None:
    """The playbook directory a test file belongs to: the one holding its `tests/`; None for a file elsewhere."""
    return test_file.parent.parent if test_file.parent.name == TESTS else None
