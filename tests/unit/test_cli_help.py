"""The command line explains itself: every flag and argument has help text, and `--version` answers."""

from __future__ import annotations

import argparse
import subprocess

from service.cli import _parser
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
    missing = [f"{path} {a.option_strings or a.dest}" for path, a in _actions(_parser()) if not (a.help or "").strip()]
    assert missing == []


def test_version_prints_the_package_version() -> None:
    """`remediate --version`, as a process, prints the installed version and exits 0."""
    done = subprocess.run([REMEDIATE, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("remediate 0."), done
