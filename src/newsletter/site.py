"""Posts → the web archive: index pages, post pages and their files, tag pages, feeds, sitemap, 404.

Every URL is stable: ``<slug>/``, ``page/N/`` (newest first), ``tags/<tag>/``,
``feed/archive/N.xml``.  Pages carry a subscribe form when ``[service] url``
says where ``newsletter serve`` runs, the feed autodiscovery links, and
canonical, Open Graph and Twitter card tags.

A post written as a page bundle (``content/posts/<slug>/index.md``) has its images and
other files beside it; they are published next to its page, in ``<slug>/``, so a relative
``![](photo.jpg)`` works on the web page, in the feed and in the email alike.  The files
of the shared ``content/static/`` folder are published at the root of the site.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .config import Config
from .content import Post
from .errors import PostError
from .feed import STYLESHEET_FILE, Tag, collect_tags, feed_documents, tag_feed
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
    site = config.site
    tags = collect_tags(posts)
    common: dict[str, Any] = {
        "site": site,
        "labels": labels(site.language),
        "feed_url": site.feed_url,
        "subscribe_url": f"{config.service_url}subscribe" if config.service_url else "",
        "tag_slugs": {tag.name: tag.slug for tag in tags},
    }
    files: dict[str, bytes | Path] = dict(feed_documents(config, posts))
    files[STYLESHEET_FILE] = render(env, "site/feed.xsl", **common).encode("utf-8")
    pages = list(_index_pages(config, posts))
    for number, (path, chunk) in enumerate(pages, start=1):
        files[path] = render(
            env, "site/index.html", posts=chunk, page=number, pages=len(pages),
            newer=_page_url(config, number - 1) if number > 1 else "",
            older=_page_url(config, number + 1) if number < len(pages) else "",
            canonical=_page_url(config, number), **common,
        ).encode("utf-8")  # fmt: skip
    for post in posts:
        page = render(env, "site/post.html", post=post, content=trusted_html(post.html), canonical=post.url, **common)
        files[f"{post.slug}/index.html"] = page.encode("utf-8")
    for tag, tagged in tags.items():
        files[f"tags/{tag.slug}/feed.xml"] = tag_feed(config, tag, tagged)
        files[f"tags/{tag.slug}/index.html"] = render(
            env, "site/tag.html", tag=tag, posts=tagged, canonical=tag_url(config, tag),
            tag_feed_url=f"{tag_url(config, tag)}feed.xml", **common,
        ).encode("utf-8")  # fmt: skip
    files["404.html"] = render(env, "site/404.html", canonical="", **common).encode("utf-8")
    files["sitemap.xml"] = render(env, "site/sitemap.xml", urls=_sitemap(config, posts, tags, len(pages))).encode("utf-8")
    files["robots.txt"] = f"User-agent: *\nAllow: /\nSitemap: {site.base_url}sitemap.xml\n".encode("utf-8")
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


def tag_url(config: Config, tag: Tag) -> str:
    return f"{config.site.base_url}tags/{tag.slug}/"


def _page_url(config: Config, number: int) -> str:
    return config.site.base_url if number == 1 else f"{config.site.base_url}page/{number}/"


def _index_pages(config: Config, posts: Sequence[Post]):
    """``(path, posts)`` per index page, newest first; an empty site still has its first page."""
    size = config.feed.per_page
    count = max(1, -(-len(posts) // size))
    for number in range(1, count + 1):
        path = "index.html" if number == 1 else f"page/{number}/index.html"
        yield path, posts[(number - 1) * size : number * size]


def _sitemap(config: Config, posts: Sequence[Post], tags: dict[Tag, list[Post]], pages: int) -> list[tuple[str, str]]:
    """``(URL, lastmod)`` for every page worth indexing; lastmod from front matter, never the build time."""
    newest = posts[0].updated.date().isoformat() if posts else ""
    urls = [(_page_url(config, n), newest) for n in range(1, pages + 1)]
    urls += [(post.url, post.updated.date().isoformat()) for post in posts]
    urls += [(tag_url(config, tag), tagged[0].updated.date().isoformat()) for tag, tagged in tags.items()]
    return urls


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
