"""Which CSS the main mail clients render: the table ``newsletter check`` warns from.

The data is caniemail's (https://www.caniemail.com/, https://github.com/hteumeuleu/caniemail),
© 2019 HTeuMeuLeu, under the MIT licence, whose notice ships in ``docs/third-party.md``.  Each
row below is one feature file of that repository (``_features/<slug>.md``, read at the commit
named in :data:`SOURCES`) reduced to four clients:

- Gmail: the newest result of each of its platforms (webmail, iOS, Android, mobile webmail);
- Apple Mail: macOS and iOS; Outlook.com: its one platform;
- Outlook for Windows: the newest Word-based version listed (``outlook.windows``).

All "y" is ``yes``, all "n" is ``no``; anything else (an "a", platforms that disagree, or a "y"
whose note starts "Partial.") is ``partial``; "u" (untested) is left out.  Only the features our
templates and sanitized posts can use are here (posts carry no style attributes: the sanitizer
drops them, so the CSS comes from templates); caniemail has no page for ``color``,
``font-family`` or ``font-style``, which every client renders, and a feature missing here is
simply not checked.

Keys: a property name ("border-radius"), a property with a value ("display:flex"), or an
at-rule ("@media", "@media prefers-color-scheme", "@font-face", "@import"), as
:func:`newsletter.contrast.css_features` names them.
"""

from __future__ import annotations

CLIENTS = ("Gmail", "Apple Mail", "Outlook.com", "Outlook for Windows")
YES, PARTIAL, NO = "yes", "partial", "no"
CANIEMAIL = "https://github.com/hteumeuleu/caniemail"


def _row(gmail: str, apple: str, outlook_com: str, outlook_windows: str) -> dict[str, str]:
    return dict(zip(CLIENTS, (gmail, apple, outlook_com, outlook_windows), strict=True))


# caniemail feature file -> (the commit it was read at, its four clients, the keys it covers)
_FEATURES: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "css-background-color": ("070716688ae6", _row(YES, YES, YES, YES), ("background-color",)),
    "css-font-size": ("070716688ae6", _row(YES, YES, YES, PARTIAL), ("font-size",)),  # Word: no rem
    "css-font-weight": ("070716688ae6", _row(YES, YES, YES, PARTIAL), ("font-weight",)),
    "css-line-height": ("0fc14c39dd0e", _row(YES, YES, YES, PARTIAL), ("line-height",)),
    "css-text-align": ("070716688ae6", _row(PARTIAL, YES, YES, PARTIAL), ("text-align",)),  # no start/end
    "css-text-decoration": ("0461c84d2f8a", _row(PARTIAL, YES, YES, PARTIAL), ("text-decoration",)),
    "css-vertical-align": ("00446d848f13", _row(YES, YES, YES, YES), ("vertical-align",)),
    "css-border": (
        "070716688ae6",
        _row(YES, YES, YES, PARTIAL),  # Word: at most 8px, unreliable on <p> and <div>
        (
            "border",
            "border-top",
            "border-bottom",
            "border-left",
            "border-right",
            "border-color",
            "border-width",
            "border-style",
        ),
    ),  # fmt: skip
    "css-border-collapse": ("2f7cd5871103", _row(YES, YES, YES, YES), ("border-collapse",)),
    "css-width": ("070716688ae6", _row(YES, YES, YES, PARTIAL), ("width",)),  # Word: not on div, p, img
    "css-height": ("0fc14c39dd0e", _row(YES, YES, YES, PARTIAL), ("height",)),
    "css-max-width": ("06d761f7661d", _row(YES, YES, YES, PARTIAL), ("max-width",)),  # Word: tables only
    "css-max-height": ("070716688ae6", _row(YES, YES, YES, NO), ("max-height",)),
    "css-padding": (
        "070716688ae6",
        _row(YES, YES, YES, PARTIAL),  # Word: table cells only
        ("padding", "padding-left", "padding-right", "padding-top", "padding-bottom"),
    ),  # fmt: skip
    "css-margin": (
        "070716688ae6",
        _row(PARTIAL, YES, PARTIAL, PARTIAL),  # no negative values
        ("margin", "margin-left", "margin-right", "margin-top", "margin-bottom"),
    ),  # fmt: skip
    "css-display": ("052ff33d778a", _row(PARTIAL, YES, YES, PARTIAL), ("display",)),
    "css-display-flex": ("052ff33d778a", _row(PARTIAL, YES, YES, NO), ("display:flex",)),
    "css-display-grid": ("070716688ae6", _row(PARTIAL, YES, YES, NO), ("display:grid",)),
    "css-overflow": ("0fc14c39dd0e", _row(YES, PARTIAL, YES, NO), ("overflow",)),
    "css-opacity": ("070716688ae6", _row(PARTIAL, YES, YES, NO), ("opacity",)),
    "css-border-radius": ("070716688ae6", _row(YES, YES, YES, NO), ("border-radius",)),
    "css-box-shadow": ("193ac9c605ef", _row(PARTIAL, YES, YES, NO), ("box-shadow",)),
    "css-background-image": ("075286739078", _row(YES, YES, YES, NO), ("background-image",)),
    "css-position": ("1b31b10436b9", _row(NO, PARTIAL, PARTIAL, NO), ("position",)),
    "css-float": ("052ff33d778a", _row(YES, YES, YES, NO), ("float",)),
    "css-color-scheme": ("070716688ae6", _row(NO, YES, NO, NO), ("color-scheme",)),
    "css-at-media": ("1b31b10436b9", _row(PARTIAL, YES, PARTIAL, NO), ("@media",)),
    "css-at-media-prefers-color-scheme": (
        "0e330211117a",
        _row(NO, YES, YES, NO),
        ("@media prefers-color-scheme",),
    ),  # fmt: skip
    "css-at-font-face": ("00c4ddebaad7", _row(NO, YES, NO, PARTIAL), ("@font-face",)),  # Word: no distant fonts
    "css-at-import": ("070716688ae6", _row(NO, YES, NO, YES), ("@import",)),
}

#: feature key -> how each client renders it
SUPPORT: dict[str, dict[str, str]] = {key: row for _, row, keys in _FEATURES.values() for key in keys}
#: feature key -> (caniemail feature file, the commit it was read at)
SOURCES: dict[str, tuple[str, str]] = {
    key: (slug, commit) for slug, (commit, _, keys) in _FEATURES.items() for key in keys
}


def unsupported(features: set[str]) -> dict[str, list[tuple[str, str]]]:
    """For each client, the ``(feature, "no" | "partial")`` pairs of ``features`` it does not fully render."""
    found: dict[str, list[tuple[str, str]]] = {}
    for feature in sorted(features):
        for client, level in SUPPORT.get(feature, {}).items():
            if level != YES:
                found.setdefault(client, []).append((feature, level))
    return found
