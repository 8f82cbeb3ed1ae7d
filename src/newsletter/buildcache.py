"""The build cache: parsed posts and the keys of generated pages, kept between builds.

It lives in ``.newsletter-cache/`` at the project root (ignored by git) and holds

* ``posts.json``: per post source, the key of its inputs and its metadata (everything
  but the HTML), and ``html/<key>.html``, the sanitized HTML;
* ``pages.json``: per generated page, the key of the inputs it was rendered from.

A post's key hashes the file's bytes, its path, the parsing code and the config that
shapes a post (site URL, author, time zone), so an unchanged post is neither parsed
nor rendered, and changing any of those re-parses exactly the posts it affects.
Everything here is regenerable: a missing, corrupt, foreign or half-written cache is
ignored and rebuilt, never an error, and nothing is fsynced.

This module imports no parser: with a warm cache, ``newsletter status`` reads posts
without loading cmark, nh3 or PyYAML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .config import Config
from .errors import NewsletterError, PostError
from .post import Post, PostMeta, check_unique

CACHE_DIR = ".newsletter-cache"
FORMAT = "newsletter-build-cache/1"
# The modules whose code decides what a post parses to: a change to any of them re-parses all.
PARSING_MODULES = ("content.py", "commonmark.py", "post.py", "plaintext.py", "textutil.py")
# ...and the libraries: a new Markdown parser, sanitizer, highlighter or YAML parser may write other HTML.
PARSING_LIBRARIES = ("cmarkgfm", "nh3", "Pygments", "PyYAML")
# Below this many posts to parse, starting worker processes costs more than it saves.
PARALLEL_MIN = 64
MAX_POST_BYTES = 2_000_000  # content.MAX_POST_BYTES: a bigger file is left to the parser to refuse


def cache_dir(config: Config) -> Path:
    return config.root / CACHE_DIR


def digest(*parts: str | bytes) -> str:
    """A sha256 of ``parts``, each length-prefixed so that no two lists of parts collide."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(f"{len(data)}:".encode())
        hasher.update(data)
    return hasher.hexdigest()


def parsing_fingerprint(config: Config) -> str:
    """What, besides the file, shapes a parsed post: our code and the settings a post reads."""
    from importlib import metadata  # reads the installed versions, imports none of the libraries

    package = Path(__file__).resolve().parent
    code = [(package / name).read_bytes() for name in PARSING_MODULES]
    for library in PARSING_LIBRARIES:
        try:
            code.append(f"{library} {metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            code.append(library.encode())
    site = config.site  # only what a post reads: its URL, default author, the zone named in hints
    return digest(FORMAT, __version__, *code, site.base_url, site.post_url("-"), site.author, str(site.timezone),
                  str(config.content_dir))  # fmt: skip


class PostCache:
    """Posts read through the cache: ``read()`` then ``html(post)`` for the HTML of one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.folder = cache_dir(config)
        self.fingerprint = parsing_fingerprint(config)
        self.parsed = 0  # how many posts the last read() had to parse

    def read(self) -> list[Post]:
        """Every post of ``content/`` (metadata only), newest first, as ``content.read_posts`` orders them.

        Errors are the parser's own (:class:`PostError`), raised for the first bad post.
        """
        folder = self.config.content_dir
        if not folder.is_dir():
            raise PostError(
                "content folder not found", where=str(folder), hint="create it or set paths.content in newsletter.toml"
            )
        sources = sorted([*folder.glob("*.md"), *folder.glob("*/index.md")])
        known = self._load_index()
        entries: list[dict[str, Any] | None] = []
        posts: list[PostMeta | None] = []
        keys: list[str] = []
        prefix = len(str(folder)) + 1
        for path in sources:
            relative = str(path)[prefix:]  # glob's paths all start with the folder's (on POSIX)
            key = self._key(path, relative)
            keys.append(key)
            entry = known.get(relative)
            post = None
            # (A cached HTML file that went missing is noticed when it is read: html() parses again.)
            if key and entry is not None and entry.get("key") == key:
                post = _meta(folder, entry)
            entries.append(entry if post else None)
            posts.append(post)
        misses = [i for i, post in enumerate(posts) if post is None]
        self.parsed = len(misses)
        existed = self.folder.is_dir(), (self.folder / "html").is_dir()
        written: list[Path] = []
        try:
            for index, parsed in zip(misses, self._parse([sources[i] for i in misses]), strict=True):
                new_file = self._write_html(keys[index], parsed.html)
                if new_file is not None:
                    written.append(new_file)
                entries[index] = _entry(keys[index], str(sources[index])[prefix:], parsed)
                posts[index] = _meta(folder, entries[index])
            found = [post for post in posts if post is not None]
            check_unique(found)
        except BaseException:
            self._undo(written, existed)  # a failed build leaves nothing behind, the cache included
            raise
        if misses or len(known) != len(sources):
            self._save_index({e["path"]: e for e in entries if e is not None})
        return sorted(found, key=lambda p: p.date, reverse=True)

    def html(self, post: Post) -> str:
        """The sanitized HTML of ``post`` (parsed again if its cached copy went missing)."""
        if not isinstance(post, PostMeta) or not post.cache_key:
            return post.html
        try:
            data = self._html_path(post.cache_key).read_bytes()
            if hashlib.sha256(data).hexdigest() == post.html_hash:
                return data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            pass
        from .content import read_post  # the cached copy is gone or damaged: parse the post again

        return read_post(post.source, self.config).html

    def full(self, post: Post) -> Post:
        """``post`` with its HTML, as the parser made it."""
        return dataclasses.replace(post, html=self.html(post)) if isinstance(post, PostMeta) else post

    # -- inside -------------------------------------------------------------------------------

    def _key(self, path: Path, relative: str) -> str:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_POST_BYTES + 1)
        except OSError:
            return ""  # the parser names the problem
        return digest(self.fingerprint, relative, data)

    def _html_path(self, key: str) -> Path:
        return self.folder / "html" / f"{key}.html"

    def _parse(self, paths: list[Path]) -> Iterator[Post]:
        """Parse ``paths``, yielding posts in order as they come, so that only a few are in memory;
        across the cores when there are many.  The first bad post raises its own error."""
        if not paths:
            return  # nothing to parse: the parsers are not even imported
        from .content import read_post

        workers = min(os.cpu_count() or 1, 8)
        if len(paths) < PARALLEL_MIN or workers < 2:
            for path in paths:
                yield read_post(path, self.config)
            return
        from concurrent.futures import ProcessPoolExecutor

        # The workers need only what shapes a post (a provider's table may not pickle).
        config = dataclasses.replace(self.config, providers={})
        chunk = max(1, min(64, len(paths) // (workers * 4)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            try:
                parsed = pool.map(_parse_quietly, paths, [config] * len(paths), chunksize=chunk)
                for path, post in zip(paths, parsed, strict=True):
                    # A bad post (None) is parsed again here, to raise its own error as a sequential read does.
                    yield post if post is not None else read_post(path, self.config)
            finally:
                pool.shutdown(cancel_futures=True)  # after an error, the rest is not parsed for nothing

    def _load_index(self) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads((self.folder / "posts.json").read_text(encoding="utf-8"))
            if document.get("format") != FORMAT or document.get("fingerprint") != self.fingerprint:
                return {}
            posts = document["posts"]
            return {e["path"]: e for e in posts if isinstance(e, dict) and isinstance(e.get("path"), str)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # no cache, or not one of ours: rebuilt

    def _save_index(self, entries: dict[str, dict[str, Any]]) -> None:
        document = {"format": FORMAT, "fingerprint": self.fingerprint, "posts": list(entries.values())}
        # Streamed to the file: the whole index as one string would be the build's peak of memory.
        _write_quietly(self.folder / "posts.json", lambda handle: json.dump(document, handle, ensure_ascii=False))
        wanted = {f"{e['key']}.html" for e in entries.values()}
        try:
            for stale in (self.folder / "html").iterdir():
                if stale.name not in wanted:
                    stale.unlink(missing_ok=True)
        except OSError:
            pass

    def _write_html(self, key: str, html: str) -> Path | None:
        """Store the HTML under its key; returns the file when it is new."""
        path = self._html_path(key)
        if path.is_file():  # the same post parsed before: the same HTML (checked by hash when read)
            return None
        _write_quietly(path, html.encode("utf-8"))
        return path

    def _undo(self, written: list[Path], existed: tuple[bool, bool]) -> None:
        for path in written:
            path.unlink(missing_ok=True)
        for folder, was_there in ((self.folder / "html", existed[1]), (self.folder, existed[0])):
            if not was_there:
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _parse_quietly(path: Path, config: Config) -> Post | None:
    """A worker's parse: ``None`` for a bad post (its error is raised again in the parent)."""
    from .content import read_post

    try:
        return read_post(path, config)
    except NewsletterError:
        return None


def _entry(key: str, relative: str, post: Post) -> dict[str, Any]:
    return {
        "path": relative,
        "key": key,
        "content_hash": post.content_hash,
        "html_hash": hashlib.sha256(post.html.encode("utf-8")).hexdigest(),
        "id": post.id,
        "slug": post.slug,
        "title": post.title,
        "author": post.author,
        "date": post.date.isoformat(),
        "updated": post.updated.isoformat(),
        "tags": list(post.tags),
        "summary": post.summary,
        "preheader": post.preheader,
        "url": post.url,
        "draft": post.draft,
        "bundle": post.bundle is not None,
    }


def _meta(folder: Path, entry: dict[str, Any]) -> PostMeta | None:
    """The post an index entry describes; ``None`` for an entry that is not one of ours."""
    try:
        return _checked_meta(folder, entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _checked_meta(folder: Path, entry: dict[str, Any]) -> PostMeta:
    source = Path(os.path.join(folder, entry["path"]))
    texts = [entry[name] for name in ("id", "slug", "title", "author", "summary", "preheader", "url", "key")]
    if not all(isinstance(text, str) for text in texts) or not isinstance(entry["draft"], bool):
        raise TypeError(entry)
    if not isinstance(entry["tags"], list) or not all(isinstance(tag, str) for tag in entry["tags"]):
        raise TypeError(entry)
    return PostMeta(
        source=source,
        id=entry["id"],
        slug=entry["slug"],
        title=entry["title"],
        author=entry["author"],
        date=datetime.fromisoformat(entry["date"]),
        updated=datetime.fromisoformat(entry["updated"]),
        tags=tuple(entry["tags"]),
        summary=entry["summary"],
        preheader=entry["preheader"],
        html="",
        url=entry["url"],
        draft=entry["draft"],
        bundle=source.parent if entry["bundle"] else None,
        cached_content_hash=entry["content_hash"],
        cache_key=entry["key"],
        html_hash=entry["html_hash"],
    )


class PageKeys:
    """The key each generated page was last written from (``pages.json``), to skip unchanged ones."""

    def __init__(self, config: Config) -> None:
        self.path = cache_dir(config) / "pages.json"
        self.old: dict[str, str] = {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            if document.get("format") == FORMAT and isinstance(document.get("pages"), dict):
                self.old = {k: v for k, v in document["pages"].items() if isinstance(v, str)}
        except (OSError, ValueError, AttributeError):
            pass
        self.new: dict[str, str] = {}

    def unchanged(self, relative: str, key: str) -> bool:
        """Record ``key`` for ``relative``; true when the last build wrote it from the same key."""
        self.new[relative] = key
        return self.old.get(relative) == key

    def forget(self, relative: str) -> None:
        self.new.pop(relative, None)

    def save(self) -> None:
        if self.new != self.old:
            document = {"format": FORMAT, "pages": self.new}
            _write_quietly(self.path, json.dumps(document, sort_keys=True).encode("utf-8"))


def _write_quietly(path: Path, data: bytes | Callable[[TextIO], object]) -> None:
    """Write a cache file (bytes, or what a function writes to it as UTF-8 text) through a rename;
    a failure only costs the next build some time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            if callable(data):
                with os.fdopen(fd, "w", encoding="utf-8") as text:
                    data(text)
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def keys_of(posts: Sequence[Post]) -> list[str]:
    """The cache keys of ``posts`` (a post not from the cache is keyed by its content)."""
    return [p.cache_key if isinstance(p, PostMeta) and p.cache_key else digest(repr(p)) for p in posts]
