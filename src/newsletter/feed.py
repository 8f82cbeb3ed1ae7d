"""Posts → Atom feed through feedgen (the only module that imports it).

Deterministic by construction: every date comes from front matter, the feed's
``updated`` is the newest entry's (ATOM-20, FG-06), entries are appended in
newest-first order (FG-07).  Content is the sanitized web HTML, never the
CSS-inlined email (ATOM-30), as ``type="html"`` (ATOM-22).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from feedgen.feed import FeedGenerator
from lxml import etree

from . import __version__
from .config import Config
from .content import Post

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_FILE = "feed.xml"
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=timezone.utc)


def build_feed(config: Config, posts: Sequence[Post]) -> bytes:
    """The Atom document for ``posts`` (published ones, newest first) as UTF-8 bytes."""
    site = config.site
    feed = FeedGenerator()
    feed.id(site.id)
    feed.title(site.title)
    if site.description:
        feed.subtitle(site.description)
    feed.author({"name": site.author})
    # FG-04: self first, alternate last.
    feed.link(href=site.feed_url, rel="self", type="application/atom+xml")
    feed.link(href=site.base_url, rel="alternate", type="text/html")
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
    return _restore_entry_link_rels(feed.atom_str(pretty=True))


def _restore_entry_link_rels(document: bytes) -> bytes:
    """feedgen 1.0.0 drops ``rel``/``type`` from entry links (FG-02, python-feedgen#135).

    Every entry link we add is the alternate HTML page, so put both back.
    """
    root = etree.fromstring(document)
    for link in root.iterfind(f"{{{ATOM_NS}}}entry/{{{ATOM_NS}}}link"):
        link.set("rel", "alternate")
        link.set("type", "text/html")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
