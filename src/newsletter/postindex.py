"""The post index's entries: what the build cache keeps of a parsed post (everything but its
HTML, which is kept by key), the :class:`~newsletter.post.PostMeta` an entry reads back as,
and the marks that listings are keyed on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .cachestore import digest
from .post import Post, PostMeta


def entry_of(key: str, relative: str, post: Post, signature: list[int], html: bytes | None = None) -> dict[str, Any]:
    """The index entry of ``post``, parsed from ``relative`` (whose file has ``signature``) with ``key``;
    ``html`` is its HTML in UTF-8 when the caller has it (encoded once for both hashes and the cache)."""
    if html is None:
        html = post.html.encode("utf-8")
    content = hashlib.sha256(post.title.encode())  # Post.content_hash, without joining the title to the HTML
    content.update(b"\n")
    content.update(html)
    return {
        "path": relative,
        "stat": signature,
        "key": key,
        "content_hash": content.hexdigest(),
        "html_hash": hashlib.sha256(html).hexdigest(),
        "id": post.id,
        "slug": post.slug,
        "title": post.title,
        "author": post.author,
        "date": post.date.isoformat(),
        "updated": post.updated.isoformat(),
        "tags": list(post.tags),
        "summary": post.summary,
        "preheader": None if post.preheader == post.summary else post.preheader,  # (kept once, as a rule)
        "url": post.url,
        "draft": post.draft,
        "bundle": post.bundle is not None,
        "when": post.date.timestamp(),  # to tell what is published without making dates (unchanged_build)
        "mark": listing_mark(post),
    }


def post_of(source: Path, entry: dict[str, Any]) -> PostMeta | None:
    """The post an index entry (of the file ``source``) describes; ``None`` for an entry that is not one of ours."""
    try:
        return _checked_post(source, entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


_TEXTS = ("id", "slug", "title", "author", "summary", "url", "key", "html_hash", "content_hash", "mark")


def _checked_post(source: Path, entry: dict[str, Any]) -> PostMeta:
    "".join(map(entry.__getitem__, _TEXTS))  # a TypeError unless they are all strings
    if type(entry["draft"]) is not bool:
        raise TypeError(entry)
    if type(entry["tags"]) is not list or type("".join(entry["tags"])) is not str:
        raise TypeError(entry)
    preheader = entry["summary"] if entry["preheader"] is None else entry["preheader"]
    if type(preheader) is not str:
        raise TypeError(entry)
    # Made without the frozen dataclass's __init__, which sets each of its 18 fields through
    # object.__setattr__: for 10,000 posts, a good part of a rebuild after one edit.
    post = object.__new__(PostMeta)
    post.__dict__.update(
        source=source,
        id=entry["id"],
        slug=entry["slug"],
        title=entry["title"],
        author=entry["author"],
        date=datetime.fromisoformat(entry["date"]),
        updated=datetime.fromisoformat(entry["updated"]),
        tags=tuple(entry["tags"]),
        summary=entry["summary"],
        preheader=preheader,
        html="",
        url=entry["url"],
        draft=entry["draft"],
        bundle=source.parent if entry["bundle"] else None,
        cached_content_hash=entry["content_hash"],
        cache_key=entry["key"],
        html_hash=entry["html_hash"],
        listing_key=entry["mark"],
    )
    return post


def keys_of(posts: Sequence[Post]) -> list[str]:
    """The cache keys of ``posts`` (a post not from the cache is keyed by its content)."""
    return [p.cache_key if isinstance(p, PostMeta) and p.cache_key else digest(repr(p)) for p in posts]


def listing_mark(post: Post) -> str:
    """A hash of what a listing (index and tag pages, the sitemap) is given of ``post``: its
    metadata, not its HTML, so that an edit of the text alone renders no listing again."""
    fields = (str(post.source), post.id, post.slug, post.title, post.author, post.date.isoformat(),
              post.updated.isoformat(), *post.tags, "\0", post.summary, post.preheader, post.url,
              repr((post.draft, post.bundle is not None)))  # fmt: skip
    return digest(*fields)


def marks_of(posts: Sequence[Post]) -> list[str]:
    """The :func:`listing_mark` of each of ``posts`` (kept in the index for a post from the cache)."""
    return [p.listing_key if isinstance(p, PostMeta) and p.listing_key else listing_mark(p) for p in posts]
