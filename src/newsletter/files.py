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
from pathlib import Path
from typing import Mapping

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


def _temp_beside(path: Path, data: bytes | Path, mode: int = PRIVATE_FILE_MODE) -> Path:
    """``data`` (bytes, or a file to copy) in a hidden temp file next to ``path``, flushed to disk."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode != PRIVATE_FILE_MODE:  # mkstemp's own mode
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, Path):
                with data.open("rb") as source:  # streamed: images are not held in memory
                    shutil.copyfileobj(source, handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)


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
    targets = {inside(folder, relative): data for relative, data in files.items()}
    mode = published_mode()
    staged: list[tuple[Path, Path]] = []
    try:
        for directory in {target.parent for target in targets}:
            directory.mkdir(parents=True, exist_ok=True)
            # Temp files of a build killed mid-write are garbage: the real files were never touched.
            for stale in directory.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        for target, data in targets.items():
            if _unchanged(target, data):
                if stat.S_IMODE(target.stat().st_mode) != mode:  # written 0600 by an older version
                    target.chmod(mode)
                continue
            staged.append((_temp_beside(target, data, mode), target))
        for temp, target in staged:
            os.replace(temp, target)
    except OSError as exc:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write ({exc.strerror})", where=str(exc.filename or folder), hint="check the folder's permissions"
        ) from None
    return [target for _, target in staged]


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
    document = {"generator": "newsletter", "note": "files the last build wrote; the next one removes those it drops"}
    document["files"] = sorted(names)
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
    current = set(files)
    dropped = sorted(read_manifest(folder) - current - {MANIFEST})
    write_tree(folder, {**files, MANIFEST: _manifest_bytes(current | set(dropped))})
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
