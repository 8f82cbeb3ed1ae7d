"""The :class:`Post` record, in a module of its own so that reading it needs no parser.

:mod:`newsletter.content` makes posts from Markdown (and re-exports the class);
:mod:`newsletter.buildcache` makes them from the build cache, which lets
``newsletter status`` run without loading cmark, nh3 or PyYAML.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import PostError


@dataclass(frozen=True)
class Post:
    """One published (or draft) post, ready for every output."""

    source: Path
    id: str
    slug: str
    title: str
    author: str
    date: datetime
    updated: datetime
    tags: tuple[str, ...]
    summary: str
    preheader: str
    html: str
    url: str
    draft: bool = False
    bundle: Path | None = None  # the folder of a page bundle (<slug>/index.md and its files)

    @property
    def content_hash(self) -> str:
        """A fingerprint of what readers see: changes when the title or body changes."""
        return hashlib.sha256(f"{self.title}\n{self.html}".encode()).hexdigest()

    def is_published(self, now: datetime) -> bool:
        """Not a draft and not scheduled for later."""
        return not self.draft and self.date <= now


@dataclass(frozen=True)
class PostMeta(Post):
    """A post read from the build cache: everything but its HTML, which stays on disk
    (``html`` is empty) so that 10,000 posts fit in a few MB; ``content_hash`` is the one
    computed when the post was parsed."""

    cached_content_hash: str = field(default="", compare=False)
    cache_key: str = field(default="", compare=False)  # names the cached HTML (buildcache)
    html_hash: str = field(default="", compare=False)  # its sha256, checked when it is read
    listing_key: str = field(default="", compare=False)  # buildcache.listing_mark, kept in the index

    @property
    def content_hash(self) -> str:
        return self.cached_content_hash


def check_unique(posts: Sequence[Post]) -> None:
    """Slugs and ids must be unique (SEC-06, ATOM-16)."""
    for attribute in ("slug", "id"):
        seen: dict[str, Path] = {}
        for post in posts:
            value = getattr(post, attribute)
            if value in seen:
                raise PostError(
                    f"{attribute} {value!r} is already used by {source_name(seen[value])}",
                    where=str(post.source),
                    hint=f"give each post its own {attribute}",
                )
            seen[value] = post.source


def source_name(path: Path) -> str:
    """``a-post.md``, or ``a-post/index.md`` for a page bundle: every bundle's file is index.md."""
    return f"{path.parent.name}/{path.name}" if path.name == "index.md" else path.name
