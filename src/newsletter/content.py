"""Markdown files with YAML front matter → :class:`Post` objects.

The only importer of the sanitizer (nh3); the front matter is read by :mod:`newsletter.frontmatter`
and the Markdown turned into HTML by :mod:`newsletter.commonmark`.  A post is parsed once; everything
downstream (feed, web pages, email) reads the same sanitized, absolute-URL HTML.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta
from html import escape, unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import nh3

from .commonmark import CODE_CLASS, TOKEN_CLASSES, commonmark_html
from .config import Config, is_permanent_id
from .errors import PostError
from .frontmatter import split_front_matter
from .plaintext import html_to_text
from .post import Post, check_unique
from .textutil import check_header_value, xml_safe

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG_LENGTH = 100
MAX_POST_BYTES = 2_000_000
# Bounds on the parsers, so that no post can make one hang, recurse or blow up (issue 10;
# the YAML parser's are in newsletter.frontmatter).
MAX_NESTING = 50  # HTML elements inside one another; the email template adds ~15, libxml2 stops at 256
# Past this many unclosed tags the raw HTML is refused before the sanitizer (whose time grows
# with the square of the depth) ever sees it; MAX_NESTING is then checked exactly on its output.
MAX_RAW_NESTING = 1000
# Markdown is parsed in linear time (about 50 ns a byte): a post that still takes longer than this
# (a starved machine) is refused rather than published late.
MARKDOWN_SECONDS = 10.0
FAR_FUTURE = timedelta(days=5 * 366)
EARLIEST_YEAR = 1900  # before it, converting a date to UTC can overflow datetime's range
SUMMARY_LENGTH = 200
KNOWN_FIELDS = {"title", "slug", "id", "date", "updated", "author", "tags", "summary", "preheader", "draft"}

# SEC-01: formatting tags only; links limited to http(s)/mailto; images with size and alt.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup",
    "span", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
ALLOWED_CLASSES = {"pre": {CODE_CLASS}, "span": set(TOKEN_CLASSES)}
URL_SCHEMES = {"http", "https", "mailto"}
URL_ATTRIBUTES = {"href", "src"}
# An absolute http(s) URL that urljoin and urlsplit give back unchanged: a plain host, and no
# empty query or fragment, no ";" (an empty one is dropped), no space, quote or control character.
_PLAIN_ABSOLUTE = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,=:@%/-]*)?"
    r"(?:\?[A-Za-z0-9._~!$&'()*+,=:@%/?-]+)?(?:#[A-Za-z0-9._~!$&'()*+,=:@%/?#-]+)?"
)
# Attributes read as numbers downstream (the plain-text part, mail clients): plain ASCII
# digits of a sane length, or the attribute is dropped (``<ol start="²">`` is not a number).
NUMERIC_ATTRIBUTES = {
    "start": re.compile(r"-?[0-9]{1,9}"),
    "colspan": re.compile(r"[0-9]{1,4}"),
    "rowspan": re.compile(r"[0-9]{1,4}"),
    "width": re.compile(r"[0-9]{1,5}"),
    "height": re.compile(r"[0-9]{1,5}"),
}
# Elements with no end tag; elements whose end tag is implied (by a sibling), in raw HTML.
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_END_IMPLIED = frozenset("p li dt dd tr td th option optgroup thead tbody tfoot colgroup rb rt rp".split())
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(/?)>")


# Runs of ">" deep enough that the HTML would be refused anyway: never handed to the parser,
# which would build a node per level (megabytes of nesting from one line).
_DEEP_QUOTES = re.compile(rf"^(?:[ \t]*>){{{MAX_RAW_NESTING + 1}}}", re.MULTILINE)


def read_posts(config: Config) -> list[Post]:
    """Every post in ``config.content_dir``, newest first; the first bad one raises :class:`PostError`.

    A post is a file ``<slug>.md`` or a page bundle ``<slug>/index.md`` with its files beside it.
    """
    folder = config.content_dir
    if not folder.is_dir():
        raise PostError(
            "content folder not found", where=str(folder), hint="create it or set paths.content in newsletter.toml"
        )
    sources = sorted([*folder.glob("*.md"), *folder.glob("*/index.md")])
    posts = [read_post(path, config) for path in sources]
    check_unique(posts)
    return sorted(posts, key=lambda p: p.date, reverse=True)


def published(posts: Iterable[Post], now: datetime) -> list[Post]:
    """The posts readers may see at ``now``, newest first."""
    return [p for p in posts if p.is_published(now)]


def read_post(path: Path, config: Config) -> Post:
    """Parse one Markdown file; every mistake names the file and the field."""
    return read_post_bytes(path, config)[0]


def read_post_bytes(path: Path, config: Config) -> tuple[Post, bytes]:
    """:func:`read_post`, with the file's bytes as read (which the build cache keys the post by)."""
    where = str(path)
    raw = _read_bounded(path, where)
    if b"\x00" in raw:
        raise PostError("is a binary file, not Markdown", where=where, hint="remove it from the content folder")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PostError(f"line {line}: not valid UTF-8", where=where, hint="save the file as UTF-8") from None
    meta, body = split_front_matter(text, where)
    return _build_post(path, meta, body, config), raw


def _read_bounded(path: Path, where: str) -> bytes:
    """A regular file of at most :data:`MAX_POST_BYTES` (a FIFO or ``/dev/zero`` is never read)."""
    try:
        # No buffered file (one open, fstat, read, close); O_NONBLOCK: a FIFO is refused, not waited on.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):  # what open() says of a folder
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            if not stat.S_ISREG(info.st_mode):
                raise PostError("is not a regular file", where=where, hint="remove it from the content folder")
            chunks = [os.read(fd, min(info.st_size, MAX_POST_BYTES) + 1)]
            while chunks[-1] and sum(map(len, chunks)) <= MAX_POST_BYTES:  # it grew, or a short read
                chunks.append(os.read(fd, MAX_POST_BYTES + 1 - sum(map(len, chunks))))
            raw = b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PostError(f"cannot read ({exc.strerror})", where=where, hint="check the file's permissions") from None
    if len(raw) > MAX_POST_BYTES:
        raise PostError(
            f"is {max(info.st_size, len(raw)) / 1e6:.1f} MB; posts over {MAX_POST_BYTES // 1_000_000} MB are refused",
            where=where,
            hint="split the post; an email over 102 KB is clipped by Gmail anyway",
        )
    return raw


def _build_post(path: Path, meta: dict[str, Any], body: str, config: Config) -> Post:
    where = str(path)
    field = _FieldReader(meta, where)
    unknown = sorted(set(map(str, meta)) - KNOWN_FIELDS)
    if unknown:
        raise PostError(
            f"unknown front matter field {unknown[0][:60]!r}",
            where=where,
            hint=f"use only: {', '.join(sorted(KNOWN_FIELDS))}",
        )
    title = field.line("title", required=True)
    bundle = path.parent if path.name == "index.md" and path.parent != config.content_dir else None
    slug = field.slug(default=bundle.name if bundle else path.stem)
    post_id = field.post_id()
    date = field.required_date("date", config)
    updated = field.date("updated", config) or date
    if updated < date:
        raise PostError("field 'updated' is before 'date'", where=where, hint="updated must be on or after date")
    author = field.line("author") or config.site.author
    if "@" in author:
        raise PostError(
            "field 'author' must be a name, not an email address (ATOM-26)", where=where, hint="write only the name"
        )
    tags = field.tags()
    draft = field.flag("draft")
    url = config.site.post_url(slug)
    html = render_markdown(body, base_url=config.site.base_url, page_url=url, source=where)
    summary = field.line("summary") or _summarise(html)
    return Post(
        source=path,
        id=post_id,
        slug=slug,
        title=title,
        author=author,
        date=date,
        updated=updated,
        tags=tags,
        summary=summary,
        preheader=field.line("preheader") or summary,
        html=html,
        url=url,
        draft=draft,
        bundle=bundle,
    )


def render_markdown(
    markdown: str, *, base_url: str, page_url: str | None = None, source: str = "", seconds: float = MARKDOWN_SECONDS
) -> str:
    """CommonMark → sanitized HTML with every link and image made absolute.

    Relative URLs resolve against the post's own URL (``page_url``), as a browser
    reading the page would, so ``photo.jpg`` next to a page bundle's ``index.md`` is
    ``<base_url><slug>/photo.jpg`` everywhere, the email included.  A path from the
    root (``/static.png``) starts at ``base_url``, the site root, even when the site
    lives in a sub-folder of its host.
    Markup nested more than :data:`MAX_NESTING` deep is refused (a
    :class:`PostError` naming ``source``): past libxml2's limit the email
    inliner would cut the footer off; so is Markdown that takes more than
    ``seconds`` to parse.
    """
    markdown = xml_safe(markdown)
    if markdown.count(">") > MAX_RAW_NESTING and _DEEP_QUOTES.search(markdown):
        raise _too_deep(source)
    deadline = time.monotonic() + seconds
    rendered = commonmark_html(markdown)
    if time.monotonic() > deadline:  # linear, so only a huge post on a starved machine gets here
        raise PostError(
            f"took more than {seconds:g} s to parse as Markdown", where=source or "the post",
            hint="split the post into smaller ones",
        )  # fmt: skip
    # Each level opens with a "<": with no more of them than the bound, no need to count levels.
    if rendered.count("<") > MAX_RAW_NESTING and _rough_depth(rendered) > MAX_RAW_NESTING:
        raise _too_deep(source)
    page = _PAGE.set((base_url, page_url or base_url))
    try:
        cleaned = _cleaner().clean(rendered)
    finally:
        _PAGE.reset(page)
    if nesting_depth(cleaned) > MAX_NESTING:
        raise _too_deep(source)
    cleaned = _without_refused_urls(cleaned)
    # The serializer writes U+00A0 as "&nbsp;"; French text keeps its real no-break spaces.
    # Character references (&#x1b;) decoded by the sanitizer are stripped again (ATOM-31).
    return xml_safe(cleaned.replace("&nbsp;", "\u00a0")).strip()


# The URLs the attribute filter resolves against, (site root, the post's page), for the post being
# sanitized: the one sanitizer is built once (building it for every post cost a fifth of its time).
_PAGE: ContextVar[tuple[str, str]] = ContextVar("page")


def _absolute(tag: str, attribute: str, value: str) -> str | None:
    if attribute in NUMERIC_ATTRIBUTES:
        value = value.strip()
        return value if NUMERIC_ATTRIBUTES[attribute].fullmatch(value) else None
    if attribute in URL_ATTRIBUTES:
        value = value.strip()
        if _PLAIN_ABSOLUTE.fullmatch(value):
            return value  # what urljoin would write for it, at a tenth of the cost
        base_url, page_url = _PAGE.get()
        try:
            if value.startswith("/") and not value.startswith("//"):
                resolved = urljoin(base_url, value.lstrip("/"))
            else:
                resolved = urljoin(page_url, value)
            scheme = urlsplit(resolved).scheme
        except ValueError:  # "http://[oops": no URL at all
            return None
        return resolved if scheme in URL_SCHEMES else None
    return value


@functools.cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        allowed_classes=ALLOWED_CLASSES,
        attribute_filter=_absolute,
        link_rel=None,
        strip_comments=True,
        clean_content_tags={"script", "style"},
    )


def _too_deep(source: str) -> PostError:
    return PostError(
        f"nests blockquotes, lists or HTML tags more than {MAX_NESTING} levels deep",
        where=source or "the post", hint=f"flatten it to at most {MAX_NESTING} levels",
    )  # fmt: skip


def _rough_depth(html: str) -> int:
    """An upper bound of the nesting of raw, perhaps unclosed HTML (linear, no parser); it stops
    counting past :data:`MAX_RAW_NESTING`."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if name in _VOID or name in _END_IMPLIED or self_closing:
            continue
        depth = max(0, depth - 1) if closing else depth + 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_RAW_NESTING:
                break
    return deepest


# A tag of the sanitizer's output, which quotes every attribute with " and escapes every < of
# the text: a scan of its tags is exact, at a tenth of the cost of an HTML parser.
# A link or an image whose URL the sanitizer refused (javascript:, data:…): Markdown leaves it as
# its text, so that "[x](javascript:…)" reads "x" and no mail client sees an image without a source.
_HREFLESS_LINK = re.compile(r'<a(?: title="[^"]*")?>(.*?)</a>', re.DOTALL)
_SRCLESS_IMAGE = re.compile(r'<img((?: (?:alt|title|width|height)="[^"]*")*)>')
_ALT = re.compile(r' alt="([^"]*)"')


def _without_refused_urls(cleaned: str) -> str:
    if "<a>" in cleaned or "<a title=" in cleaned:
        cleaned = _HREFLESS_LINK.sub(r"\1", cleaned)
    if "<img" in cleaned:
        cleaned = _SRCLESS_IMAGE.sub(_image_text, cleaned)
    return cleaned


def _image_text(match: re.Match[str]) -> str:
    alt = _ALT.search(match[1])
    return escape(unescape(alt[1]), quote=False) if alt else ""  # as the sanitizer escapes text


_CLEAN_TAG = re.compile(r'<(/?)([a-z0-9]+)(?:[^>"]*"[^"]*")*[^>"]*>')  # ([^>"] | "[^"]*")* >, unrolled


def nesting_depth(html: str) -> int:
    """The deepest nesting of elements in sanitized HTML (whose every element is closed)."""
    depth = deepest = 0
    for closing, name in _CLEAN_TAG.findall(html):
        if name in _VOID:
            continue
        if closing:
            depth -= 1
        else:
            depth += 1
            if depth > deepest:
                deepest = depth
    return deepest


def _summarise(html: str) -> str:
    first = _first_paragraph(html)
    if len(first) <= SUMMARY_LENGTH:
        return first
    cut = first[:SUMMARY_LENGTH].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def _first_paragraph(html: str, start: int = 2048) -> str:
    """The first paragraph of the post's plain text, converting only as much HTML as it takes.

    When the post opens with a ``<p>`` (most do), that element alone is converted.  Otherwise
    a prefix cut after a tag's ``>`` is converted; once its text holds a paragraph break,
    the first paragraph can no longer change (blocks are only appended), so the rest of
    the post (often 20 times longer) is never walked.
    """
    if html.startswith("<p>"):
        for tag in _CLEAN_TAG.finditer(html):  # exact on sanitized HTML: every "<" of its text is escaped
            if tag[0] == "</p>":
                first = html_to_text(html[: tag.end()]).body.split("\n\n", 1)[0].strip()
                if first:
                    return first
                break  # an empty paragraph (an image alone): the next one is the first
    size = start
    while size < len(html):
        cut = html.rfind(">", 0, size) + 1
        if cut:
            parts = html_to_text(html[:cut]).body.split("\n\n", 1)
            if len(parts) == 2:
                return parts[0].strip()
        size *= 4
    return html_to_text(html).body.split("\n\n", 1)[0].strip()


class _FieldReader:
    """Typed front-matter fields, each error naming the file and field."""

    def __init__(self, meta: dict[str, Any], where: str) -> None:
        self.meta = meta
        self.where = where

    def fail(self, name: str, problem: str, hint: str) -> PostError:
        return PostError(f"field {name!r} {problem}", where=self.where, hint=hint)

    @staticmethod
    def shown(value: Any, length: int = 60) -> str:
        """A short quotation of a value for a message (never the whole of a list or table)."""
        if isinstance(value, list):
            return "a list"
        if isinstance(value, (dict, set)):
            return "a table of fields"
        return repr(value if isinstance(value, str) else str(value))[:length]

    def line(self, name: str, *, required: bool = False) -> str:
        value = self.meta.get(name)
        if value is None or value == "":
            if required:
                raise self.fail(name, "is missing", f"add '{name}: ...' to the front matter")
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(name, "must be text", f"write {name} as a quoted string")
        text = str(value)
        check_header_value(text, field=f"field {name!r}", where=self.where)
        text = xml_safe(text).strip()
        if required and not text:
            raise self.fail(name, "is empty", f"give the post a {name}")
        return text

    def slug(self, *, default: str) -> str:
        value = self.meta.get("slug", default)
        if not isinstance(value, str) or len(value) > MAX_SLUG_LENGTH or not SLUG_PATTERN.fullmatch(value):
            raise self.fail(
                "slug",
                f"{self.shown(value)} is not a valid slug",
                "use lowercase letters, digits and single hyphens, e.g. my-first-post (SEC-05)",
            )
        return value

    def post_id(self) -> str:
        value = self.meta.get("id")
        if not value:
            raise self.fail(
                "id",
                "is missing",
                f'add "id: urn:uuid:{uuid.uuid4()}" to the front matter once and never change it (ATOM-15)',
            )
        if not is_permanent_id(value):
            raise self.fail("id", f"{self.shown(value)} is not a permanent id", "use a tag: URI or urn:uuid: id")
        return value

    def date(self, name: str, config: Config, *, required: bool = False) -> datetime | None:
        value = self.meta.get(name)
        if value is None:
            if required:
                raise self.fail(name, "is missing", f"add '{name}: \"2013-03-18T09:12:00+01:00\"'")
            return None
        try:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise self.fail(
                name, f"{self.shown(value, 40)} is not a valid date", 'write it as "2013-03-18T09:12:00+01:00"'
            ) from None
        if when.year < EARLIEST_YEAR:
            raise self.fail(name, f"{value!r} is before {EARLIEST_YEAR}", "check the year")
        if when.tzinfo is None or when.utcoffset() is None:
            # The editor's zone is the one meant; feeds still get an offset (ATOM-21).
            when = when.replace(tzinfo=config.site.timezone)
            logging.getLogger("newsletter").warning(
                "%s: field %r %r has no time zone offset; read in site.timezone as %s"
                " — write the offset to silence this",
                self.where, name, value, when.isoformat(),
            )  # fmt: skip
        offset = when.utcoffset()
        if offset is not None and offset % timedelta(minutes=1):
            raise self.fail(name, f"{value!r} has an offset with seconds (not RFC 3339)", "write the offset as +HH:MM")
        if when - datetime.now(when.tzinfo) > FAR_FUTURE:
            raise self.fail(name, f"{value!r} is more than five years ahead", "check the year")
        return when

    def required_date(self, name: str, config: Config) -> datetime:
        when = self.date(name, config, required=True)
        if when is None:  # date() raises for a missing required field: never reached
            raise self.fail(name, "is missing", f"add '{name}: \"2013-03-18T09:12:00+01:00\"'")
        return when

    def tags(self) -> tuple[str, ...]:
        value = self.meta.get("tags") or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise self.fail("tags", "must be a list of words", "write tags: [one, two]")
        for tag in value:
            check_header_value(tag, field="field 'tags'", where=self.where)
        return tuple(xml_safe(t).strip() for t in value)

    def flag(self, name: str) -> bool:
        value = self.meta.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false", f"write {name}: true")
        return value
