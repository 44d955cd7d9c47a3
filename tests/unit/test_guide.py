"""The guides follow the code: every file CONTRIBUTING.md, the README and docs/ name exists, and every package
and module is on docs/architecture.md's map."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

GUIDES = [ROOT / "CONTRIBUTING.md", ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NAMED = re.compile(r"`((?:service|tests|deploy|docs|playbooks|scripts)/[\w./-]+)`")


def test_every_file_the_guides_name_exists() -> None:
    """A path in backticks (no `<placeholder>`) in CONTRIBUTING.md, the README or a page of docs/ is a file or
    folder."""
    named = {(guide.name, path) for guide in GUIDES for path in NAMED.findall(guide.read_text(encoding="utf-8"))}
    assert len(named) > 20
    missing = sorted((guide, path) for guide, path in named if not (ROOT / path).exists())
    assert missing == []


def test_the_map_names_every_package_and_module() -> None:
    """The drawing of docs/architecture.md names each package of service/ and each module in it."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = page.split("## The packages", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"[\w]+", drawing))
    packages = sorted(p.name for p in (ROOT / "service").iterdir() if (p / "__init__.py").exists())
    assert len(packages) >= 10 and [p for p in packages if p not in words] == []
    modules = sorted(
        f.relative_to(ROOT / "service")
        for f in (ROOT / "service").glob("*/**/*.py")
        if f.name != "__init__.py" and f.parent.parent == ROOT / "service"
    )
    assert [str(m) for m in modules if m.stem not in words] == []
