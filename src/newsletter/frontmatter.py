"""A post's YAML front matter → its fields (a dict), bounded; the only importer of the YAML parser.

Front matter as posts write it (``key: value`` lines of quoted or plain text, ``true`` or
``false``, tags as ``[a, b]`` or as ``- a`` lines) is read by :func:`flat_fields`, a reader
of that subset only that yields exactly what the YAML loader would, in a tenth of its time
(10,000 posts, issue 13).  Anything else, or anything it is not sure of, goes to PyYAML.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import PostError

# Bounds on the parser, so that no post can make it hang, recurse or blow up (issue 10).
MAX_FRONT_MATTER_BYTES = 64_000
MAX_YAML_ALIASES = 10  # a "billion laughs" needs many; real front matter needs none
MAX_YAML_DEPTH = 10  # front matter is flat: fields, and lists of tags

_STRING_DATES = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _StringDatesLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, leaving dates as strings so that a missing zone can be caught."""

    yaml_implicit_resolvers = _STRING_DATES


_HAS_LIBYAML = hasattr(yaml, "CSafeLoader")


class _FastStringDatesLoader(yaml.CSafeLoader if _HAS_LIBYAML else yaml.SafeLoader):  # type: ignore[misc]
    """The same with libyaml's parser when PyYAML has it (several times faster)."""

    yaml_implicit_resolvers = _STRING_DATES


def split_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """``(fields, body)`` of a post: the YAML between a first ``---`` line and the next one, and the rest.

    The lines are found one by one: the body (most of the post) is neither split nor joined again.
    """
    first_end = text.find("\n")
    if (text if first_end < 0 else text[:first_end]).rstrip() != "---":
        hint = "start the file with a --- line, the YAML fields, then ---"
        raise PostError("has no front matter", where=where, hint=hint)
    start = position = first_end + 1
    while first_end >= 0:
        end = text.find("\n", position)
        if (text[position:] if end < 0 else text[position:end]).rstrip() == "---":
            meta = load_front_matter(text[start : max(start, position - 1)], where)
            if meta is None:
                meta = {}
            if not isinstance(meta, dict):
                hint = "write one key: value per line"
                raise PostError("front matter must be YAML fields (key: value)", where=where, hint=hint)
            return meta, "" if end < 0 else text[end + 1 :]
        if end < 0:
            break
        position = end + 1
    raise PostError("front matter is not closed", where=where, hint="add a --- line after the YAML fields")


def load_front_matter(text: str, where: str) -> Any:
    """YAML with bounds: its size, its aliases and its nesting are checked on the parser's
    events (iterative, linear) before anything is built, so no input hangs or recurses.

    Flat front matter is read by :func:`flat_fields`.  Otherwise libyaml is tried first; where
    it refuses what PyYAML accepts (an escaped lone surrogate, which the XML filter strips
    later), the pure-Python parser has the last word.
    """
    if len(text.encode("utf-8")) > MAX_FRONT_MATTER_BYTES:
        raise PostError(
            f"front matter is over {MAX_FRONT_MATTER_BYTES // 1000} KB",
            where=where, hint="keep the fields short; the text goes after the closing ---",
        )  # fmt: skip
    fields = flat_fields(text)
    if fields is not None:
        return fields
    try:
        try:
            return _load_bounded(text, where, _FastStringDatesLoader)
        except yaml.YAMLError:
            if not _HAS_LIBYAML:
                raise
            return _load_bounded(text, where, _StringDatesLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 2}: " if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        message = f"{line}invalid YAML front matter ({problem})"
        raise PostError(message, where=where, hint="fix the YAML syntax") from None
    except ValueError:  # int() of a number over 4300 digits, in the YAML constructor
        raise PostError("front matter holds a number too long to read", where=where, hint="quote it as text") from None


def _load_bounded(text: str, where: str, loader: type) -> Any:
    aliases = depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise PostError(
                    f"front matter uses more than {MAX_YAML_ALIASES} YAML aliases (*name)",
                    where=where, hint="write the values out instead of repeating them with aliases",
                )  # fmt: skip
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _front_matter_too_deep(where)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(text, Loader=loader)


def _front_matter_too_deep(where: str) -> PostError:
    return PostError(
        f"front matter is nested more than {MAX_YAML_DEPTH} levels deep",
        where=where, hint="write one key: value per line (tags as a simple list)",
    )  # fmt: skip


# -- the flat subset -------------------------------------------------------------------------
# Characters every YAML reader takes as they are: printable, no tab, no line break but "\n"
# (YAML 1.1 also breaks lines at U+0085, U+2028 and U+2029), no byte-order mark.
_PLAIN_TEXT = re.compile("[\n\x20-\x7e\u00a0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*")
_KEY_LINE = re.compile(r"([a-z][a-z0-9_]{0,63}):(?: +(.*))?")
_ITEM_LINE = re.compile(r"( *)- +(.*)")
_QUOTED = re.compile(r'"([^"\\]*)"|\'([^\']*)\'')
# A plain scalar: no indicator first, no ": " or " #" inside (no ":" nor "#" at all), none of
# the flow indicators in a [list], and no space at either end (the parser would trim it).
_PLAIN = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^:#]*(?<! )")
_FLOW_PLAIN = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^:#,\[\]{}?]*(?<! )")  # PyYAML ends one at "?"


def flat_fields(text: str) -> dict[str, Any] | None:
    """The fields of ``text`` when it is flat front matter (see the module's docstring), exactly
    as ``yaml.load`` with the loaders above builds them; None when it is anything else."""
    if not text or not _PLAIN_TEXT.fullmatch(text):
        return None
    lines = text.split("\n")
    fields: dict[str, Any] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        match = _KEY_LINE.fullmatch(line)
        if match is None or not _is_text(match[1]):
            return None
        key, value = match[1], match[2]
        if value is None:  # "key:" alone: a list of "- item" lines must follow
            items = []
            indent = None
            while index < len(lines) and (item := _ITEM_LINE.fullmatch(lines[index])):
                if indent is not None and item[1] != indent:
                    return None
                indent = item[1]
                scalar = _scalar(item[2], _PLAIN)
                if not isinstance(scalar, str):
                    return None
                items.append(scalar)
                index += 1
            if not items:
                return None
            fields[key] = items
            continue
        if value.startswith("[") and value.endswith("]"):
            inner = value[1:-1]
            listed = [_scalar(part.strip(" "), _FLOW_PLAIN) for part in inner.split(",")] if inner.strip(" ") else []
            if not all(isinstance(item, str) for item in listed):
                return None
            fields[key] = listed
            continue
        scalar = _scalar(value, _PLAIN)
        if scalar is None:
            return None
        fields[key] = scalar
    return fields or None


def _scalar(value: str, plain: re.Pattern[str]) -> str | bool | None:
    """A quoted string or a plain word as YAML reads it; None for anything else."""
    quoted = _QUOTED.fullmatch(value)
    if quoted is not None:
        return quoted[1] if quoted[1] is not None else quoted[2]
    if value in ("true", "false"):
        return value == "true"
    if plain.fullmatch(value) and _is_text(value):
        return value
    return None


def _is_text(plain: str) -> bool:
    """Whether YAML reads the plain scalar ``plain`` as a string (not a number, null, bool...)."""
    resolvers = _STRING_DATES.get(plain[0], []) + _STRING_DATES.get(None, [])
    return not any(regexp.match(plain) for _, regexp in resolvers)
