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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .buildcache import Edit, PostCache
from .cachestore import PageKeys, digest
from .config import Config
from .errors import PostError
from .feed import (
    FEED_FILE,
    JSON_FEED_FILE,
    STYLESHEET_FILE,
    Tag,
    archive_document,
    archive_path,
    collect_tags,
    current_documents,
    feed_slices,
    tag_feed,
)  # fmt: skip
from .files import MANIFEST, StagedTree, publish_staged
from .post import Post
from .postindex import keys_of, marks_of
from .templates import Environment, labels, render, template_digest, trusted_html


@dataclass(frozen=True)
class SiteBuild:
    """What a build published: the subscription documents it (re)generated (``path → bytes``),
    every path it published, and what it removed."""

    files: dict[str, bytes]
    names: list[str]
    removed: list[str]
    kept: set[str] = field(default_factory=set)  # the pages left as the last build wrote them, unlooked at
    feeds: dict[str, Any] = field(default_factory=dict)  # feed path → (how it is made, the slugs of its posts)
    tag_slugs: dict[str, str] = field(default_factory=dict)


class _Output:
    """Where the pages go: a dict in memory (:func:`site_files`) or, through :class:`_Published`,
    a tree staged on disk page by page with unchanged pages skipped."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.tag_slugs: dict[str, str] = {}

    def __contains__(self, relative: str) -> bool:
        return relative in self.files

    def add(self, relative: str, data: bytes | Path) -> None:
        self.files[relative] = data

    def unchanged(self, relative: str, *key: str) -> bool:
        """True when ``relative`` was last written from the same inputs (``key``) and is kept as is."""
        return False

    def full(self, post: Post) -> Post:
        """``post`` with its HTML (a post from the build cache holds metadata only)."""
        return post

    def feed(self, relative: str, recipe: tuple[Any, ...], posts: Sequence[Post]) -> None:
        """Note how feed ``relative`` is made, and of which posts (for a rebuild after an edit)."""


class _Published(_Output):
    def __init__(self, tree: StagedTree, cache: PostCache, pages: PageKeys) -> None:
        super().__init__()
        self.tree, self.cache, self.pages = tree, cache, pages
        self.topics: dict[str, bytes] = {}  # the WebSub topics, compared after the build
        self.kept: set[str] = set()
        self.written: set[str] = set()
        self.feeds: dict[str, Any] = {}

    def __contains__(self, relative: str) -> bool:
        return relative in self.tree

    def add(self, relative: str, data: bytes | Path) -> None:
        is_topic = relative in TOPICS or (relative.startswith("tags/") and relative.endswith("/feed.xml"))
        if isinstance(data, bytes) and is_topic:
            self.topics[relative] = data
        self.written.add(relative)
        self.tree.add(relative, data)

    def unchanged(self, relative: str, *key: str) -> bool:
        if not self.pages.unchanged(relative, digest(*key)):
            return False
        intact = self.cache.output_intact(relative, self.tree.mode)
        if intact:  # the very file the last build wrote (same inode): kept without a look
            self.tree.names.add(relative)
            self.kept.add(relative)
            return True
        return intact is None and self.tree.keep(relative)

    def full(self, post: Post) -> Post:
        return self.cache.full(post)

    def feed(self, relative: str, recipe: tuple[Any, ...], posts: Sequence[Post]) -> None:
        self.feeds[relative] = (recipe, [post.slug for post in posts])


TOPICS = ("feed.xml", "feed.json")


def site_files(config: Config, posts: Sequence[Post], env: Environment) -> dict[str, bytes | Path]:
    """Every file of the public site: rendered pages in memory, copied files as their source path.

    Nothing is written here, so a failure in any page leaves ``public/`` untouched.
    """
    out = _Output()
    _generate(config, posts, env, out)
    return out.files


def _generate(
    config: Config,
    posts: Sequence[Post],
    env: Environment,
    out: _Output,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Render every file of the site into ``out``, one at a time, newest first.

    A page is skipped when ``out`` knows it was written from the same inputs: a post page
    from its post's cache key, the code, its templates and the site settings; a feed from
    the keys of the posts it holds; a listing (index and tag pages, the sitemap), which is
    given posts' metadata only, from their :func:`~newsletter.postindex.listing_mark`.
    """
    site = config.site
    tags = collect_tags(posts)
    common = _common(config, {tag.name: tag.slug for tag in tags})
    settings, feed_settings = _settings(config, common)
    current, archives = feed_slices(config, posts)
    post_template = template_digest(env, "site/post.html")
    paged: set[str] = set()  # the posts whose page is rendered with their archive page, their HTML read once
    for number, page in enumerate(archives, start=1):
        for post in _feed(config, out, archive_path(number), ("archive", number), page, feed_settings):
            _post_page(env, out, post, common, settings, post_template)
            paged.add(post.slug)
    for relative in (FEED_FILE, JSON_FEED_FILE):
        _feed(config, out, relative, ("current", len(archives)), current, feed_settings)
    for relative, name in ((STYLESHEET_FILE, "site/feed.xsl"), ("404.html", "site/404.html")):
        if not out.unchanged(relative, settings, template_digest(env, name)):
            out.add(relative, render(env, name, canonical="", **common).encode("utf-8"))
    pages = list(_index_pages(config, posts))
    index_template = template_digest(env, "site/index.html")
    for number, (path, chunk) in enumerate(pages, start=1):
        if out.unchanged(path, settings, index_template, f"{number}/{len(pages)}", *marks_of(chunk)):
            continue
        out.add(path, render(
            env, "site/index.html", posts=chunk, page=number, pages=len(pages),
            newer=_page_url(config, number - 1) if number > 1 else "",
            older=_page_url(config, number + 1) if number < len(pages) else "",
            canonical=_page_url(config, number), **common,
        ).encode("utf-8"))  # fmt: skip
    for done, post in enumerate(posts, start=1):
        if progress is not None:
            progress(done, len(posts))
        if post.slug not in paged:
            _post_page(env, out, post, common, settings, post_template)
    tag_template = template_digest(env, "site/tag.html")
    for tag, tagged in tags.items():
        recipe = ("tag", tag.name, tag.slug, len(tagged))
        _feed(config, out, f"tags/{tag.slug}/feed.xml", recipe, tagged[: config.feed.entries], feed_settings)
        page_path = f"tags/{tag.slug}/index.html"
        if out.unchanged(page_path, settings, tag_template, repr(tag), *marks_of(tagged)):
            continue
        out.add(page_path, render(
            env, "site/tag.html", tag=tag, posts=tagged, canonical=tag_url(config, tag),
            tag_feed_url=f"{tag_url(config, tag)}feed.xml", **common,
        ).encode("utf-8"))  # fmt: skip
    # The sitemap: the URLs and dates of the listed posts, of the index and of the tag pages.
    marks = (
        str(len(pages)),
        *marks_of(posts),
        *(f"{tag.slug} {marks_of(tagged[:1])[0]}" for tag, tagged in tags.items()),
    )
    if not out.unchanged("sitemap.xml", settings, template_digest(env, "site/sitemap.xml"), *marks):
        urls = _sitemap(config, posts, tags, len(pages))
        out.add("sitemap.xml", render(env, "site/sitemap.xml", urls=urls).encode("utf-8"))
    out.add("robots.txt", f"User-agent: *\nAllow: /\nSitemap: {site.base_url}sitemap.xml\n".encode())
    copies = [(f"{post.slug}/{name}", source) for post in posts for name, source in bundle_files(post)]
    if config.static_dir is not None:
        copies += list(_files_under(config.static_dir))
    out.tag_slugs = common["tag_slugs"]
    for relative, source in copies:
        if relative in out or relative == MANIFEST:
            raise PostError(
                f"would be published as {relative}, a file the build already writes",
                where=str(source), hint="rename or move the file",
            )  # fmt: skip
        out.add(relative, source)


def _common(config: Config, tag_slugs: dict[str, str]) -> dict[str, Any]:
    """What every HTML page is given."""
    site = config.site
    return {
        "site": site,
        "labels": labels(site.language),
        "feed_url": site.feed_url,
        "subscribe_url": f"{config.service_url}subscribe" if config.service_url else "",
        "tag_slugs": tag_slugs,
    }


def _settings(config: Config, common: dict[str, Any]) -> tuple[str, str]:
    """What shapes every HTML page, and every feed (which read only [site] and [feed])."""
    return digest(_CODE, repr(sorted(common.items()))), digest(_CODE, repr(config.site), repr(config.feed))


def _post_page(env: Environment, out: _Output, post: Post, common: dict[str, Any], *key: str) -> None:
    """``<slug>/index.html``, unless ``out`` has it from the same ``key`` (and post)."""
    path = f"{post.slug}/index.html"
    if out.unchanged(path, *key, *keys_of([post])):
        return
    post = out.full(post)
    html = render(env, "site/post.html", post=post, content=trusted_html(post.html), canonical=post.url, **common)
    out.add(path, html.encode("utf-8"))


def _feed(
    config: Config, out: _Output, relative: str, recipe: tuple[Any, ...], posts: Sequence[Post], settings: str
) -> list[Post]:
    """Feed ``relative`` of ``posts``, made as ``recipe`` says, unless ``out`` has it from the same posts;
    the posts with their HTML when it was made (none when it was not)."""
    out.feed(relative, recipe, posts)
    if out.unchanged(relative, settings, repr(recipe), *keys_of(posts)):
        return []
    kind, full = recipe[0], [out.full(post) for post in posts]
    if kind == "archive":
        out.add(relative, archive_document(config, recipe[1], full))
    elif kind == "current":
        out.add(relative, current_documents(config, full, archived=recipe[1])[relative])
    else:
        out.add(relative, tag_feed(config, Tag(recipe[1], recipe[2]), full, total=recipe[3]))
    return full


def rebuild_edited(config: Config, env: Environment, cache: PostCache, edit: Edit) -> SiteBuild:
    """The site after :meth:`PostCache.edited`: the pages of the edited posts and the feeds that
    hold them, rendered as :func:`build_site` renders them; every other page is as it was."""
    tree = StagedTree(config.public_dir)
    pages = PageKeys(cache.store)
    pages.new = dict(pages.old)
    out = _Published(tree, cache, pages)
    common = _common(config, edit.tag_slugs)
    settings, feed_settings = _settings(config, common)
    edited = {post.slug for post in edit.posts}
    try:
        if edited:
            post_template = template_digest(env, "site/post.html")
            for post in edit.posts:
                _post_page(env, out, post, common, settings, post_template)
        for relative, (recipe, slugs) in edit.feeds.items():
            if edited.intersection(slugs):
                _feed(config, out, relative, tuple(recipe), cache.edited_neighbours(edit, slugs), feed_settings)
    except BaseException:
        tree.discard()
        raise
    tree.names.update(edit.names)
    names = sorted(tree.names)
    publish_staged(tree)
    pages.save()
    return SiteBuild(out.topics, names, [], set(names) - out.written, edit.feeds, edit.tag_slugs)


# The code that shapes the pages: a new version of any of it renders every page again.
_CODE = digest(__version__, *(
    (Path(__file__).resolve().parent / name).read_bytes() for name in ("site.py", "feed.py", "templates.py")
))  # fmt: skip


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


def build_site(
    config: Config, posts: Sequence[Post], env: Environment, cache: PostCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SiteBuild:  # fmt: skip
    """Render the site into ``config.public_dir``, page by page, and remove the pages it no longer has.

    Pages are staged on disk as they are rendered (only the posts' metadata stays in memory)
    and renamed into place at the end, so a failure in any page leaves ``public/`` as it was.
    With ``cache`` (posts read through it), pages whose inputs did not change are not rendered.
    ``progress(done, total)`` hears each post page, rendered or found unchanged.
    """
    tree = StagedTree(config.public_dir)
    cache = cache or PostCache(config)
    pages = PageKeys(cache.store)
    out = _Published(tree, cache, pages)
    try:
        _generate(config, posts, env, out, progress)
    except BaseException:
        tree.discard()
        raise
    names = sorted(tree.names)
    removed = publish_staged(tree)
    for relative in removed:
        pages.forget(relative)
    pages.save()
    return SiteBuild(out.topics, names, removed, out.kept, out.feeds, out.tag_slugs)
