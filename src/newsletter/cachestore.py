"""The build cache's SQLite file (``.newsletter-cache/cache.sqlite3``): named blobs (marshal),
the posts' HTML by key, and the keys of generated pages.  :mod:`newsletter.buildcache` says
what goes in it.  Any problem with the file makes it an empty cache, never an error.
"""

from __future__ import annotations

import hashlib
import marshal
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .config import Config

CACHE_DIR = ".newsletter-cache"
CACHE_FILE = "cache.sqlite3"
FORMAT = "newsletter-build-cache/3"


def cache_dir(config: Config) -> Path:
    return config.root / CACHE_DIR


def digest(*parts: str | bytes) -> str:
    """A sha256 of ``parts``, each length-prefixed so that no two lists of parts collide."""
    texts = [f"{len(part)}:{part}" for part in parts if isinstance(part, str)]
    if len(texts) == len(parts):  # the usual case (page keys of thousands of parts): one string, hashed at once
        return hashlib.sha256("".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(f"{len(data)}:".encode())
        hasher.update(data)
    return hasher.hexdigest()


class CacheStore:
    """The cache's SQLite file: named blobs (marshal) and the posts' HTML by key.

    Any problem with the file (missing, garbage, locked, read-only) makes it an empty cache
    that keeps nothing: the build goes on, only slower next time.
    """

    def __init__(self, config: Config) -> None:
        self.path = cache_dir(config) / CACHE_FILE
        self._db: sqlite3.Connection | None = None
        self._created = (False, False)  # whether this store made the file, and its folder
        self.broken = False
        self._pending: list[str] = []  # the keys of the HTML put since the last commit
        self.fresh: set[str] = set()  # the keys of the HTML this store put and committed (its bytes known good)

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        if self._db is not None or self.broken:
            return self._db
        if not create and not self.path.is_file():
            return None
        try:
            self._created = not self.path.exists(), not self.path.parent.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            try:
                db.execute("PRAGMA synchronous=OFF")  # regenerable: a torn write is a damaged cache, ignored
                db.execute("CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL)")
                db.execute("CREATE TABLE IF NOT EXISTS html (key TEXT PRIMARY KEY, html BLOB NOT NULL)")
            except sqlite3.DatabaseError:
                db.close()
                self.path.unlink(missing_ok=True)  # not a database (or not ours): started again
                db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
                db.execute("CREATE TABLE blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL)")
                db.execute("CREATE TABLE html (key TEXT PRIMARY KEY, html BLOB NOT NULL)")
        except (OSError, sqlite3.Error):
            self.broken = True
            return None
        self._db = db
        return db

    def _value(self, query: str, key: str) -> Any:
        """The one value ``query`` selects for ``key``; None without a cache, a row, or a readable file."""
        db = self._connection(create=False)
        if db is None:
            return None
        try:
            row = db.execute(query, (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row is not None else None

    def load(self, name: str) -> Any:
        """The blob ``name`` as it was saved, or None (absent, unreadable, or of another format)."""
        data = self._value("SELECT data FROM blobs WHERE name = ?", name)
        stored = _unmarshal(data) if data is not None else None
        return stored[1] if stored is not None else None

    def put_html(self, key: str, html: bytes) -> None:
        """Store a post's HTML, in the transaction that :meth:`save` commits (or :meth:`rollback` drops)."""
        try:
            db = self._transaction()
            if db is None:
                return
            db.execute("INSERT OR REPLACE INTO html (key, html) VALUES (?, ?)", (key, html))
            self._pending.append(key)
        except sqlite3.Error:
            self.rollback()
            self.broken = True

    def load_all(self, prefix: str) -> dict[str, Any]:
        """Every blob whose name starts with ``prefix``, as :meth:`load` reads one (the unreadable left out)."""
        db = self._connection(create=False)
        if db is None:
            return {}
        try:
            rows = db.execute("SELECT name, data FROM blobs WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
            stored = {name: _unmarshal(data) for name, data in rows}
        except sqlite3.Error:
            return {}
        return {name: value[1] for name, value in stored.items() if value is not None}

    def save(self, name: str, value: Any) -> None:
        """Save ``value`` as blob ``name``, and commit what :meth:`put_html` stored with it."""
        self.save_all({name: value})

    def save_all(self, values: dict[str, Any], stale_html: Collection[str] = ()) -> None:
        """Save each ``name → value`` as a blob and drop the HTML keyed ``stale_html``, in one
        transaction with what :meth:`put_html` stored."""
        try:
            db = self._transaction()
            if db is None:
                return
            rows = [(name, marshal.dumps((FORMAT, value))) for name, value in values.items()]
            db.executemany("INSERT OR REPLACE INTO blobs (name, data) VALUES (?, ?)", rows)
            db.executemany("DELETE FROM html WHERE key = ?", [(key,) for key in stale_html])
            db.execute("COMMIT")
            self.fresh.update(self._pending)
            self.fresh.difference_update(stale_html)
            self._pending = []
        except (sqlite3.Error, ValueError, OverflowError):
            self.rollback()

    def _transaction(self) -> sqlite3.Connection | None:
        """The connection, in a write transaction (the one open, else a new one); None without a cache."""
        db = self._connection(create=True)
        if db is not None and not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        return db

    def rollback(self) -> None:
        """Drop what was stored since the last save (a failed build leaves the cache as it was,
        or leaves none when there was none)."""
        self._pending, self.fresh = [], set()  # (what stays of what was committed is checked again)
        if self._db is not None and self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        made_file, made_folder = self._created
        if made_file:
            self.close()
            self.path.unlink(missing_ok=True)
            if made_folder:
                try:
                    self.path.parent.rmdir()
                except OSError:
                    pass
            self._created = (False, False)

    def html(self, key: str) -> bytes | None:
        html = self._value("SELECT html FROM html WHERE key = ?", key)
        return html if isinstance(html, bytes) else None

    def keep_only_html(self, keys: set[str]) -> None:
        """Remove the HTML of posts no longer in the index."""
        db = self._connection(create=False)
        if db is None:
            return
        try:
            stale = [(k,) for (k,) in db.execute("SELECT key FROM html") if k not in keys]
            if stale:
                with db:
                    db.executemany("DELETE FROM html WHERE key = ?", stale)
        except sqlite3.Error:
            pass

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _unmarshal(data: Any) -> tuple[str, Any] | None:
    """``(FORMAT, value)`` as :meth:`CacheStore.save` wrote it, or None (garbage, or another format)."""
    try:
        stored = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        return None
    return stored if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == FORMAT else None


class PageKeys:
    """The key each generated page was last written from, to skip unchanged ones."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        stored = store.load("pages")
        self.old: dict[str, str] = stored if isinstance(stored, dict) else {}
        self.new: dict[str, str] = {}

    def unchanged(self, relative: str, key: str) -> bool:
        """Record ``key`` for ``relative``; true when the last build wrote it from the same key."""
        self.new[relative] = key
        return self.old.get(relative) == key

    def forget(self, relative: str) -> None:
        self.new.pop(relative, None)

    def save(self) -> None:
        if self.new != self.old:
            self.store.save("pages", self.new)
