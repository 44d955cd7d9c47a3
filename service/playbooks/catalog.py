"""The playbooks a process serves, with their versions and documents; reloaded whole or not at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from service.playbooks.playbook import Playbook, PlaybookVersion
from service.playbooks.shelf import SHELF, PlaybookDocument
from service.vocabulary.errors import PlaybookError

Loader = Callable[[], list[tuple[Playbook, PlaybookVersion]]]


class Catalog:
    """Holds one consistent set; `reload` swaps in a new one only if every file in it loads and lints. Each
    playbook's document is written once per load and shelved, so a worker of this process never decodes it."""

    def __init__(self, loaded: list[tuple[Playbook, PlaybookVersion]], load: Loader | None = None) -> None:
        self._load = load
        self.refused: list[str] = []  # the problems of the last reload that was refused, until one succeeds
        self.refused_at: datetime | None = None
        self._set(loaded)

    def _set(self, loaded: list[tuple[Playbook, PlaybookVersion]]) -> None:
        self.playbooks = [playbook for playbook, _ in loaded]
        self.versions = {version.name: version for _, version in loaded}
        self.documents = {playbook.name: SHELF.put(playbook) for playbook, _ in loaded}
        self.loaded_at = datetime.now(UTC)

    @classmethod
    def of(cls, playbooks: list[Playbook]) -> Catalog:
        """Playbooks built in code (tests, plan): versions say so."""
        return cls([(p, PlaybookVersion(name=p.name, file="(in memory)", sha256="")) for p in playbooks])

    def version(self, name: str) -> PlaybookVersion | None:
        return self.versions.get(name)

    def document(self, name: str) -> PlaybookDocument:
        return self.documents[name]

    def reload(self) -> list[str]:
        """Load the files again; the problems (`file:line:col: reason`) when the new set is refused."""
        if self._load is None:
            return ["this process has no playbook files to reload"]
        try:
            loaded = self._load()
        except PlaybookError as exc:
            self.refused, self.refused_at = [str(problem) for problem in exc.problems], datetime.now(UTC)
            return self.refused
        self._set(loaded)
        self.refused, self.refused_at = [], None
        return []
