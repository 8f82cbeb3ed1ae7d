"""One sender at a time: an exclusive ``flock`` on a file beside the ledger.

The kernel releases a ``flock`` when its process dies, even by SIGKILL, so a
lock left by a killed sender can never block the next one; the pid written in
the file only serves to say who holds it, or whose lock was taken over.
(``flock`` is not reliable on network file systems: keep the ledger local.)
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from .errors import LedgerError, SendLocked


class SendLock:
    """``with SendLock(path):`` — held for the whole send; raises :class:`SendLocked` at once if taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.previous: dict | None = None  # what a dead holder left behind, if anything

    def __enter__(self) -> SendLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the send lock ({exc.strerror})", where=str(self.path),
                hint="send.database must be a file path in a writable folder",
            ) from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
            raise SendLocked(
                f"another newsletter send is running ({who})",
                where=str(self.path),
                hint="wait for it to finish; nothing was sent by this command",
            ) from None
        self.previous = _read(fd) or None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": os.uname().nodename,  # gethostname() without importing socket
                    "since": datetime.now(UTC).isoformat(),
                }
            ).encode(),
            0,
        )
        os.fsync(fd)
        self.fd = fd
        return self

    @property
    def took_over(self) -> bool:
        """Whether a previous holder died without releasing (its record was still there)."""
        return bool(self.previous)

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        # Clear the record first: an empty file means the last holder ended cleanly.
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
