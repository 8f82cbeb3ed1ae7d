"""Sanitized post HTML → a plain-text rendering that reads well in a mail client.

Written by hand on purpose: html2text is GPL-3.0 and renders Markdown syntax
(``**bold**``, ``[x](url)``) rather than prose; inscriptis keeps layout but
cannot list links at the end.  The input is our own sanitized HTML, a small
allowlist of tags, so a stdlib ``HTMLParser`` walk is enough.

Rules: paragraphs separated by a blank line; lists keep their bullets and
numbers; quotes are prefixed with ``> ``; each link keeps its text and gets a
``[n]`` reference listed after the body; images become ``[alt]``.  Runs of
spaces and non-breaking spaces inside a sentence are kept byte for byte.
Code blocks are kept verbatim, indented by four spaces (never wrapped); tables
become aligned columns, or one ``column: value`` line per cell when the aligned
table would pass :data:`TABLE_WIDTH` characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "tr", "hr", "dl", "dt", "dd", "figure"}
CODE_INDENT = "    "
TABLE_WIDTH = 78  # RFC 5322's recommended line length: a wider table is written row by row
_COLUMN_GAP = "  "
_SOFT_BREAK = re.compile(r"[ \t]*[\r\n]+[ \t]*")


@dataclass
class PlainText:
    """The text body and the links it references, numbered from 1."""

    body: str
    links: list[str] = field(default_factory=list)


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[Any, str]] = []  # (kind, text): kind is "block" or ("item", list serial)
        self.line: list[str] = []
        self.links: list[str] = []
        self.lists: list[list] = []  # each: [kind, next number, serial of the outermost list]
        self.list_serial = 0
        self.quote_depth = 0
        self.pre = 0
        self.anchor: tuple[str, int] | None = None  # (href, index in self.line where its text starts)
        self.item_prefix: str | None = None
        self.tables: list[_Table] = []  # open tables, innermost last

    # A "block" is one paragraph of output; blank lines separate blocks.
    def flush(self) -> None:
        text = "".join(self.line)
        self.line = []
        if not self.pre:
            text = text.strip(" \t\n")
        if not text:
            return
        prefix = "> " * self.quote_depth
        if self.item_prefix is not None:
            indent = "  " * (len(self.lists) - 1)
            text = indent + self.item_prefix + text
            self.item_prefix = None
            # Items of one (outermost) list stay on consecutive lines.
            self.blocks.append((("item", self.lists[0][2] if self.lists else 0), prefix + text))
            return
        lines = text.split("\n")
        self.blocks.append(("block", "\n".join(prefix + ln if ln else prefix.rstrip() for ln in lines)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table":
            self.flush()
            self.tables.append(_Table())
            return
        if self.tables and tag in ("tr", "td", "th"):
            table = self.tables[-1]
            if tag == "tr":
                table.rows.append([])
            else:
                table.start_cell(self.line, header=tag == "th")
                self.line = []
            return
        if tag in _BLOCKS or tag == "blockquote":
            self.flush()
            if tag == "pre":
                self.pre += 1
            if tag == "hr":
                self.blocks.append(("block", "----"))
            if tag == "blockquote":
                self.quote_depth += 1
        elif tag in ("ul", "ol"):
            self.flush()
            start = int(attr.get("start") or 1) if (attr.get("start") or "1").isdigit() else 1
            self.list_serial += 1
            self.lists.append([tag, start, self.lists[0][2] if self.lists else self.list_serial])
        elif tag == "li":
            self.flush()
            if self.lists:
                kind = self.lists[-1]
                self.item_prefix = f"{kind[1]}. " if kind[0] == "ol" else "- "
                kind[1] += 1
            else:
                self.item_prefix = "- "
        elif tag == "br":
            self.line.append("\n")
        elif tag == "a":
            self.anchor = (attr.get("href") or "", len(self.line))
        elif tag == "img":
            alt = (attr.get("alt") or "").strip()
            if alt:
                self.line.append(f"[{alt}]")
        elif tag in ("td", "th"):
            if self.line and self.line[-1].strip():
                self.line.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if self.tables and tag in ("table", "tr", "td", "th"):
            table = self.tables[-1]
            if tag in ("td", "th"):
                self.line = table.end_cell(self.line)
            elif tag == "table":
                self.tables.pop()
                self.flush()
                rendered = table.render()
                if rendered:
                    self.line.append(rendered)
                    self.pre += 1  # keep the columns' spaces as they are
                    self.flush()
                    self.pre -= 1
            return
        if tag == "pre" and self.pre:
            # Verbatim, indented: the reader can still copy the code, and it reads as a block.
            code = "".join(self.line).rstrip("\n")
            self.line = ["\n".join(CODE_INDENT + ln if ln.strip() else "" for ln in code.split("\n"))]
        if tag in _BLOCKS or tag in ("li", "blockquote"):
            heading = tag in ("h1", "h2", "h3", "h4", "h5", "h6")
            count = len(self.blocks)
            self.flush()
            if heading and len(self.blocks) > count:
                quote = "> " * self.quote_depth
                title = self.blocks[-1][1]
                rule = ("=" if tag in ("h1", "h2") else "-") * len(title.removeprefix(quote))
                self.blocks[-1] = ("block", f"{title}\n{quote}{rule}")
            if tag == "pre" and self.pre:
                self.pre -= 1
            if tag == "blockquote" and self.quote_depth:
                self.quote_depth -= 1
        elif tag in ("ul", "ol"):
            self.flush()
            if self.lists:
                self.lists.pop()
        elif tag == "a" and self.anchor is not None:
            href, start = self.anchor
            self.anchor = None
            label = "".join(self.line[start:]).strip()
            if href and not href.startswith("#") and href != label and href.removeprefix("mailto:") != label:
                if href not in self.links:
                    self.links.append(href)
                self.line.append(f" [{self.links.index(href) + 1}]")

    def handle_data(self, data: str) -> None:
        if not self.pre:
            # Markup newlines are soft breaks; spaces (and NBSP) inside a sentence stay as written.
            data = _SOFT_BREAK.sub(" ", data)
            if self.line and self.line[-1].endswith("\n"):
                data = data.lstrip(" ")  # the markup newline after <br> is not text
            if not data.strip(" ") and (not self.line or self.line[-1].endswith((" ", "\n"))):
                return
        self.line.append(data)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospace mail reader: wide East Asian characters count two,
    combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


class _Table:
    """The cells of one table as text, row by row; a cell is read with the walker's own line."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.header = False  # the first row is made of <th>
        self._saved: list[str] = []

    def start_cell(self, line: list[str], *, header: bool) -> None:
        if not self.rows:
            self.rows.append([])
        if header and len(self.rows) == 1:
            self.header = True
        self._saved = line

    def end_cell(self, line: list[str]) -> list[str]:
        self.rows[-1].append(" ".join("".join(line).split()))
        return self._saved

    def render(self) -> str:
        rows = [row for row in self.rows if any(row)]
        if not rows:
            return ""
        count = max(len(row) for row in rows)
        rows = [row + [""] * (count - len(row)) for row in rows]
        widths = [max(display_width(row[i]) for row in rows) for i in range(count)]
        if sum(widths) + len(_COLUMN_GAP) * (count - 1) <= TABLE_WIDTH:
            lines = [self._aligned(row, widths) for row in rows]
            if self.header:
                lines.insert(1, _COLUMN_GAP.join("-" * width for width in widths))
            return "\n".join(lines)
        # Too wide to align: each row becomes "column: value" lines, rows separated by a blank line.
        names = rows[0] if self.header else [f"{i + 1}" for i in range(count)]
        body = rows[1:] if self.header else rows
        return "\n\n".join(
            "\n".join(f"{name}: {value}" for name, value in zip(names, row, strict=True) if value) for row in body
        )

    @staticmethod
    def _aligned(row: list[str], widths: list[int]) -> str:
        cells = [cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=True)]
        return _COLUMN_GAP.join(cells).rstrip()


def html_to_text(html: str) -> PlainText:
    """Render sanitized HTML as plain text with its links listed (see module docstring)."""
    walker = _Walker()
    walker.feed(html)
    walker.close()
    walker.flush()
    out: list[str] = []
    previous = None
    for kind, text in walker.blocks:
        if out:
            # List items sit on consecutive lines; everything else is a paragraph.
            out.append("\n" if kind == previous and kind != "block" else "\n\n")
        out.append(text)
        previous = kind
    return PlainText(body="".join(out), links=walker.links)
