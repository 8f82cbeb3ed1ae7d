"""Posts → feeds: the Atom subscription document, RFC 5005 archives, tag feeds and JSON Feed 1.1.

The only module that imports feedgen (when a feed is written: a rebuild that writes none
does not load it, nor lxml).  Deterministic by construction: every
date comes from front matter, a document's ``updated`` is its newest entry's
(ATOM-20, FG-06), entries are appended newest first (FG-07).  Content is the
sanitized web HTML, never the CSS-inlined email (ATOM-30), as ``type="html"``
(ATOM-22).

Archives (RFC 5005 §4) are fixed slices of ``[feed] entries`` posts counted
from the oldest, so a new post changes only the subscription document and,
when it fills a slice, adds one archive page: published archive pages stay
byte-identical and can be cached forever.  For that reason an archive page
carries ``prev-archive`` (which the RFC requires) and ``current``, but no
``next-archive``: that link is only recommended, readers walk backwards from
the subscription document, and adding it later would change a page that must
not change.  The subscription document holds the newest posts not yet in a
full archive page: between ``entries`` and ``2 × entries − 1`` of them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .config import Config
from .errors import PostError
from .post import Post

ATOM_NS = "http://www.w3.org/2005/Atom"
HISTORY_NS = "http://purl.org/syndication/history/1.0"
FEED_FILE = "feed.xml"
JSON_FEED_FILE = "feed.json"
STYLESHEET_FILE = "feed.xsl"
ARCHIVE_DIR = "feed/archive"
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class Tag:
    """A tag as written in posts, and the URL-safe slug of its pages."""

    name: str
    slug: str


def tag_slug(name: str) -> str:
    """``"Entreprise 2.0"`` → ``"entreprise-2-0"``: accents dropped, anything else a hyphen."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80]


def collect_tags(posts: Sequence[Post]) -> dict[Tag, list[Post]]:
    """Every tag with its posts (newest first); two tags that share a slug are refused."""
    by_slug: dict[str, tuple[Tag, list[Post]]] = {}
    slugs: dict[str, str] = {}  # a few tags on 10,000 posts: each slug made once
    for post in posts:
        for name in dict.fromkeys(post.tags):
            slug = slugs.get(name)
            if slug is None:
                slug = slugs[name] = tag_slug(name)
            if not slug:
                raise PostError(
                    f"tag {name!r} has no letter or digit to name its page", where=f"{post.source}: tags",
                    hint="use a tag with at least one letter or digit",
                )  # fmt: skip
            known = by_slug.get(slug)
            tag, tagged = known if known is not None else by_slug.setdefault(slug, (Tag(name, slug), []))
            if tag.name != name:
                raise PostError(
                    f"tags {tag.name!r} and {name!r} would share the page tags/{slug}/", where=f"{post.source}: tags",
                    hint=f"write the tag the same way everywhere, e.g. {tag.name!r}",
                )  # fmt: skip
            tagged.append(post)
    return {tag: tagged for tag, tagged in sorted(by_slug.values(), key=lambda item: item[0].slug)}


def archive_slices(posts: Sequence[Post], size: int) -> tuple[list[Post], list[list[Post]]]:
    """``(subscription entries newest first, archive pages oldest first)`` for RFC 5005."""
    oldest_first = list(reversed(posts))
    archived = max(0, (len(oldest_first) - size) // size)
    pages = [list(reversed(oldest_first[i * size : (i + 1) * size])) for i in range(archived)]
    return list(reversed(oldest_first[archived * size :])), pages


def archive_url(config: Config, number: int) -> str:
    return f"{config.site.base_url}{ARCHIVE_DIR}/{number}.xml"


def feed_documents(config: Config, posts: Sequence[Post]) -> dict[str, bytes]:
    """The site's own feeds: ``feed.xml`` (+ archive pages, or one complete document) and ``feed.json``."""
    current, pages = feed_slices(config, posts)
    files = {archive_path(number): archive_document(config, number, page) for number, page in enumerate(pages, start=1)}
    files.update(current_documents(config, current, archived=len(pages)))
    return files


def feed_slices(config: Config, posts: Sequence[Post]) -> tuple[list[Post], list[list[Post]]]:
    """``(posts of the subscription documents, archive pages oldest first)``."""
    if config.feed.complete:
        return list(posts), []
    return archive_slices(posts, config.feed.entries)


def archive_path(number: int) -> str:
    return f"{ARCHIVE_DIR}/{number}.xml"


def archive_document(config: Config, number: int, page: Sequence[Post]) -> bytes:
    """Archive page ``number`` (from 1, the oldest) holding ``page``."""
    links = [("current", config.site.feed_url)]
    if number > 1:
        links.append(("prev-archive", archive_url(config, number - 1)))
    return atom_document(config, page, self_url=archive_url(config, number), links=links, marker="archive")


def current_documents(config: Config, current: Sequence[Post], *, archived: int) -> dict[str, bytes]:
    """``feed.xml`` and ``feed.json`` for the posts not in an archive page (``archived`` pages before them)."""
    site, options = config.site, config.feed
    links = [("prev-archive", archive_url(config, archived))] if archived else []
    if options.websub_hub:
        links.append(("hub", options.websub_hub))
    return {
        FEED_FILE: atom_document(
            config, current, self_url=site.feed_url, links=links, marker="complete" if options.complete else None
        ),
        JSON_FEED_FILE: json_feed(config, current, feed_url=site.base_url + JSON_FEED_FILE, title=site.title),
    }


def tag_feed(config: Config, tag: Tag, posts: Sequence[Post], *, total: int | None = None) -> bytes:
    """``tags/<slug>/feed.xml``: the newest ``entries`` posts of one tag (complete when they are all).

    ``total``, when given, is how many posts the tag has (``posts`` may then be only the newest).
    """
    url = f"{config.site.base_url}tags/{tag.slug}/feed.xml"
    entries = list(posts[: config.feed.entries])
    total = len(posts) if total is None else total
    links = [("hub", config.feed.websub_hub)] if config.feed.websub_hub else []
    return atom_document(
        config, entries, self_url=url, links=links, title=f"{config.site.title} — {tag.name}",
        alternate=f"{config.site.base_url}tags/{tag.slug}/", marker="complete" if len(entries) == total else None,
    )  # fmt: skip


def atom_document(
    config: Config,
    posts: Sequence[Post],
    *,
    self_url: str,
    links: Sequence[tuple[str, str]] = (),
    title: str | None = None,
    alternate: str | None = None,
    marker: str | None = None,
) -> bytes:
    """One Atom document for ``posts`` (newest first) as UTF-8 bytes.

    ``marker`` is ``"archive"`` or ``"complete"`` for the RFC 5005 element of that name.
    """
    from feedgen.feed import FeedGenerator  # here, not at the top: a build that writes no feed never loads it

    site = config.site
    feed = FeedGenerator()
    feed.id(site.id)
    feed.title(title or site.title)
    if site.description:
        feed.subtitle(site.description)
    feed.author({"name": site.author})
    # FG-04: self first, alternate last.
    feed.link(href=self_url, rel="self", type="application/atom+xml")
    for rel, href in links:
        feed.link(href=href, rel=rel, **({"type": "application/atom+xml"} if rel != "hub" else {}))
    feed.link(href=alternate or site.base_url, rel="alternate", type="text/html")
    feed.language(site.language)
    feed.generator("newsletter", version=__version__)
    # An empty feed still needs a fixed `updated`; the epoch keeps builds reproducible.
    feed.updated(max((p.updated for p in posts), default=EMPTY_FEED_UPDATED))
    for post in posts:
        entry = feed.add_entry(order="append")
        entry.id(post.id)
        entry.title(post.title)
        entry.author({"name": post.author})
        entry.link(href=post.url, rel="alternate", type="text/html")
        entry.published(post.date)
        entry.updated(post.updated)
        entry.summary(post.summary, type="text")
        entry.content(post.html, type="html")
        for tag in post.tags:
            entry.category(term=tag)
    return _finish(feed, marker, stylesheet=stylesheet_path(config))


def stylesheet_path(config: Config) -> str:
    """The XSLT's path on the site's own origin (browsers apply a stylesheet only from there)."""
    return (urlsplit(config.site.base_url).path or "/") + STYLESHEET_FILE


def _finish(feed: Any, marker: str | None, *, stylesheet: str) -> bytes:
    """``feed`` serialised once, with what feedgen cannot write: entry link ``rel``s, RFC 5005 marker, stylesheet.

    feedgen 1.0.0 drops ``rel``/``type`` from entry links (FG-02, python-feedgen#135);
    every entry link we add is the alternate HTML page, so both are put back.  The additions
    go on feedgen's own element tree (``_create_atom``, what ``atom_str`` serialises; feedgen is
    pinned), so the document is serialised once instead of written, parsed and written again.
    feedgen's elements carry no namespace (its root has an ``xmlns`` attribute instead), so the
    marker's root is a real Atom ``feed`` declaring both namespaces, in the order a parsed
    document would declare them.
    """
    from lxml import etree

    root = feed._create_atom()[0]
    for link in root.iterfind("entry/link"):
        link.set("rel", "alternate")
        link.set("type", "text/html")
    if marker:
        rebuilt = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS, "fh": HISTORY_NS})
        for name, value in root.attrib.items():
            if name != "xmlns":
                rebuilt.set(name, value)
        etree.SubElement(rebuilt, f"{{{HISTORY_NS}}}{marker}")
        rebuilt.extend(root)
        root = rebuilt
    tree = etree.ElementTree(root)
    root.addprevious(etree.ProcessingInstruction("xml-stylesheet", f'type="text/xsl" href="{stylesheet}"'))
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def json_feed(config: Config, posts: Sequence[Post], *, feed_url: str, title: str) -> bytes:
    """JSON Feed 1.1 for ``posts``: the same ids, URLs and content as the Atom entries."""
    site = config.site
    document: dict = {
        "version": JSON_FEED_VERSION,
        "title": title,
        "home_page_url": site.base_url,
        "feed_url": feed_url,
        "language": site.language,
        "authors": [{"name": site.author}],
    }
    if site.description:
        document["description"] = site.description
    if config.feed.websub_hub:
        document["hubs"] = [{"type": "WebSub", "url": config.feed.websub_hub}]
    document["items"] = [
        {
            "id": post.id,
            "url": post.url,
            "title": post.title,
            "content_html": post.html,
            "summary": post.summary,
            "date_published": post.date.isoformat(),
            "date_modified": post.updated.isoformat(),
            "authors": [{"name": post.author}],
            **({"tags": list(post.tags)} if post.tags else {}),
        }
        for post in posts
    ]
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def build_feed(config: Config, posts: Sequence[Post]) -> bytes:
    """The subscription document alone (``feed.xml``)."""
    return feed_documents(config, posts)[FEED_FILE]


def html_document(html: str) -> Any:
    """An HTML page parsed with lxml (imported here only), for the checks that read the email."""
    import lxml.html

    return lxml.html.document_fromstring(html)


def css_selector(selector: str) -> Any:
    """A compiled CSS selector over documents from :func:`html_document`."""
    from lxml.cssselect import CSSSelector

    return CSSSelector(selector)
