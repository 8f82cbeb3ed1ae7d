"""WCAG 2.x AA text contrast of an HTML page, light and dark (``newsletter check``, EML-04).

The page's ``<style>`` CSS (top level and ``prefers-color-scheme`` blocks) and inline styles are
cascaded over the document in light mode and in dark mode; each visible text's colour is paired
with the background behind it and must reach 4.5:1, or 3:1 for large text (WCAG 2.2 §1.4.3:
≥ 24 px, or ≥ 18.66 px bold).  A colour written in a syntax this module cannot read is
reported as unchecked rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cssselect

from .feed import css_selector, html_document
from .render import css_parser, inline_style


class UncheckedColour(ValueError):
    """A colour this checker cannot read (it says so instead of guessing)."""


# The canvas and text of a page that sets none: light, and dark when the page opts in to it
# (color-scheme: light dark) as Chromium paints them.
CANVAS = {"light": ("#000000", "#ffffff"), "dark": ("#ffffff", "#121212")}
UA_FONT_SCALE = {"h1": 2.0, "h2": 1.5, "h3": 1.17, "small": 0.83}
SKIPPED = {"head", "title", "style", "script", "button", "input", "select", "textarea", "option"}


@dataclass(frozen=True)
class Rule:
    selector: str
    specificity: tuple[int, int, int]
    order: int
    declarations: dict[str, tuple[str, bool]]  # property -> (value, !important)


def _rules(css: str, mode: str) -> list[Rule]:
    """Style rules in effect on a wide screen in ``mode``: top level, plus dark-mode media blocks."""
    parser = css_parser(validate=False, raiseExceptions=True, loglevel=100)
    sheet = parser.parseString(css)
    rules: list[Rule] = []

    def add(style_rule: Any) -> None:  # a cssutils CSSStyleRule
        declarations = {p.name: (p.value, p.priority == "important") for p in style_rule.style}
        for selector in style_rule.selectorList:
            text = selector.selectorText
            (parsed,) = cssselect.parse(text)
            rules.append(Rule(text, parsed.specificity(), len(rules), declarations))

    for rule in sheet:
        if rule.type == rule.STYLE_RULE:
            add(rule)
        elif rule.type == rule.MEDIA_RULE:
            query = rule.media.mediaText
            if "prefers-color-scheme" in query:
                if ("dark" in query) == (mode == "dark"):
                    for inner in rule.cssRules:
                        if inner.type == inner.STYLE_RULE:
                            add(inner)
            # other media blocks (narrow screens) are layout; their colours are not cascaded
    return rules


def _hex(value: str) -> str | None:
    """A colour as #rrggbb, None for transparent; :class:`UncheckedColour` for syntax it cannot read."""
    value = value.strip().lower()
    if value in ("transparent", "none", "initial"):
        return None
    match = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", value)
    if match:
        digits = match.group(1)
        return "#" + ("".join(c * 2 for c in digits) if len(digits) == 3 else digits)
    match = re.fullmatch(r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)\s*(?:[,/]\s*1(?:\.0*)?\s*)?\)", value)
    if match:
        return "#" + "".join(f"{min(int(c), 255):02x}" for c in match.groups())
    named = {"white": "#ffffff", "black": "#000000"}
    if value in named:
        return named[value]
    raise UncheckedColour(f"colour {value!r} not checked: write it as #rrggbb, #rgb or rgb()")


def _background(value: str) -> str | None:
    tokens = [t for t in value.split() if t.startswith("#") or t in ("transparent", "white", "black", "none")]
    return _hex(tokens[0]) if tokens else None


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of #rrggbb."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class Cascade:
    """The colour, background and font size of each element under ``rules`` (plus inline styles)."""

    def __init__(self, doc: Any, rules: list[Rule], mode: str, dark_capable: bool) -> None:  # doc: an lxml tree
        self.matches: dict = {}
        for rule in rules:
            for element in css_selector(rule.selector)(doc):
                self.matches.setdefault(element, []).append(rule)
        self.text, self.canvas = CANVAS[mode if dark_capable else "light"]
        # Inlined CSS repeats the same few style attributes on many elements, and each text
        # walks its ancestors once per property: each distinct attribute is parsed once.
        self.inline_declarations: dict[str, dict[str, tuple[str, bool]]] = {}

    def inline(self, text: str) -> dict[str, tuple[str, bool]]:
        """The declarations of one ``style`` attribute: name → (value, important)."""
        found = self.inline_declarations.get(text)
        if found is None:
            style = inline_style(text)
            found = {prop.name: (prop.value, prop.priority == "important") for prop in style.getProperties()}
            self.inline_declarations[text] = found
        return found

    def declared(self, element: Any, name: str) -> str | None:
        candidates = []
        for rule in self.matches.get(element, []):
            for prop in (name, "background") if name == "background-color" else (name,):
                if prop in rule.declarations:
                    value, important = rule.declarations[prop]
                    candidates.append(((important, 0, rule.specificity, rule.order), value))
        inline = self.inline(element.get("style") or "")
        for prop in (name, "background") if name == "background-color" else (name,):
            if prop in inline and inline[prop][0]:
                value, important = inline[prop]
                candidates.append(((important, 1, (0, 0, 0), 0), value))
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    def colour(self, element: Any) -> str:
        for node in [element, *element.iterancestors()]:
            value = self.declared(node, "color")
            if value and value.strip() not in ("inherit", "currentcolor"):
                return _hex(value) or self.text
        return self.text

    def background(self, element: Any) -> str:
        for node in [element, *element.iterancestors()]:
            value = self.declared(node, "background-color")
            background = _background(value) if value else None
            if background:
                return background
        return self.canvas

    def font_px(self, element: Any) -> float:
        ancestry = [element, *element.iterancestors()][::-1]
        size = 16.0
        for node in ancestry:
            value = (self.declared(node, "font-size") or "").strip()
            if value.endswith("px"):
                size = float(value[:-2])
            elif value.endswith("rem"):
                size = 16.0 * float(value[:-3])
            elif value.endswith("em"):
                size *= float(value[:-2])
            elif value.endswith("%"):
                size *= float(value[:-1]) / 100
            elif node.tag in UA_FONT_SCALE:
                size *= UA_FONT_SCALE[node.tag]
        return size

    def bold(self, element: Any) -> bool:
        for node in [element, *element.iterancestors()]:
            value = self.declared(node, "font-weight")
            if value:
                return value in ("bold", "bolder") or value.isdigit() and int(value) >= 700
            if node.tag in ("h1", "h2", "h3", "strong", "b", "th"):
                return True
        return False

    def hidden(self, element: Any) -> bool:
        for node in [element, *element.iterancestors()]:
            if node.tag in SKIPPED or node.get("hidden") is not None:
                return True
            if (self.declared(node, "display") or "").strip() == "none":
                return True
        return False


def _texts(doc: Any) -> Iterator[Any]:
    """Elements with visible text of their own (text directly inside, or a child's tail)."""
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        own = (element.text or "") + "".join(child.tail or "" for child in element)
        if own.strip():
            yield element, " ".join(own.split())[:40]


def offending_pairs(html: str, name: str) -> list[str]:
    """One line per text whose colour pair falls below WCAG AA, in light or dark mode."""
    doc = html_document(html)
    css = "\n".join(style.text or "" for style in doc.iter("style"))
    scheme = " ".join(m.get("content", "") for m in doc.iter("meta") if m.get("name") == "color-scheme")
    dark_capable = "dark" in scheme or bool(re.search(r"color-scheme\s*:[^;}]*dark", css))
    problems = []
    for mode in ("light", "dark"):
        cascade = Cascade(doc, _rules(css, mode), mode, dark_capable)
        for element, sample in _texts(doc):
            if cascade.hidden(element):
                continue
            fg, bg = cascade.colour(element), cascade.background(element)
            size, bold = cascade.font_px(element), cascade.bold(element)
            large = size >= 24 or (size >= 18.66 and bold)
            needed = 3.0 if large else 4.5
            ratio = contrast(fg, bg)
            if ratio < needed:
                classes = [n.get("class") for n in [element, *element.iterancestors()] if n.get("class")]
                where = f"{element.tag} in .{classes[0]}" if classes else element.tag
                problems.append(f"{name} [{mode}] <{where}> {sample!r}: {fg} on {bg} = {ratio:.2f}:1 < {needed}:1")
    return problems


def css_features(html: str) -> set[str]:
    """The CSS features a page uses, as :mod:`newsletter.css_support` names them: property names,
    ``display:VALUE``, and ``@media``, ``@media prefers-color-scheme``, ``@font-face``, ``@import``."""
    doc = html_document(html)
    parser = css_parser(validate=False, loglevel=100)
    features: set[str] = set()

    def declarations(style: Any) -> None:
        for prop in style:
            name = prop.name.lower()
            if name.startswith(("-", "mso-")):
                continue  # vendor and Outlook-only properties are hints for one client, not features
            features.add(name)
            if name == "display":
                features.add(f"display:{prop.value.strip().lower()}")

    def rules(container: Any) -> None:
        for rule in container:
            if rule.type == rule.STYLE_RULE:
                declarations(rule.style)
            elif rule.type == rule.MEDIA_RULE:
                query = rule.media.mediaText
                features.add("@media prefers-color-scheme" if "prefers-color-scheme" in query else "@media")
                rules(rule.cssRules)
            elif rule.type == rule.FONT_FACE_RULE:
                features.add("@font-face")
            elif rule.type == rule.IMPORT_RULE:
                features.add("@import")

    for style in doc.iter("style"):
        rules(parser.parseString(style.text or ""))
    for element in doc.iter():
        if isinstance(element.tag, str) and element.get("style"):
            declarations(parser.parseStyle(element.get("style")))
    return features
