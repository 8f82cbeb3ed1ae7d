"""Markdown → HTML: CommonMark with GFM tables and ~~strikethrough~~, fenced code highlighted.

The only importer of the Markdown parser (cmarkgfm: GitHub's cmark-gfm, in C, with cffi) and of
the code highlighter (Pygments).  Raw HTML is kept: :mod:`newsletter.content` sanitizes what comes out.
"""

from __future__ import annotations

import ctypes
import functools
import re
from html import escape, unescape
from typing import Any

from cmarkgfm import _cmark, cmark
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.styles import get_style_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Code blocks: Pygments' short token classes on <span>, "highlight" on <pre>; no other class
# survives the sanitizer, so a post cannot borrow the template's classes (footer, preheader).
CODE_CLASS = "highlight"
TOKEN_CLASSES = frozenset(name for name in STANDARD_TYPES.values() if name)
# WCAG AA on their own backgrounds: xcode's worst token is 5.1:1 on white, lightbulb's 4.5:1.
LIGHT_CODE_STYLE, DARK_CODE_STYLE = "xcode", "lightbulb"
MAX_HIGHLIGHT_CHARS = 100_000  # past this a block is shown plain: some lexers slow down on huge input


def highlight_code(code: str, language: str, attributes: Any = None) -> str:
    """A fenced block as ``<pre class="highlight"><code>`` with Pygments' token spans (build time,
    so neither the site nor the email needs a script); an unknown language is shown plain."""
    name = (language or "").split()[0] if language else ""
    try:
        lexer = get_lexer_by_name(name, stripnl=False, ensurenl=False) if name else None
    except ClassNotFound:
        lexer = None
    if lexer is None or len(code) > MAX_HIGHLIGHT_CHARS:
        body = escape(code)  # the sanitizer writes the text again as it writes all text
    else:
        body = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="{CODE_CLASS}"><code>{body}</code></pre>\n'


@functools.lru_cache(maxsize=1)
def code_stylesheets() -> tuple[str, str]:
    """The light token rules (the email inlines them) and the dark ``@media`` block (kept as
    written in the email's second ``<style>``: the inliner neither parses nor rewrites it)."""
    light = _token_rules(LIGHT_CODE_STYLE, important=False)
    dark = _token_rules(DARK_CODE_STYLE, important=True)
    background = get_style_by_name(DARK_CODE_STYLE).background_color
    return light, (
        "@media (prefers-color-scheme: dark) {\n"
        f"pre, code {{ background-color: {background} !important; color: #e6edf3 !important; }}\n"
        f"{dark}\n}}"
    )


def _token_rules(style_name: str, *, important: bool) -> str:
    rules = []
    for line in HtmlFormatter(style=style_name).get_style_defs(f".{CODE_CLASS}").splitlines():
        selector, _, declarations = line.partition("{")
        selector = selector.strip()
        # Only the token rules (".highlight .k"): the block's own box is the template's to style.
        if not selector.startswith(f".{CODE_CLASS} .") or "color" not in declarations:
            continue
        body = declarations.split("}")[0].strip().rstrip(";")
        if important:
            body = "; ".join(f"{d.strip()} !important" for d in body.split(";") if d.strip())
        rules.append(f"{selector} {{ {body} }}")
    return "\n".join(rules)


# Raw HTML is kept for the sanitizer to judge.  cmark-gfm (C) parses in linear time, bounded by
# the input's size, and about 20 times faster than a Python parser (issue 13).
_CMARK_OPTIONS = cmark.Options.CMARK_OPT_UNSAFE | cmark.Options.CMARK_OPT_STRIKETHROUGH_DOUBLE_TILDE
_CMARK_EXTENSIONS = ("table", "strikethrough")
# A line that may open a fenced code block (after list or quote markers): only a post with one
# is rendered with source positions, to tell its fenced blocks (highlighted) from indented ones.
_MAYBE_FENCE = re.compile(r"^[ \t>*+\-0-9.)]*(?:```|~~~)", re.MULTILINE)
_CODE_BLOCK = re.compile(
    r'<pre data-sourcepos="(\d+):(\d+)-[0-9:]*"><code(?: class="language-([^"]*)")?>(.*?)</code></pre>', re.DOTALL
)


# cmarkgfm's own helpers never free the document tree nor the HTML string (about 40 KB a post,
# 400 MB for a 10,000-post build): both are freed here, with the functions of the same library.
# (Through ctypes: declaring them to cffi would load its C parser, 25 ms of every start.)
_LIBRARY, _LIBC = ctypes.CDLL(_cmark.__file__), ctypes.CDLL(None)
for _function in (_LIBRARY.cmark_node_free, _LIBC.free):
    _function.argtypes, _function.restype = [ctypes.c_void_p], None
cmark.core_extensions_ensure_registered()
_EXTENSIONS = [cmark.find_syntax_extension(name) for name in _CMARK_EXTENSIONS]


def _render(markdown: str, options: int) -> str:
    lib, ffi = _cmark.lib, _cmark.ffi
    text = markdown.encode("utf-8")
    parser = lib.cmark_parser_new(options)
    try:
        for extension in _EXTENSIONS:
            lib.cmark_parser_attach_syntax_extension(parser, extension)
        lib.cmark_parser_feed(parser, text, len(text))
        root = lib.cmark_parser_finish(parser)
        try:
            html = lib.cmark_render_html(root, options, lib.cmark_parser_get_syntax_extensions(parser))
            try:
                return ffi.string(html).decode("utf-8")
            finally:
                _LIBC.free(int(ffi.cast("uintptr_t", html)))
        finally:
            _LIBRARY.cmark_node_free(int(ffi.cast("uintptr_t", root)))
    finally:
        lib.cmark_parser_free(parser)


def commonmark_html(markdown: str) -> str:
    """CommonMark → HTML, fenced code blocks highlighted (as :func:`highlight_code` writes them)."""
    if ("```" not in markdown and "~~~" not in markdown) or not _MAYBE_FENCE.search(markdown):  # `in` is fast
        rendered = _render(markdown, _CMARK_OPTIONS)
    else:
        rendered = _highlight_fences(markdown)
    if "~~" in markdown:  # strikethrough as <s>, as posts have always had it (cmark writes <del>)
        rendered = rendered.replace("<del>", "<s>").replace("</del>", "</s>")
    return rendered


def _highlight_fences(markdown: str) -> str:
    """cmark writes fenced and indented code blocks alike (``<pre><code>``); with source positions,
    a block whose first source line opens a fence, and is not its first line of code, is fenced."""
    rendered = _render(markdown, _CMARK_OPTIONS | cmark.Options.CMARK_OPT_SOURCEPOS)
    lines = markdown.encode("utf-8").splitlines()  # cmark counts lines, and columns in bytes

    def highlighted(match: re.Match[str]) -> str:
        line, column, language, code = int(match[1]), int(match[2]), match[3], unescape(match[4])
        start = lines[line - 1][column - 1 :].decode("utf-8", "replace") if 0 < line <= len(lines) else ""
        if not start.startswith(("```", "~~~")) or start == code.split("\n", 1)[0]:
            return match[0]  # an indented block: shown as it is
        return highlight_code(code, unescape(language or ""))

    return _CODE_BLOCK.sub(highlighted, rendered)
