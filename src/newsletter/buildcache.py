"""The build cache: parsed posts and the keys of generated pages, kept between builds.

It is one SQLite file, ``.newsletter-cache/cache.sqlite3`` at the project root (ignored by
git), holding

* the post index (one marshal blob): per post source, its file's size, times and inode, the
  key of its inputs and its metadata (everything but the HTML); and the sanitized HTML of
  each post, by key;
* per generated page, the key of the inputs it was rendered from;
* what the last build read and wrote, so that a build with nothing changed stops at once.

A post's key hashes the file's bytes, its path, the parsing code and the config that
shapes a post (site URL, author, time zone), so an unchanged post is neither parsed
nor rendered, and changing any of those re-parses exactly the posts it affects.  A file
whose size, modification and change times and inode are those recorded is not even read
(as git's index does): any write, copy or rename changes its change time.
Everything here is regenerable: a missing, corrupt, foreign or half-written cache is
ignored and rebuilt, never an error, and nothing is fsynced.

This module imports no parser: with a warm cache, ``newsletter status`` reads posts
without loading cmark, nh3 or PyYAML, and a build with nothing changed loads no template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .cachestore import FORMAT, CacheStore, cache_dir, digest
from .config import Config
from .errors import NewsletterError, PostError
from .files import MANIFEST, published_mode
from .post import Post, PostMeta, check_unique
from .postindex import entry_of, post_of

# The modules whose code decides what a post parses to: a change to any of them re-parses all.
PARSING_MODULES = ("content.py", "frontmatter.py", "commonmark.py", "post.py", "plaintext.py", "textutil.py")
# ...and the libraries (by import name): a new Markdown parser, sanitizer, highlighter or YAML
# parser may write other HTML.
PARSING_LIBRARIES = ("cmarkgfm", "nh3", "pygments", "yaml")
# The post index is kept in this many pieces (by path), so that one edit rewrites a piece only.
INDEX_SHARDS = 64
INDEX_PREFIX = "posts "
# More posts edited than this, and the build reads them all (as a whole build does).
EDITS_MAX = 32
# Below this many posts to parse, starting worker processes costs more than it saves.
PARALLEL_MIN = 64
MAX_POST_BYTES = 2_000_000  # content.MAX_POST_BYTES: a bigger file is left to the parser to refuse


def library_signature(name: str) -> str:
    """The installed copy of library ``name``, without importing it (nor importlib.metadata, which
    costs more than a whole unchanged build): its module file's size, times and inode, which any
    upgrade or reinstall changes."""
    from importlib.util import find_spec

    try:
        spec = find_spec(name)
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec is not None and spec.origin else ""
    return f"{name} {origin} {_signature(origin) if origin else ''}"


def parsing_fingerprint(config: Config) -> str:
    """What, besides the file, shapes a parsed post: our code and the settings a post reads."""
    package = Path(__file__).resolve().parent
    code = [(package / name).read_bytes() for name in PARSING_MODULES]
    code += [library_signature(name).encode() for name in PARSING_LIBRARIES]
    site = config.site  # only what a post reads: its URL, default author, the zone named in hints
    return digest(FORMAT, __version__, *code, site.base_url, site.post_url("-"), site.author, str(site.timezone),
                  str(config.content_dir))  # fmt: skip


class PostCache:
    """Posts read through the cache: ``read()`` then ``html(post)`` for the HTML of one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.folder = cache_dir(config)
        self.store = CacheStore(config)
        self.fingerprint = parsing_fingerprint(config)
        self.parsed = 0  # how many posts the last read() had to parse
        self._entries: list[dict[str, Any]] = []  # the index as the last read() left it
        self._inputs: str | None = None  # what, besides the posts, the site is built from
        self._outputs: dict[str, list[int]] | None = None  # what the last build wrote (unchanged_build)
        self._intact: set[str] = set()  # of those, the files found as it left them
        self._seen: tuple[list[str], dict[str, list[int]]] | None = None  # the sources unchanged_build listed
        self._record: tuple[Any, ...] | None = None  # the last build's record, as unchanged_build read it
        self._shards: dict[int, list[dict[str, Any]]] = {}  # the pieces of the index edited() read

    def read(self, progress: Callable[[int, int], None] | None = None) -> list[Post]:
        """Every post of ``content/`` (metadata only), newest first, as ``content.read_posts`` orders them.

        Errors are the parser's own (:class:`PostError`), raised for the first bad post.
        ``progress(done, total)`` hears each post parsed (those the cache knows cost nothing).
        """
        folder = self.config.content_dir
        names, seen = self._seen if self._seen is not None else (_sources(folder), {})
        self._seen = None  # (stat once per build: what unchanged_build found is as fresh as needed)
        sources = [folder / name for name in names]
        text = str(folder)
        known = self._load_index()
        entries: list[dict[str, Any] | None] = []
        posts: list[PostMeta | None] = []
        keys: list[str] = []
        stats: list[list[int]] = []
        for relative, path in zip(names, sources, strict=True):
            entry = known.get(relative)
            # Taken before the file is read: an edit in between is seen next time.
            signature = seen.get(relative) or _signature(os.path.join(text, relative))
            if entry is not None and signature and entry.get("stat") == signature and isinstance(entry.get("key"), str):
                key = entry["key"]
            elif entry is not None:
                key = self._key(path, relative)
            else:
                key = ""  # nothing to compare it with: the parse keys it, from the bytes it reads
            keys.append(key)
            stats.append(signature)
            post = None
            # (HTML missing from the cache is noticed when it is read: html() parses again.)
            if key and entry is not None and entry.get("key") == key:
                post = post_of(path, entry)
                if post is not None and entry["stat"] != signature:
                    entry = dict(entry, stat=signature)  # a new entry: its shard of the index is saved again
            entries.append(entry if post is not None else None)
            posts.append(post)
        misses = [i for i, post in enumerate(posts) if post is None]
        self.parsed = len(misses)
        try:
            parsing = self._parse([sources[i] for i in misses], [names[i] for i in misses])
            for done, (index, (entry, html)) in enumerate(zip(misses, parsing, strict=True), start=1):
                if progress is not None:
                    progress(done, len(misses))
                entry["stat"] = stats[index]
                self.store.put_html(entry["key"], html)
                entries[index] = entry
                posts[index] = post_of(sources[index], entry)
            found = [post for post in posts if post is not None]
            check_unique(found)
        except BaseException:
            self.store.rollback()  # a failed build leaves the cache as it was
            raise
        self._entries = [e for e in entries if e is not None]
        self._save_index(self._entries, known)
        return sorted(found, key=lambda p: p.date, reverse=True)

    def html(self, post: Post) -> str:
        """The sanitized HTML of ``post`` (parsed again if its cached copy went missing)."""
        if not isinstance(post, PostMeta) or not post.cache_key:
            return post.html
        data = self.store.html(post.cache_key)
        # (HTML this very build stored, under a key that hashes its source, is as it was parsed.)
        fresh = post.cache_key in self.store.fresh
        if data is not None and (fresh or hashlib.sha256(data).hexdigest() == post.html_hash):
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        from .content import read_post  # the cached copy is gone or damaged: parse the post again

        return read_post(post.source, self.config).html

    def full(self, post: Post) -> Post:
        """``post`` with its HTML, as the parser made it."""
        if not isinstance(post, PostMeta) or post.html:
            return post  # (a post this has given its HTML already: not read again)
        full = object.__new__(PostMeta)  # dataclasses.replace, without __init__'s 22 frozen setattrs (as post_of)
        full.__dict__.update(post.__dict__, html=self.html(post))
        return full

    def unchanged_build(self, now: datetime) -> tuple[int, int] | None:
        """``(posts, files)`` of the last build when nothing it read has changed since and its
        output is as it left it, so that this build has nothing to do; otherwise None.

        What it read: every post file (by its recorded size, times and inode), the posts
        published at ``now``, the templates, the static and bundle files, the config and the
        code.  Neither a post nor a template is opened, and no parser or template engine loaded.
        """
        record = self.store.load("build")
        try:
            key, posts, files, sources, outputs, _extra = record
            self._outputs = {name: list(signature) for name, *signature in outputs}
            folder = str(self.config.content_dir)
            names = _sources(self.config.content_dir)
            # Every file is looked at even after a difference: read() and the pages use what is found.
            self._seen = names, _signatures(folder, names, _signature)
            same = [source[0] for source in sources] == names
            same = same and all(self._seen[1].get(source[0]) == list(source[1:5]) for source in sources)
            same = same and self._build_key(sources, now) == key
        except (TypeError, ValueError, PostError):
            self._outputs = None
            return None  # no record, or not one of ours
        self._record = record
        public = str(self.config.public_dir)
        found = _signatures(public, self._outputs, _output_signature)
        self._intact = {name for name, signature in self._outputs.items() if found[name] == signature}
        return (posts, files) if same and len(self._intact) == len(self._outputs) else None

    def edited(self, now: datetime) -> Edit | None:
        """After :meth:`unchanged_build` found changes: when they are only the text of a few posts,
        not what their listings show (:func:`~newsletter.postindex.listing_mark`), nor the
        templates, config, code, bundles or what is published, those posts parsed again
        (metadata only, the HTML cached); otherwise None, and the build reads every post.
        The index is updated for them."""
        if self._record is None or self._seen is None or self._outputs is None:
            return None
        _key, posts, _files, sources, outputs, extra = self._record
        names, seen = self._seen
        if len(self._intact) != len(self._outputs) or [source[0] for source in sources] != names:
            return None  # a page to write again, or a post added or removed
        try:
            changed = [i for i, source in enumerate(sources) if seen.get(source[0]) != list(source[1:5])]
            if not changed or len(changed) > EDITS_MAX or any(sources[i][8] for i in changed):
                return None  # (a page bundle's files are published with it: left to a whole build)
            inputs, bundles, published, feeds, tag_slugs = extra
            if self._build_parts(sources, now)[:3] != (inputs, bundles, published) or len(sources[0]) != 11:
                return None
        except (TypeError, ValueError, IndexError):
            return None  # a record of another kind
        try:
            return self._edit(changed, posts, sources, outputs, feeds, tag_slugs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            self.store.rollback()
            return None  # an index damaged in some way: the whole build reads it, and mends it
        except BaseException:
            self.store.rollback()  # a failed build leaves the cache as it was
            raise

    def _edit(
        self, changed: list[int], posts: int, sources: list[tuple[Any, ...]], outputs: list[tuple[Any, ...]],
        feeds: dict[str, Any], tag_slugs: dict[str, str],
    ) -> Edit | None:  # fmt: skip
        from .content import read_post

        seen = self._seen[1] if self._seen is not None else {}
        folder, new, edited, stale = self.config.content_dir, list(sources), [], []
        for i in changed:
            relative, *_, old_key, _bundle, mark, slug = sources[i]
            path = folder / relative
            key, entry = self._key(path, relative), self._indexed(relative)
            if not key or entry is None or entry["key"] != old_key:
                return None
            entry = dict(entry, stat=seen[relative])
            if key != old_key:  # its bytes changed (not only its times): parsed again
                parsed = read_post(path, self.config)
                entry = entry_of(key, relative, parsed, seen[relative])
                if entry["mark"] != mark or entry["slug"] != slug:
                    return None
                self.store.put_html(key, parsed.html.encode("utf-8"))
                stale.append(old_key)
                post = post_of(path, entry)
                if post is None:
                    return None
                edited.append(post)
            shard = _shard(relative)
            self._shards[shard] = [entry if e.get("path") == relative else e for e in self._shards[shard]]
            new[i] = (relative, *seen[relative], *sources[i][5:7], key, *sources[i][8:])
        self.parsed = len(edited)
        values = {
            f"{INDEX_PREFIX}{shard}": (self.fingerprint, self._shards[shard])
            for shard in {_shard(sources[i][0]) for i in changed}
        }
        self.store.save_all(values, stale_html=stale)
        return Edit(edited, new, posts, [o[0] for o in outputs if o[0] != MANIFEST], feeds, tag_slugs)

    def edited_neighbours(self, edit: Edit, slugs: Sequence[str]) -> list[PostMeta]:
        """The posts of ``slugs`` (metadata), the edited ones as :meth:`edited` parsed them."""
        by_slug = {post.slug: post for post in edit.posts}
        paths = {source[10]: source[0] for source in edit.sources}
        found = []
        for slug in slugs:
            post = by_slug.get(slug)
            if post is None:
                entry = self._indexed(paths[slug])
                post = post_of(self.config.content_dir / paths[slug], entry) if entry is not None else None
            if post is None:
                raise PostError(f"the build cache lost {slug}", hint="build again")  # (only if damaged mid-build)
            found.append(post)
        return found

    def record_edit(self, now: datetime, edit: Edit, names: Sequence[str], written: Collection[str]) -> None:
        """Remember a build after :meth:`edited`: its sources, and the outputs (``names``) it wrote again."""
        kept = set(names) - set(written)
        self._save_record(now, edit.posts_count, edit.sources, names, kept, edit.feeds, edit.tag_slugs)

    def _indexed(self, relative: str) -> dict[str, Any] | None:
        """The index entry of ``relative``, from its piece of the index (read once)."""
        shard = _shard(relative)
        if shard not in self._shards:
            stored = self.store.load(f"{INDEX_PREFIX}{shard}")
            ok = isinstance(stored, tuple) and len(stored) == 2 and stored[0] == self.fingerprint
            self._shards[shard] = (
                [e for e in stored[1] if isinstance(e, dict)] if ok and isinstance(stored[1], list) else []
            )
        return next((e for e in self._shards[shard] if e.get("path") == relative), None)

    def output_intact(self, relative: str, mode: int) -> bool | None:
        """Whether ``relative`` in ``public/`` is the very file the last build wrote, with ``mode``
        (its size, mtime and inode as recorded); None when there is no record to tell."""
        if self._outputs is None:
            return None
        wanted = self._outputs.get(relative)
        if wanted is None or len(wanted) != 4 or wanted[3] & 0o7777 != mode:
            return False
        return relative in self._intact

    def record_build(
        self, now: datetime, posts: int, names: Sequence[str], kept: Collection[str] = (),
        feeds: dict[str, Any] | None = None, tag_slugs: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Remember what a successful build (``posts`` published at ``now``) read and wrote;
        ``kept`` are files it left untouched after :meth:`output_intact` found them intact,
        ``feeds`` what each feed holds and ``tag_slugs`` the tags (for :meth:`edited`)."""
        sources = [
            (e["path"], *e["stat"], e["when"], e["draft"], e["key"], e["bundle"], e["mark"], e["slug"])
            for e in self._entries
            if e["stat"]
        ]
        if len(sources) != len(self._entries):
            return  # a file that could not be read: no shortcut
        sources.sort(key=lambda source: source[0].split("/"))
        self._save_record(now, posts, sources, names, kept, feeds or {}, tag_slugs or {})

    def _save_record(
        self, now: datetime, posts: int, sources: list[tuple[Any, ...]], names: Sequence[str], kept: Collection[str],
        feeds: dict[str, Any], tag_slugs: dict[str, str],
    ) -> None:  # fmt: skip
        public = str(self.config.public_dir)
        known = self._outputs or {}
        outputs = [
            (name, *(known[name] if name in kept and name in known else _output_signature(os.path.join(public, name))))
            for name in [*names, MANIFEST]
        ]
        if any(len(output) == 1 for output in outputs):
            return  # a file gone already (removed by hand during the build): no shortcut
        inputs, bundles, published, keys = self._build_parts(sources, now)
        key = digest(inputs, bundles, "\0", *keys)
        self.store.save(
            "build", (key, posts, len(names), sources, outputs, (inputs, bundles, published, feeds, tag_slugs))
        )

    def close(self) -> None:
        self.store.close()

    def _build_key(self, sources: Sequence[tuple[Any, ...]], now: datetime) -> str:
        """The inputs of a build at ``now`` of the posts in ``sources`` (as :meth:`record_build` lists them)."""
        inputs, bundles, _published, keys = self._build_parts(sources, now)
        return digest(inputs, bundles, "\0", *keys)

    def _build_parts(self, sources: Sequence[tuple[Any, ...]], now: datetime) -> tuple[str, str, str, list[str]]:
        """What a build at ``now`` reads besides the posts' text: the site's inputs, the bundles'
        files and which posts are published (in order); and the keys of those posts."""
        if self._inputs is None:  # once, before the build reads anything: an edit during it is seen next time
            self._inputs = _site_inputs(self.config)
        when = now.timestamp()
        newest_first = sorted(sources, key=lambda source: source[5], reverse=True)  # as read() sorts (stable)
        published = [source for source in newest_first if not source[6] and source[5] <= when]
        bundles = [source[0] for source in sources if source[8]]
        folder = self.config.content_dir
        files = [repr(_tree_signature(folder / Path(relative).parent)) for relative in bundles]
        order = digest(*(source[0] for source in published))
        return self._inputs, digest(*bundles, *files), order, [source[7] for source in published]

    # -- inside -------------------------------------------------------------------------------

    def _key(self, path: Path, relative: str) -> str:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_POST_BYTES + 1)
        except OSError:
            return ""  # the parser names the problem
        return digest(self.fingerprint, relative, data)

    def _parse(self, paths: list[Path], names: list[str]) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Parse ``paths`` (``names`` relative to the content folder), yielding for each its index
        entry (without its file's signature) and its HTML in UTF-8, in order as they come, so that only
        a few are in memory; across the cores when there are many.  The first bad post raises its own error."""
        if not paths:
            return  # nothing to parse: the parsers are not even imported
        workers = min(os.cpu_count() or 1, 8)
        if len(paths) < PARALLEL_MIN or workers < 2:
            for path, name in zip(paths, names, strict=True):
                yield _parse_entry(path, name, self.config, self.fingerprint)
            return
        from concurrent.futures import ProcessPoolExecutor

        # The workers need only what shapes a post (a provider's table may not pickle).
        config = dataclasses.replace(self.config, providers={})
        chunk = max(1, min(64, len(paths) // (workers * 4)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            try:
                parsed = pool.map(
                    _parse_quietly, paths, names, [config] * len(paths), [self.fingerprint] * len(paths),
                    chunksize=chunk,
                )  # fmt: skip
                for path, name, result in zip(paths, names, parsed, strict=True):
                    # A bad post (None) is parsed again here, to raise its own error as a sequential read does.
                    yield result if result is not None else _parse_entry(path, name, self.config, self.fingerprint)
            finally:
                pool.shutdown(cancel_futures=True)  # after an error, the rest is not parsed for nothing

    def _load_index(self) -> dict[str, dict[str, Any]]:
        known: dict[str, dict[str, Any]] = {}
        for stored in self.store.load_all(INDEX_PREFIX).values():
            if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] != self.fingerprint:
                continue  # made by other code or settings: its posts are parsed again
            if isinstance(stored[1], list):
                known.update(
                    (e["path"], e) for e in stored[1] if isinstance(e, dict) and isinstance(e.get("path"), str)
                )
        return known

    def _save_index(self, entries: list[dict[str, Any]], known: dict[str, dict[str, Any]]) -> None:
        """Save the shards of the index that changed since ``known`` (all of them when nothing was
        known), and drop the HTML of the posts gone or changed."""
        current = {entry["path"] for entry in entries}
        gone = [path for path in known if path not in current]
        dirty = {_shard(entry["path"]) for entry in entries if known.get(entry["path"]) is not entry}
        dirty |= {_shard(path) for path in gone}
        if not dirty:
            return
        if not known:
            dirty = set(range(INDEX_SHARDS))
        shards: dict[int, list[dict[str, Any]]] = {shard: [] for shard in dirty}
        for entry in entries:
            shards.get(_shard(entry["path"]), []).append(entry)
        keys = {entry["key"] for entry in entries}
        stale = {e["key"] for e in known.values() if e.get("key") not in keys}
        values = {
            f"{INDEX_PREFIX}{shard}": (self.fingerprint, shard_entries) for shard, shard_entries in shards.items()
        }
        self.store.save_all(values, stale_html=stale)
        if not known:
            self.store.keep_only_html(keys)  # a new index: whatever HTML the old one named is dropped


@dataclass(frozen=True)
class Edit:
    """What :meth:`PostCache.edited` found: the posts whose text changed, and the last build's record."""

    posts: list[PostMeta]
    sources: list[tuple[Any, ...]]  # the record's sources, brought up to date
    posts_count: int  # posts published
    names: list[str]  # every file the last build wrote (the manifest aside)
    feeds: dict[str, Any]  # feed path → (how it is made, the slugs of its posts)
    tag_slugs: dict[str, str]


def _parse_entry(path: Path, relative: str, config: Config, fingerprint: str) -> tuple[dict[str, Any], bytes]:
    """The index entry of the post ``relative`` at ``path`` (its signature left for the caller to set),
    keyed by the very bytes parsed, and its HTML in UTF-8: what the cache stores, made where it is parsed
    (in a worker, the parent only stores it; a dict of strings and bytes cost less to send than a Post)."""
    from .content import read_post_bytes

    post, raw = read_post_bytes(path, config)
    html = post.html.encode("utf-8")
    return entry_of(digest(fingerprint, relative, raw), relative, post, [], html), html


def _parse_quietly(path: Path, relative: str, config: Config, fingerprint: str) -> tuple[dict[str, Any], bytes] | None:
    """A worker's parse: ``None`` for a bad post (its error is raised again in the parent)."""
    try:
        return _parse_entry(path, relative, config, fingerprint)
    except NewsletterError:
        return None


# What, besides the posts, shapes the site: the code that renders and writes it, the libraries
# it renders with, and (in _site_inputs) the config, the templates and the static files.
SITE_MODULES = ("site.py", "feed.py", "templates.py", "files.py", "i18n.py")
SITE_LIBRARIES = ("jinja2", "markupsafe", "feedgen", "lxml")


def _site_inputs(config: Config) -> str:
    package = Path(__file__).resolve().parent
    code = [(package / name).read_bytes() for name in SITE_MODULES]
    code += [library_signature(name).encode() for name in SITE_LIBRARIES]
    folders = [config.templates_dir, package / "templates", package / "locales", config.static_dir]
    trees = [repr(_tree_signature(folder)) if folder is not None else "" for folder in folders]
    # The umask, through the mode published files get: a new one makes the build correct their modes.
    return digest(parsing_fingerprint(config), *code, repr(config), *trees, str(published_mode()))


def _tree_signature(folder: Path) -> list[tuple[str, list[int]]]:
    """Every file under ``folder`` with its :func:`_signature` (a folder that is not there: none)."""
    found = []
    for root, _folders, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found.append((path, _signature(Path(path))))
    return sorted(found)


def _output_signature(path: str, folder: int | None = None) -> list[int]:
    try:
        info = os.stat(path, dir_fd=folder)
    except OSError:
        return []
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode]


def _signatures(
    folder: str, names: Iterable[str], signature: Callable[[str, int | None], list[int]]
) -> dict[str, list[int]]:
    """``signature`` of each of ``names`` in ``folder``, stat'ed from a descriptor of the folder:
    for 10,000 files, the kernel resolves each name from there instead of from the root."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return {name: signature(os.path.join(folder, name), None) for name in names}
    try:
        return {name: signature(name, descriptor) for name in names}
    finally:
        os.close(descriptor)


def _sources(folder: Path) -> list[str]:
    """The posts' files, relative to ``folder`` (``x.md``, ``x/index.md``), in the order of the
    sorted paths of ``folder.glob("*.md")`` and ``folder.glob("*/index.md")``, without making
    10,000 Path objects."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        raise PostError(
            "content folder not found", where=str(folder), hint="create it or set paths.content in newsletter.toml"
        ) from None
    found = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # glob's * leaves hidden names out
        if entry.name.endswith(".md"):
            found.append(entry.name)
        if entry.is_dir() and os.path.lexists(os.path.join(entry.path, "index.md")):
            found.append(f"{entry.name}/index.md")
    # As paths sort, part by part: "\0", below every character a name can hold, stands for "/".
    return sorted(found, key=lambda relative: relative.replace("/", "\0"))


def _signature(path: Path | str, folder: int | None = None) -> list[int]:
    """What changes whenever a file's bytes may have: size, modification and change times, inode
    (of ``path``, relative to the ``folder`` descriptor when there is one)."""
    try:
        info = os.stat(path, dir_fd=folder)
    except OSError:
        return []
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _shard(relative: str) -> int:
    return zlib.crc32(relative.encode("utf-8", "surrogateescape")) % INDEX_SHARDS
