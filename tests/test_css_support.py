"""Issue 14: the CSS support table is caniemail's data, credited as its MIT licence asks, and
every entry names a caniemail feature file and holds only well-formed values."""

from __future__ import annotations

import re
from pathlib import Path

import newsletter.css_support as css_support
from newsletter.css_support import CLIENTS, SOURCES, SUPPORT, unsupported

REPO = Path(__file__).resolve().parent.parent
FEATURE_FILES = {
    line.strip()
    for line in (REPO / "tests" / "data" / "caniemail_features.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
}


def caniemail_name(key: str) -> str:
    """caniemail's file name for our key: ``@media prefers-color-scheme`` → ``css-at-media-prefers-color-scheme``."""
    return "css-" + key.replace("@", "at-").replace(":", "-").replace(" ", "-")


def test_every_entry_names_a_caniemail_feature_file_that_exists_for_it():
    assert set(SOURCES) == set(SUPPORT)
    for key, (slug, commit) in SOURCES.items():
        assert slug in FEATURE_FILES, key
        assert re.fullmatch(r"[0-9a-f]{12}", commit), key  # the caniemail commit the row was read at
        name = caniemail_name(key)
        # The feature's own file, or its family's (border-top is on caniemail's css-border page).
        assert name == slug or name.startswith(slug + "-"), (key, slug)


def test_every_entry_covers_the_four_clients_with_a_known_level():
    assert CLIENTS == ("Gmail", "Apple Mail", "Outlook.com", "Outlook for Windows")
    for key, row in SUPPORT.items():
        assert re.fullmatch(r"@?[a-z-]+(:[a-z-]+| [a-z-]+)?", key), key
        assert tuple(row) == CLIENTS, key
        assert set(row.values()) <= {"yes", "partial", "no"}, key


def test_the_table_says_what_caniemail_says_of_a_few_well_known_features():
    """Spot checks against caniemail's pages: Word ignores border-radius, Gmail ignores
    prefers-color-scheme but Outlook.com honours it, Outlook for Windows takes @import."""
    assert SUPPORT["border-radius"]["Outlook for Windows"] == "no"
    assert SUPPORT["@media prefers-color-scheme"] == dict(zip(CLIENTS, ("no", "yes", "yes", "no"), strict=True))
    assert SUPPORT["@import"]["Outlook for Windows"] == "yes" and SUPPORT["@import"]["Gmail"] == "no"
    assert unsupported({"background-color", "border-collapse", "vertical-align"}) == {}


def test_caniemail_is_credited_as_its_mit_licence_asks():
    doc = css_support.__doc__ or ""
    assert "caniemail" in doc and "MIT" in doc and "docs/third-party.md" in doc
    notice = (REPO / "docs" / "third-party.md").read_text(encoding="utf-8")
    assert "Copyright (c) 2019 HTeuMeuLeu" in notice
    assert "The above copyright notice and this permission notice shall be included in all" in notice
    assert "docs/third-party.md" in (REPO / "README.md").read_text(encoding="utf-8")
