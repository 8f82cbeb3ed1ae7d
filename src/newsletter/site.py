"""Posts → the web archive: ``index.html`` and one ``<slug>/index.html`` per post."""

from __future__ import annotations

from typing import Sequence

import jinja2

from .config import Config
from .content import Post
from .feed import FEED_FILE, build_feed
from .files import write_tree
from .templates import labels, render, trusted_html


def site_files(config: Config, posts: Sequence[Post], env: jinja2.Environment) -> dict[str, bytes]:
    """Every file of the public site, rendered in memory: ``relative path → bytes``.

    Nothing is written here, so a failure in any page leaves ``public/`` untouched.
    """
    common = {"site": config.site, "labels": labels(config.site.language), "feed_url": config.site.feed_url}
    files = {FEED_FILE: build_feed(config, posts)}
    files["index.html"] = render(env, "site/index.html", posts=posts, **common).encode("utf-8")
    for post in posts:
        page = render(env, "site/post.html", post=post, content=trusted_html(post.html), **common)
        files[f"{post.slug}/index.html"] = page.encode("utf-8")
    return files


def build_site(config: Config, posts: Sequence[Post], env: jinja2.Environment) -> dict[str, bytes]:
    """Render the site, then write it into ``config.public_dir``; returns what was rendered."""
    files = site_files(config, posts, env)
    write_tree(config.public_dir, files)
    return files
