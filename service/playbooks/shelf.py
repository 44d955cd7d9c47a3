"""Playbooks as runs carry them: a JSON document named by its digest, decoded at most once per process."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from pydantic import BaseModel, ConfigDict, Field

from service.playbooks.playbook import Playbook
from service.vocabulary.checked import CHECKED


class PlaybookDocument(BaseModel):
    """A playbook as a run carries it: its JSON text (opaque to the data converter: a string, never re-validated on
    a decode) and the SHA-256 of that text, which names it on every worker's shelf."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    digest: str
    text: str


class CarriesPlaybook(BaseModel):
    """A playbook as a delivery or a run carries it: by document, or (if made before documents) whole."""

    document: PlaybookDocument | None = None
    playbook: Playbook | None = Field(default=None, description="Made before documents: the playbook itself.")

    @property
    def playbook_name(self) -> str:
        return self.playbook.name if self.playbook is not None else self.document.name if self.document else ""

    def carried(self, shelf: Shelf) -> Playbook:
        """The playbook itself: the one carried whole, else the one the document names (from the shelf)."""
        if self.playbook is not None:
            return self.playbook
        if self.document is not None:
            return shelf.get(self.document)
        raise ValueError("no playbook is carried")


def document_of(playbook: Playbook) -> PlaybookDocument:
    """The document of a loaded playbook: written once per load, carried by every run of this version."""
    text = playbook.model_dump_json(by_alias=True)
    return PlaybookDocument(name=playbook.name, digest=hashlib.sha256(text.encode()).hexdigest(), text=text)


class Shelf:
    """The playbooks this process has loaded or decoded, by document digest. One digest names one text, so every
    worker and workflow of the process may share it (the lookup is deterministic): a hit is the very playbook
    loaded from its file; a miss decodes the text once, without running the parsers that loading ran."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._books: OrderedDict[str, Playbook] = OrderedDict()
        self._lock = threading.Lock()  # workflow tasks of several workers run in threads of one process
        self.decoded = 0  # misses: documents decoded here (the converter bench counts them)

    def put(self, playbook: Playbook) -> PlaybookDocument:
        """Keep a loaded playbook under its document's digest; the document, for the runs that will carry it."""
        document = document_of(playbook)
        with self._lock:
            self._keep(document.digest, playbook)
        return document

    def get(self, document: PlaybookDocument) -> Playbook:
        """The playbook a document names: from the shelf, else decoded from its text (checked against its digest)."""
        with self._lock:
            found = self._books.get(document.digest)
            if found is not None:
                self._books.move_to_end(document.digest)
                return found
        if hashlib.sha256(document.text.encode()).hexdigest() != document.digest:
            raise ValueError(f"the document of playbook {document.name!r} does not match its digest")
        playbook = Playbook.model_validate_json(document.text, context=CHECKED)
        with self._lock:
            self.decoded += 1
            self._keep(document.digest, playbook)
        return playbook

    def _keep(self, digest: str, playbook: Playbook) -> None:
        self._books[digest] = playbook
        self._books.move_to_end(digest)
        while len(self._books) > self._size:
            self._books.popitem(last=False)


SHELF = Shelf()  # the process's one shelf: content-addressed, so sharing it across workers cannot mix versions up
