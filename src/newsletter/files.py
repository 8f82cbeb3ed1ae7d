"""Writing outputs safely: inside their folder only, through a temp file and a rename.

Published files (``public/``, ``preview/``) are world-readable, ``0644`` under the usual
umask, so a web server running as another user can serve them; ``mkstemp`` alone would
leave them ``0600``.  Folders get ``mkdir``'s ``0777`` less the umask (``0755``).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import OutputError

PUBLISHED_FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600


def current_umask() -> int:
    """The process umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def published_mode() -> int:
    """``0644`` less the umask: what a published file is given."""
    return PUBLISHED_FILE_MODE & ~current_umask()


def inside(folder: Path, relative: str) -> Path:
    """``folder/relative``, refusing anything that would land outside ``folder`` (SEC-05)."""
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise OutputError(f"refusing to write {relative!r}", where=str(folder), hint="use a relative path")
    base = folder.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise OutputError(f"refusing to write {relative!r} outside the folder", where=str(folder))
    return target


def _temp_beside(path: Path, data: bytes | Path, mode: int = PRIVATE_FILE_MODE, *, sync: bool = True) -> Path:
    """``data`` (bytes, or a file to copy) in a hidden temp file next to ``path``, flushed to disk
    (unless ``sync`` is false: the caller then syncs once for many files).

    The file is created with its final ``mode`` (``mode`` already has the umask's bits cleared,
    so the kernel's ``mode & ~umask`` leaves it as it is) and written with ``os.write``: no
    ``fchmod``, and none of the checks a buffered file object makes when it opens.
    """
    fd, temp = _create_beside(path, mode)
    try:
        if isinstance(data, Path):
            with os.fdopen(fd, "wb", closefd=False) as handle, data.open("rb") as source:
                shutil.copyfileobj(source, handle)  # streamed: images are not held in memory
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_PID = [os.getpid()]  # os.getpid() is a system call: asked once per process
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _create_beside(path: Path, mode: int) -> tuple[int, Path]:
    """A new hidden file next to ``path``, open for writing: ``.<name>.<pid>.tmp`` (one process
    stages one file per target at a time), or a random name (``mkstemp``) when that one is taken."""
    temp = path.with_name(f".{path.name}.{_PID[0]}.tmp")
    try:
        return os.open(temp, _CREATE_FLAGS, mode), temp
    except FileExistsError:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        if mode != PRIVATE_FILE_MODE:  # mkstemp's own mode
            try:
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                Path(name).unlink(missing_ok=True)
                raise
        return fd, Path(name)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The file is private (``0600``): this serves the outbox, whose messages carry
    addresses and personal unsubscribe tokens.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _unchanged(target: Path, data: bytes | Path) -> bool:
    if not target.is_file():
        return False
    if isinstance(data, Path):
        return filecmp.cmp(data, target, shallow=False)
    return target.stat().st_size == len(data) and target.read_bytes() == data


def write_tree(folder: Path, files: Mapping[str, bytes | Path]) -> list[Path]:
    """Write every ``relative path → bytes`` (or → a file to copy) under ``folder``: all, or none.

    Every path is checked and every new file written to a temp file beside its target
    before the first rename, so a full disk or a blocked path leaves the folder as it
    was; then the renames, each atomic.  Unchanged files are not rewritten, which keeps
    their mtime (and a static host's validators) stable; only their mode is corrected.
    Files are ``0644`` less the umask, so any web server can read them.
    """
    tree = _staged(StagedTree(folder, sync_each=True), files)
    return tree.commit()


class StagedTree:
    """Files staged one by one into temp files beside their targets, renamed all at once by
    :meth:`commit` (or removed by :meth:`discard`): pages can be streamed to disk as they are
    rendered, and a failure half-way still changes nothing.

    With ``sync_each`` false, the temp files are not fsynced one by one: a single
    ``os.sync()`` before the renames gives the same guarantee (after a power cut, each
    file is the old one or the complete new one) for the whole tree.  Generated output
    can always be rebuilt, so one sync per build is enough; the outbox and the ledger
    keep their own per-file durability (:func:`write_atomic`, the store).
    """

    def __init__(self, folder: Path, *, sync_each: bool = False) -> None:
        self.folder = folder
        self.sync_each = sync_each
        self.mode = published_mode()
        self.names: set[str] = set()
        self.staged: list[tuple[Path, Path]] = []
        self._ready: set[Path] = set()
        self._fresh: set[str] = set()  # folders this tree made: nothing was in them to look at
        self._base: Path | None = None
        self._resolved: dict[str, str] = {}  # relative folder → its resolved path

    def __contains__(self, relative: str) -> bool:
        return relative in self.names

    def check(self, relative: str) -> Path:
        """:func:`inside`, with the folders' resolved paths remembered: a build checks 10,000
        paths, and resolving each from the root costs a dozen ``lstat`` calls."""
        parts = relative.split("/")
        if not relative or "\x00" in relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return inside(self.folder, relative)  # the general case, for anything unusual
        if self._base is None:
            self._base = self.folder.resolve()
        resolved = str(self._base)
        missing = False  # below a name that is not there, nothing is: no need to look
        for depth, part in enumerate(parts, start=1):
            key = "/".join(parts[:depth])
            known = self._resolved.get(key)
            if known is None:
                known = os.path.join(resolved, part)
                # A link is followed, then must still lead inside (a folder this tree made holds none).
                if not missing and resolved not in self._fresh:
                    missing, link = _lookup(known)
                    if link:
                        known = os.path.realpath(known)
                if depth < len(parts):
                    self._resolved[key] = known
            resolved = known
        # Both are absolute and normalized (joined from plain names, or realpath's): a prefix test is enough.
        base = str(self._base)
        if not resolved.startswith(os.path.join(base, "")) or resolved == base:
            raise OutputError(f"refusing to write {relative!r} outside the folder", where=str(self.folder))
        return Path(resolved)

    def _directory(self, directory: Path) -> bool:
        """Make ``directory`` ready for staging; true when this call made it (so it is empty)."""
        if directory in self._ready:
            return str(directory) in self._fresh
        try:
            os.mkdir(directory)  # the usual case of a new page: a new folder, with nothing stale in it
            made = True
        except FileExistsError:
            made = False
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            made = False
        if made:
            self._fresh.add(str(directory))
        else:
            # Temp files of a build killed mid-write are garbage: the real files were never touched.
            for stale in directory.glob(".*.tmp"):  # before any of ours is staged there
                stale.unlink(missing_ok=True)
        self._ready.add(directory)
        return made

    def add(self, relative: str, data: bytes | Path) -> None:
        """Stage ``data`` (bytes, or a file to copy) as ``relative``, unless the file already holds it."""
        target = self.check(relative)
        self.names.add(relative)
        try:
            if not self._directory(target.parent) and _unchanged(target, data):
                if stat.S_IMODE(target.stat().st_mode) != self.mode:  # written 0600 by an older version
                    target.chmod(self.mode)
                return
            self.staged.append((_temp_beside(target, data, self.mode, sync=self.sync_each), target))
        except OSError as exc:
            self.discard()
            raise _cannot_write(exc, self.folder) from None

    def keep(self, relative: str) -> bool:
        """Count ``relative`` as written, as it is, when it is there; false when it is not."""
        target = self.check(relative)
        if not target.is_file():
            return False
        if stat.S_IMODE(target.stat().st_mode) != self.mode:
            target.chmod(self.mode)
        self.names.add(relative)
        return True

    def commit(self) -> list[Path]:
        """Rename every staged file into place; returns the files written."""
        try:
            if self.staged and not self.sync_each:
                os.sync()  # one sync for the whole build, before any rename (see the class docstring)
            for temp, target in self.staged:
                os.replace(temp, target)
        except OSError as exc:
            self.discard()
            raise _cannot_write(exc, self.folder) from None
        written = [target for _, target in self.staged]
        self.staged = []
        self._fresh.clear()  # its folders now hold files
        return written

    def discard(self) -> None:
        for temp, _ in self.staged:
            temp.unlink(missing_ok=True)
        self.staged = []


def _lookup(path: str) -> tuple[bool, bool]:
    """``(missing, is a link)`` for ``path``, from one ``lstat``."""
    try:
        return False, stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True, False
    except (OSError, ValueError):  # as os.path.islink: anything else is "not a link"
        return False, False


def _cannot_write(exc: OSError, folder: Path) -> OutputError:
    return OutputError(
        f"cannot write ({exc.strerror})", where=str(exc.filename or folder), hint="check the folder's permissions"
    )


# -- what a build owns ---------------------------------------------------------------------

MANIFEST = ".newsletter-manifest.json"


def read_manifest(folder: Path) -> set[str]:
    """The relative paths an earlier build recorded writing into ``folder``.

    No manifest (a first build, or public/ made by an older version) or an unreadable
    one means nothing is known to be ours, so nothing will be removed.
    """
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = data.get("files") if isinstance(data, dict) else None
    return {name for name in files if isinstance(name, str)} if isinstance(files, list) else set()


def _manifest_bytes(names: set[str]) -> bytes:
    note = "files the last build wrote; the next one removes those it drops"
    document: dict[str, object] = {"generator": "newsletter", "note": note, "files": sorted(names)}
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def publish_tree(folder: Path, files: Mapping[str, bytes | Path]) -> list[str]:
    """Write ``files`` as :func:`write_tree` does, then remove what the last build wrote and this one did not.

    The manifest (:data:`MANIFEST`) lists what the build wrote; only files it listed are
    ever removed, so a file put in the folder by hand is never touched, and folders are
    removed only once emptied.  Until the removals are done the manifest keeps naming
    the dropped files, so a build stopped half-way removes them next time.  Returns the
    relative paths removed.
    """
    if MANIFEST in files:
        raise OutputError(f"refusing to write {MANIFEST}: the build keeps its own list there", where=str(folder))
    tree = _staged(StagedTree(folder), files)
    return publish_staged(tree)


def publish_staged(tree: StagedTree) -> list[str]:
    """:func:`publish_tree` for a tree already staged: commit it with its manifest, then remove
    what the last build wrote and this one did not.  Returns the relative paths removed."""
    folder = tree.folder
    current = set(tree.names)
    dropped = sorted(read_manifest(folder) - current - {MANIFEST})
    try:
        tree.add(MANIFEST, _manifest_bytes(current | set(dropped)))
    except BaseException:
        tree.discard()
        raise
    tree.commit()
    if not dropped:
        return []
    removed, failure = _remove_generated(folder, dropped)
    write_tree(folder, {MANIFEST: _manifest_bytes(current | (set(dropped) - set(removed)))})
    if failure:
        raise OutputError(
            f"cannot remove a page no longer published ({failure.strerror})",
            where=str(failure.filename), hint="check the folder's permissions, then build again",
        )  # fmt: skip
    return removed


def _remove_generated(folder: Path, names: list[str]) -> tuple[list[str], OSError | None]:
    base = folder.resolve()
    removed: list[str] = []
    for name in names:
        try:
            target = inside(folder, name)
        except OutputError:
            continue  # a manifest edited to point outside the folder: never followed
        try:
            if target.is_file():
                target.unlink()
            removed.append(name)
            parent = target.parent
            while parent != base and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        except OSError as exc:
            return removed, exc
    return removed, None


def _staged(tree: StagedTree, files: Mapping[str, Any]) -> StagedTree:
    """Every path checked before anything is written, then every file staged; nothing left on failure."""
    for relative in files:
        tree.check(relative)
    try:
        for relative, data in files.items():
            tree.add(relative, data)
    except BaseException:
        tree.discard()
        raise
    return tree
