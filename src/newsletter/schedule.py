"""What ``newsletter send`` mails without a SLUG: the posts due, one by one or as a digest.

Due: every published post not yet sent that is newer than the last one sent.  A digest
(``newsletter send --digest``) gathers them into one issue with its own template.

The digest is a post of its own (not a file): its id is derived from the ids of the posts it
gathers, so planning it again over the same posts (to resume a crashed send) gives the same
issue, and its posts are recorded as sent (``mark-sent``) once it has gone out, so none is
mailed again on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from .post import Post
from .store import MARKED, SENT, Ledger

if TYPE_CHECKING:  # the parsers and Jinja2 load only when a digest is planned: status stays light
    from .config import Config
    from .templates import Environment

DIGEST_HTML = "email/digest.html"
DIGEST_TEXT = "email/digest.txt"
SLUG_PREFIX = "digest-"
MAX_SUBJECT = 150


def due_posts(posts: Sequence[Post], ledger: Ledger, now: datetime) -> list[Post]:
    """Every published post not yet sent that is newer than the newest one sent or marked, oldest first.

    Two posts that became due between two timer runs are both mailed, the older first.
    Before the first send nothing is "newer than the last issue", so only the newest
    post is due: the back catalogue is never mailed implicitly (``mark-sent --all``
    records it once and for all).  One pass over the ledger's issues, whatever the
    number of posts.
    """
    from .content import published

    done = {(r.post_id, r.slug) for r in ledger.issues.all_issues() if r.status in (SENT, MARKED)}
    candidates = published(posts, now)  # newest first
    sent_dates = [p.date for p in candidates if (p.id, p.slug) in done]
    if not sent_dates:
        return candidates[:1]
    watermark = max(sent_dates)
    due = [p for p in candidates if p.date > watermark and (p.id, p.slug) not in done]
    # A post whose id went out under another slug stays in the list: choose() explains the conflict.
    return sorted(due, key=lambda p: (p.date, p.slug))


def is_digest(slug: str) -> bool:
    return slug.startswith(SLUG_PREFIX)


def digest_post(config: Config, posts: Sequence[Post], env: Environment) -> tuple[Post, str]:
    """The digest of ``posts`` (oldest first) as a post, and its plain-text body."""
    from .templates import labels, render, trusted_html

    ordered = sorted(posts, key=lambda p: (p.date, p.slug))
    newest = ordered[-1]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, config.site.id)
    digest_id = f"urn:uuid:{uuid.uuid5(namespace, 'digest:' + ' '.join(p.id for p in ordered))}"
    titles = " · ".join(p.title for p in ordered)
    title = titles if len(titles) <= MAX_SUBJECT else titles[: MAX_SUBJECT - 1].rstrip() + "…"
    words = labels(config.site.language)  # dates as the readers write them
    html = render(env, DIGEST_HTML, posts=ordered, site=config.site, labels=words)
    text = render(env, DIGEST_TEXT, posts=ordered, site=config.site, labels=words)
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
