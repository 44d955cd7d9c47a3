"""The command line explains itself: every flag and argument has help text, and `--version` answers."""

from __future__ import annotations

import argparse
import subprocess
import sys

from service.cli.arguments import build_parser
from service.cli.main import _verb
from tests.support.processes import REMEDIATE


def _actions(parser: argparse.ArgumentParser, path: str = "remediate") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_actions(sub, f"{path} {name}"))
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_flag_and_argument_of_every_command_has_help_text() -> None:
    """`--help` of any command describes each of its options and arguments."""
    missing = [
        f"{path} {a.option_strings or a.dest}" for path, a in _actions(build_parser()) if not (a.help or "").strip()
    ]
    assert missing == []


def test_version_prints_the_package_version() -> None:
    """`remediate --version`, as a process, prints the installed version and exits 0."""
    done = subprocess.run([REMEDIATE, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("remediate 0."), done


def test_every_verb_of_the_parser_has_a_function() -> None:
    """Each command the parser accepts is dispatched to a verb (none is parsed and then unknown)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices:
        assert callable(_verb(command)), command


def test_the_kill_switch_command_loads_no_playbook_and_no_target_library() -> None:
    """`remediate kill-switch`, as a fresh interpreter, imports the board and Temporal's client only: it starts fast."""
    heavy = [
        "service.playbooks.playbook",
        "service.playbooks.steps",
        "service.app.compose",
        "psycopg",
        "redis",
        "lightkube",
        "starlette",
    ]
    probe = (
        "import sys; from service.cli.main import _verb; _verb('kill-switch'); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
