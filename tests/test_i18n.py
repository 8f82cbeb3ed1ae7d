"""Issue 14 item 7: every string readers see comes from one catalogue per language, and French
and English are complete: a key used by a template or the code but missing from either fails."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest

from newsletter.i18n import LOCALES, catalogue, format_date, languages
from newsletter.templates import PACKAGED_TEMPLATES

SOURCE = Path(__file__).resolve().parent.parent / "src" / "newsletter"
COMPLETE = ("en", "fr")


def _used_keys() -> set[str]:
    """Every catalogue key named by the packaged templates and by the library's code."""
    used: set[str] = set()
    for template in PACKAGED_TEMPLATES.rglob("*"):
        if template.is_file():
            used |= set(re.findall(r"\blabels\.(\w+)", template.read_text(encoding="utf-8"))) - {"date"}
    for module in SOURCE.rglob("*.py"):
        text = module.read_text(encoding="utf-8")
        used |= set(re.findall(r"labels\([^()]*\)\[\"(\w+)\"\]", text))
        used |= set(re.findall(r"\bwords\[\"(\w+)\"\]", text))
    return used


def test_french_and_english_are_complete_and_hold_every_key_in_use():
    assert set(COMPLETE) <= set(languages())
    used = _used_keys()
    assert {"unsubscribe", "test_prefix", "correction", "invalid_link", "view_in_browser"} <= used  # the scan works
    keys = {language: set(catalogue(language)) for language in COMPLETE}
    assert keys["en"] == keys["fr"], f"only in en: {keys['en'] - keys['fr']}, only in fr: {keys['fr'] - keys['en']}"
    for language in COMPLETE:
        missing = used - keys[language]
        assert not missing, f"{LOCALES / language}.toml lacks {sorted(missing)}"
        empty = [key for key, value in catalogue(language).items() if not value]
        assert not empty, f"{language}: empty {empty}"


def test_no_date_is_printed_with_strftime_in_a_packaged_template():
    offenders = [p.name for p in PACKAGED_TEMPLATES.rglob("*.html") if "strftime" in p.read_text(encoding="utf-8")]
    assert not offenders


@pytest.mark.parametrize(
    ("language", "when", "written"),
    [
        ("fr", date(2013, 3, 26), "26 mars 2013"),
        ("fr-CA", date(2013, 3, 1), "1er mars 2013"),
        ("fr", date(2024, 8, 15), "15 août 2024"),
        ("en", date(2013, 3, 26), "March 26, 2013"),
        ("en-GB", date(2013, 3, 1), "March 1, 2013"),
        ("de", date(2013, 12, 31), "December 31, 2013"),  # no catalogue: English
    ],
)
def test_dates_as_readers_write_them(language, when, written):
    assert format_date(when, language) == written


def test_the_built_post_page_prints_the_date_in_french(project):
    from newsletter import Newsletter

    with Newsletter.open(project, clock=lambda: datetime(2030, 1, 1).astimezone()) as nl:
        nl.build()
        post = nl.published()[0]
        page = (nl.config.public_dir / post.slug / "index.html").read_text(encoding="utf-8")
    assert f">{format_date(post.date, 'fr')}</time>" in page
    assert re.search(r">\d{1,2}(er)? [a-zéû]+ \d{4}</time>", page)
    assert "Publié le" in page


def test_prefixes_come_from_the_catalogue():
    assert catalogue("fr")["correction"] == "[Correctif] "
    assert catalogue("en")["correction"] == "[Correction] "
    assert catalogue("fr")["test_prefix"].startswith("[TEST]")
