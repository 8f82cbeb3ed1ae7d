"""The embedded default provider: every message is an ``.eml`` file in a local Maildir.

No account and no network.  File names are derived from the issue and the
subscriber, so a replay after a crash finds the message already there instead
of writing a second copy: the outbox is idempotent and can answer lookups.
Each file is written into ``tmp/`` and renamed into ``new/`` (the Maildir
protocol), so a mail client never sees half a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import OutputError
from ..files import write_atomic
from .base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult


class OutboxProvider(BatchProvider):
    """Writes one ``.eml`` per recipient into ``outbox/new/``."""

    name = "outbox"
    capabilities = Capabilities(
        family=BATCH, max_batch=500, idempotency=True, lookup=True, custom_headers=True, unsubscribe="ours"
    )

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> OutboxProvider:
        folder = settings.get("path", "outbox")
        if not isinstance(folder, str) or not folder.strip():
            raise OutputError(
                "must be a folder name", where="newsletter.toml: providers.outbox.path", hint='e.g. path = "outbox"'
            )
        return cls(config.root / folder)

    def preflight(self) -> None:
        """Before an issue is planned: the Maildir can be created, so a send cannot half-start."""
        self._ensure_maildir()

    def _ensure_maildir(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the outbox ({exc.strerror})", where=str(self.path),
                hint="make providers.outbox.path a writable folder (not a file)",
            ) from None  # fmt: skip

    @staticmethod
    def file_name(request: ChunkRequest, subscriber_id: int) -> str:
        return f"{request.issue.key}.{subscriber_id}.eml"

    def _delivered(self, name: str, read: set[str] | None = None) -> bool:
        # A mail client moves read messages to cur/ and may append ":2,FLAGS".
        if read is None:
            read = self._read_names()
        return (self.path / "new" / name).exists() or name in read

    def _read_names(self) -> set[str]:
        """Names of the messages a mail client moved to ``cur/`` (flags stripped), listed once per call."""
        try:
            return {entry.split(":", 1)[0] for entry in os.listdir(self.path / "cur")}
        except FileNotFoundError:
            return set()

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        """Write the chunk's messages into ``tmp/``, make them durable with one sync, then deliver.

        One sync per chunk instead of one per file: nothing is in ``new/`` (delivered) before
        every file of the chunk is on disk, and a crash in between leaves only ``tmp/`` files,
        which no mail client reads and the retry writes again.
        """
        self._ensure_maildir()
        read = self._read_names()
        waiting = [r for r in request.recipients if not self._delivered(self.file_name(request, r.subscriber_id), read)]
        try:
            for recipient in waiting:
                name = self.file_name(request, recipient.subscriber_id)
                data = request.issue.message_bytes(recipient, date=request.date)
                fd = os.open(self.path / "tmp" / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            if waiting:
                os.sync()  # every file's data and inode, in one call
                for recipient in waiting:
                    name = self.file_name(request, recipient.subscriber_id)
                    os.replace(self.path / "tmp" / name, self.path / "new" / name)
                _sync_folder(self.path / "new")  # the renames themselves
        except OSError as exc:
            raise OutputError(
                f"cannot write to the outbox ({exc.strerror})", where=str(self.path), hint="check permissions"
            ) from None
        return [
            DeliveryResult(recipient.subscriber_id, True, request.issue.message_id(recipient))
            for recipient in request.recipients
        ]

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        """Which of the chunk's files are already in the Maildir."""
        results = []
        read = self._read_names()
        for recipient in request.recipients:
            found = self._delivered(self.file_name(request, recipient.subscriber_id), read)
            message_id = request.issue.message_id(recipient) if found else None
            results.append(DeliveryResult(recipient.subscriber_id, found, message_id))
        return results

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        self._ensure_maildir()
        name = f"{key}.eml"
        if not self._delivered(name):
            try:
                write_atomic(self.path / "tmp" / name, message.as_bytes())
                os.replace(self.path / "tmp" / name, self.path / "new" / name)
            except OSError as exc:
                raise OutputError(f"cannot write to the outbox ({exc.strerror})", where=str(self.path)) from None
        return str(message["Message-ID"])

    def close(self) -> None:
        """Nothing to release."""


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
