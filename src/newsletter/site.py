"""Posts → the web archive: ``index.html``, one ``<slug>/index.html`` per post, and their files.

A post written as a page bundle (``content/posts/<slug>/index.md``) has its images and
other files beside it; they are published next to its page, in ``<slug>/``, so a relative
``![](photo.jpg)`` works on the web page, in the feed and in the email alike.  The files
of the shared ``content/static/`` folder are published at the root of the site.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .config import Config
from .content import Post
from .errors import PostError
from .feed import FEED_FILE, build_feed
from .files import MANIFEST, publish_tree
from .templates import labels, render, trusted_html


@dataclass(frozen=True)
class SiteBuild:
    """What a build published (``relative path → bytes or source file``) and what it removed."""

    files: dict[str, bytes | Path]
    removed: list[str]


def site_files(config: Config, posts: Sequence[Post], env: jinja2.Environment) -> dict[str, bytes | Path]:
    """Every file of the public site: rendered pages in memory, copied files as their source path.

    Nothing is written here, so a failure in any page leaves ``public/`` untouched.
    """
    common = {"site": config.site, "labels": labels(config.site.language), "feed_url": config.site.feed_url}
    files: dict[str, bytes | Path] = {FEED_FILE: build_feed(config, posts)}
    files["index.html"] = render(env, "site/index.html", posts=posts, **common).encode("utf-8")
    for post in posts:
        page = render(env, "site/post.html", post=post, content=trusted_html(post.html), **common)
        files[f"{post.slug}/index.html"] = page.encode("utf-8")
    copies = [(f"{post.slug}/{name}", source) for post in posts for name, source in bundle_files(post)]
    if config.static_dir is not None:
        copies += list(_files_under(config.static_dir))
    for relative, source in copies:
        if relative in files or relative == MANIFEST:
            raise PostError(
                f"would be published as {relative}, a file the build already writes",
                where=str(source), hint="rename or move the file",
            )  # fmt: skip
        files[relative] = source
    return files


def bundle_files(post: Post) -> Iterator[tuple[str, Path]]:
    """The files beside a page bundle's ``index.md`` (none for a single-file post)."""
    if post.bundle is not None:
        yield from _files_under(post.bundle)


def _files_under(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(relative path, file)`` for every file to publish under ``folder``, sorted.

    Markdown sources, hidden files (``.DS_Store``, ``.git``) and symbolic links (which
    could publish anything on the machine) are left out.
    """
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() == ".md":
            continue
        if path.is_symlink() or any((folder / parent).is_symlink() for parent in relative.parents):
            continue
        if path.is_file():
            yield relative.as_posix(), path


def build_site(config: Config, posts: Sequence[Post], env: jinja2.Environment) -> SiteBuild:
    """Render the site, write it into ``config.public_dir`` and remove the pages it no longer has."""
    files = site_files(config, posts, env)
    removed = publish_tree(config.public_dir, files)
    return SiteBuild(files, removed)
