"""The package as the container image builds it (`pip install .`): every module inside, no build warnings."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.paths import ROOT


def test_the_wheel_holds_every_module_and_data_file_and_builds_without_warnings(tmp_path: Path) -> None:
    """`pip wheel .` (what `pip install .` in deploy/container/Dockerfile builds) packs every module of service/
    and the samples, and setuptools warns of nothing (no deprecated license table, no package left out)."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("remediate-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "service").rglob("*.py") if "__pycache__" not in p.parts}
    assert sources - packed == set()
    assert {"service/cli/samples/selftest-alert.json", "service/py.typed"} <= packed
    output = built.stdout + built.stderr
    assert "deprecated" not in output.lower(), output
    assert "absent from the `packages` configuration" not in output, output
