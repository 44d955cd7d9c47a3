"""Playbooks carried by document: each shipped one survives the round trip, and a worker decodes a version once."""

from __future__ import annotations

import pytest

from service.playbooks import sql_check
from service.playbooks.loader import load_versioned
from service.playbooks.shelf import PlaybookDocument, Shelf, document_of
from tests.support.paths import DATA, ROOT

DIRECTORIES = [ROOT / "playbooks", ROOT / "playbooks" / "examples", DATA / "playbooks"]
LOADED = [playbook for d in DIRECTORIES for playbook, _ in load_versioned([d])]


@pytest.mark.parametrize("playbook", LOADED, ids=lambda p: p.name)
def test_a_document_decodes_to_the_playbook_it_was_written_from(playbook: object) -> None:
    """A miss on another worker decodes the document to exactly the playbook a hit returns: replays agree."""
    document = document_of(playbook)  # type: ignore[arg-type]
    decoded = Shelf().get(document)
    assert decoded == playbook
    assert document_of(decoded) == document


def test_a_version_is_decoded_once_and_without_parsing_its_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run of a version on a worker decodes its document; later runs take it from the shelf; no SQL parse."""
    shelf, document = Shelf(), document_of(LOADED[0])
    parses = []
    monkeypatch.setitem(vars(sql_check), "parse_sql", lambda text: parses.append(text))
    vars(sql_check)["_checked"].cache_clear()
    first, second = shelf.get(document), shelf.get(document)
    assert first is second and shelf.decoded == 1 and parses == []


def test_a_put_playbook_is_never_decoded() -> None:
    """The playbooks a process loaded are on its shelf: its workers decode none of them."""
    shelf = Shelf()
    document = shelf.put(LOADED[0])
    assert shelf.get(document) is LOADED[0] and shelf.decoded == 0


def test_a_document_that_does_not_match_its_digest_is_refused() -> None:
    """A text altered after its digest was taken is no version of any playbook: refused, never run."""
    document = document_of(LOADED[0])
    altered = PlaybookDocument(name=document.name, digest=document.digest, text=document.text.replace("a", "b", 1))
    with pytest.raises(ValueError, match="does not match its digest"):
        Shelf().get(altered)


def test_the_shelf_keeps_a_bounded_number_of_versions() -> None:
    """An old version falls off the shelf (and is decoded again if a run still needs it): memory stays bounded."""
    shelf = Shelf(size=2)
    documents = [shelf.put(p) for p in LOADED[:3]]
    shelf.get(documents[0])
    assert shelf.decoded == 1
