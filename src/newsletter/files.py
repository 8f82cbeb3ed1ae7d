"""Writing outputs safely: inside their folder only, through a temp file and a rename.

Published files (``public/``, ``preview/``) are world-readable, ``0644`` under the usual
umask, so a web server running as another user can serve them; ``mkstemp`` alone would
leave them ``0600``.  Folders get ``mkdir``'s ``0777`` less the umask (``0755``).
"""

from __future__ import annotations

import os
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


def _temp_beside(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> Path:
    """``data`` in a hidden temp file next to ``path`` with permissions ``mode``, flushed to disk."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode != PRIVATE_FILE_MODE:  # mkstemp's own mode
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
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


def write_tree(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write every ``relative path → bytes`` under ``folder``: all of them, or none.

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
            if target.is_file() and target.read_bytes() == data:
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
