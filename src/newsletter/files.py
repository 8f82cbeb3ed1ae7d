"""Writing outputs safely: inside their folder only, through a temp file and a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

from .errors import OutputError


def inside(folder: Path, relative: str) -> Path:
    """``folder/relative``, refusing anything that would land outside ``folder`` (SEC-05)."""
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise OutputError(f"refusing to write {relative!r}", where=str(folder), hint="use a relative path")
    base = folder.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise OutputError(f"refusing to write {relative!r} outside the folder", where=str(folder))
    return target


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_tree(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write every ``relative path → bytes`` under ``folder``, each atomically.

    Every path is checked before the first byte is written, so a bad name
    leaves the folder untouched.  Unchanged files are not rewritten, which
    keeps their mtime (and a static host's validators) stable.
    """
    targets = {inside(folder, relative): data for relative, data in files.items()}
    written = []
    try:
        # Temp files of a build killed mid-write are garbage: the real files were never touched.
        for directory in {target.parent for target in targets}:
            if directory.is_dir():
                for stale in directory.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)
        for target, data in targets.items():
            if target.is_file() and target.read_bytes() == data:
                continue
            write_atomic(target, data)
            written.append(target)
    except OSError as exc:
        raise OutputError(
            f"cannot write ({exc.strerror})", where=str(exc.filename or folder), hint="check the folder's permissions"
        )
    return written
