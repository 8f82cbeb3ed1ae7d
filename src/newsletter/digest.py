"""``newsletter send --digest``: the posts due, gathered into one issue with its own template.

The digest is a post of its own (not a file): its id is derived from the ids of the posts it
gathers, so planning it again over the same posts (to resume a crashed send) gives the same
issue, and its posts are recorded as sent (``mark-sent``) once it has gone out, so none is
mailed again on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Sequence

import jinja2

from .config import Config
from .content import Post
from .templates import render, trusted_html

DIGEST_HTML = "email/digest.html"
DIGEST_TEXT = "email/digest.txt"
SLUG_PREFIX = "digest-"
MAX_SUBJECT = 150


def is_digest(slug: str) -> bool:
    return slug.startswith(SLUG_PREFIX)


def digest_post(config: Config, posts: Sequence[Post], env: jinja2.Environment) -> tuple[Post, str]:
    """The digest of ``posts`` (oldest first) as a post, and its plain-text body."""
    ordered = sorted(posts, key=lambda p: (p.date, p.slug))
    newest = ordered[-1]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, config.site.id)
    digest_id = f"urn:uuid:{uuid.uuid5(namespace, 'digest:' + ' '.join(p.id for p in ordered))}"
    titles = " · ".join(p.title for p in ordered)
    title = titles if len(titles) <= MAX_SUBJECT else titles[: MAX_SUBJECT - 1].rstrip() + "…"
    html = render(env, DIGEST_HTML, posts=ordered, site=config.site)
    text = render(env, DIGEST_TEXT, posts=ordered, site=config.site)
    slug = f"{SLUG_PREFIX}{newest.date:%Y%m%d-%H%M}-{len(ordered)}"
    post = replace(
        newest,
        id=digest_id,
        slug=slug,
        title=title,
        summary=" · ".join(p.summary[:80] for p in ordered)[:300],
        preheader=" · ".join(p.title for p in ordered)[:200],
        html=str(trusted_html(html)),
        url=config.site.base_url,
        tags=(),
        bundle=None,
        updated=newest.updated,
    )
    return post, text.strip() + "\n"
