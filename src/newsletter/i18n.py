"""Every string readers see, in their language: one TOML message catalogue per language.

The catalogues live in ``newsletter/locales/LANG.toml`` (French and English complete, with the
same keys: tests/test_i18n.py fails when one lacks a key).  A site whose language has no
catalogue reads English.  Dates are written as readers write them (« 26 mars 2013 »,
"March 26, 2013") from the catalogue's month names, so no locale database is needed.
"""

from __future__ import annotations

import functools
import tomllib
from datetime import date
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "en"


class Catalogue(dict):
    """A language's messages (``catalogue["unsubscribe"]``, or ``labels.unsubscribe`` in a
    template) and its date format (``labels.date(post.date)``)."""

    language: str = DEFAULT_LANGUAGE

    def date(self, when: date) -> str:
        """``when`` as readers of this language write a date: « 1er mars 2013 », "March 1, 2013"."""
        day = self["first_day"] if when.day == 1 else str(when.day)
        return self["date_format"].format(day=day, month=self["months"][when.month - 1], year=when.year)


def languages() -> list[str]:
    """The languages that have a catalogue."""
    return sorted(path.stem for path in LOCALES.glob("*.toml"))


@functools.cache
def _load(language: str) -> Catalogue:
    with open(LOCALES / f"{language}.toml", "rb") as file:
        catalogue = Catalogue(tomllib.load(file))
    catalogue.language = language
    return catalogue


def catalogue(language: str) -> Catalogue:
    """The catalogue for ``language`` (a tag such as ``fr-CA``: its primary subtag), English when
    there is none.  Shared: do not modify it."""
    primary = language.split("-")[0].lower()
    return _load(primary if primary in languages() else DEFAULT_LANGUAGE)


def format_date(when: date, language: str) -> str:
    """``when`` written the way readers of ``language`` write dates."""
    return catalogue(language).date(when)
