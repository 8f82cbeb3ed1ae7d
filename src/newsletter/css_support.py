"""Which CSS the main mail clients render: the table ``newsletter check`` warns from.

Source: caniemail.com (https://www.caniemail.com/), one feature page per row, transcribed by
hand for the features our templates and sanitized posts can use (posts carry no style
attributes: the sanitizer drops them, so the CSS comes from templates).  Their data is not
bundled; a feature missing here is simply not checked.  "partial" means the client renders the
feature in some cases only (Outlook for Windows, which lays out with Word, applies padding and
margin to table cells but not to most other elements, for instance).

Keys: a property name ("border-radius"), a property with a value ("display:flex"), or an
at-rule ("@media", "@media prefers-color-scheme", "@font-face", "@import").
"""

from __future__ import annotations

CLIENTS = ("Gmail", "Apple Mail", "Outlook.com", "Outlook for Windows")
YES, PARTIAL, NO = "yes", "partial", "no"


def _row(gmail: str, apple: str, outlook_com: str, outlook_windows: str) -> dict[str, str]:
    return dict(zip(CLIENTS, (gmail, apple, outlook_com, outlook_windows), strict=True))


SUPPORT: dict[str, dict[str, str]] = {
    # Text and colour: rendered everywhere.
    "color": _row(YES, YES, YES, YES),
    "background-color": _row(YES, YES, YES, YES),
    "font-family": _row(YES, YES, YES, YES),
    "font-size": _row(YES, YES, YES, YES),
    "font-weight": _row(YES, YES, YES, YES),
    "font-style": _row(YES, YES, YES, YES),
    "line-height": _row(YES, YES, YES, YES),
    "text-align": _row(YES, YES, YES, YES),
    "text-decoration": _row(YES, YES, YES, YES),
    "vertical-align": _row(YES, YES, YES, YES),
    "border": _row(YES, YES, YES, YES),
    "border-top": _row(YES, YES, YES, YES),
    "border-bottom": _row(YES, YES, YES, YES),
    "border-left": _row(YES, YES, YES, YES),
    "border-right": _row(YES, YES, YES, YES),
    "border-color": _row(YES, YES, YES, YES),
    "border-collapse": _row(YES, YES, YES, YES),
    "width": _row(YES, YES, YES, YES),  # on tables, cells and images, which is where our templates set it
    "height": _row(YES, YES, YES, YES),
    # Box model: Word applies it to table cells only.
    "padding": _row(YES, YES, YES, PARTIAL),
    "padding-left": _row(YES, YES, YES, PARTIAL),
    "padding-right": _row(YES, YES, YES, PARTIAL),
    "padding-top": _row(YES, YES, YES, PARTIAL),
    "padding-bottom": _row(YES, YES, YES, PARTIAL),
    "margin": _row(YES, YES, PARTIAL, PARTIAL),
    "max-width": _row(YES, YES, YES, NO),
    "max-height": _row(YES, YES, YES, NO),
    "display": _row(YES, YES, YES, PARTIAL),
    "display:flex": _row(YES, YES, YES, NO),
    "display:grid": _row(NO, YES, NO, NO),
    "overflow": _row(YES, YES, YES, NO),
    "opacity": _row(YES, YES, YES, NO),
    "border-radius": _row(YES, YES, YES, NO),
    "box-shadow": _row(NO, YES, NO, NO),
    "background-image": _row(YES, YES, YES, NO),
    "position": _row(NO, YES, NO, NO),
    "float": _row(YES, YES, YES, PARTIAL),
    "color-scheme": _row(NO, YES, NO, NO),
    # At-rules.
    "@media": _row(YES, YES, YES, NO),
    "@media prefers-color-scheme": _row(NO, YES, NO, NO),
    "@font-face": _row(NO, YES, NO, NO),
    "@import": _row(NO, YES, NO, NO),
}


def unsupported(features: set[str]) -> dict[str, list[tuple[str, str]]]:
    """For each client, the ``(feature, "no" | "partial")`` pairs of ``features`` it does not fully render."""
    found: dict[str, list[tuple[str, str]]] = {}
    for feature in sorted(features):
        for client, level in SUPPORT.get(feature, {}).items():
            if level != YES:
                found.setdefault(client, []).append((feature, level))
    return found
