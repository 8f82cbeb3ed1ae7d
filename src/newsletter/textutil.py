"""Small text helpers shared by every stage: XML-safe text, header-safe values."""

from __future__ import annotations

import re

from .errors import HeaderInjection

# XML 1.0 §2.2 Char: everything outside it is stripped before text reaches lxml (ATOM-31).
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# The one definition of what a mail header value may not hold (INJ-01): NUL and every character
# str.splitlines() ends a line at -- CR, LF, VT, FF, the file/group/record separators, NEL and
# U+2028 LINE / U+2029 PARAGRAPH SEPARATOR -- because the email package splits header values
# with it.  The config, the post reader and the renderer all refuse values through this set.
HEADER_FORBIDDEN = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (C0 controls, U+FFFE/F, lone surrogates)."""
    return _XML_FORBIDDEN.sub("", text)


def has_xml_forbidden(text: str) -> bool:
    """Whether ``text`` holds a character that XML 1.0 forbids."""
    return bool(_XML_FORBIDDEN.search(text))


def header_break(value: str) -> str | None:
    """The first character of ``value`` that a mail header may not hold, as ``U+XXXX``, or None."""
    found = next((ch for ch in value if ch in HEADER_FORBIDDEN), None)
    return None if found is None else f"U+{ord(found):04X}"


def check_header_value(value: str, *, field: str, where: str = "") -> str:
    """Refuse (never strip) a line break, line separator or NUL in a value bound for a mail header (INJ-01)."""
    found = header_break(value)
    if found:
        raise HeaderInjection(
            f"{field} contains a line break or NUL ({found}), which could inject mail headers",
            where=where,
            hint=f"keep {field} on one line",
        )
    return value


_ATOM_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def is_dot_atom(value: str) -> bool:
    """RFC 5322 dot-atom: atoms of safe characters joined by single dots."""
    return bool(value) and all(part and set(part) <= _ATOM_CHARACTERS for part in value.split("."))


def is_email_address(value: str) -> bool:
    """A bare ``local@domain`` address with a dotted domain, no display name, no spaces."""
    local, at, domain = value.rpartition("@")
    return bool(at) and len(value) <= 254 and is_dot_atom(local) and is_dot_atom(domain) and "." in domain
