"""An example provider plug-in, written from docs/plugins.md alone.

It "delivers" each message as a JSON postcard in ``[providers.postcard] folder``,
one file per recipient, named after the chunk's idempotency key, so a replay finds
the card already written (idempotent) and a lookup can tell what was delivered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError
from newsletter.providers.base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult


class PostcardProvider(BatchProvider):
    """Writes one JSON postcard per recipient into a folder."""

    name = "postcard"
    capabilities = Capabilities(
        family=BATCH, max_batch=25, idempotency=True, lookup=True, custom_headers=True, unsubscribe="ours"
    )

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config, environ: Mapping[str, str]) -> PostcardProvider:
        folder = settings.get("folder", "postcards")
        if not isinstance(folder, str) or not folder:
            raise ConfigError("must be a folder name", where="newsletter.toml: providers.postcard.folder",
                              hint='e.g. folder = "postcards"')  # fmt: skip
        return cls(config.root / folder)

    def preflight(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def _card(self, key: str, subscriber_id: int) -> Path:
        return self.folder / f"{key.replace(':', '_')}.{subscriber_id}.json"

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        self.folder.mkdir(parents=True, exist_ok=True)
        results = []
        for recipient in request.recipients:
            card = self._card(request.chunk_key, recipient.subscriber_id)
            if not card.exists():
                card.write_text(json.dumps({
                    "to": recipient.email,
                    "subject": request.issue.subject,
                    "text": request.issue.personal_text(recipient),
                    "html": request.issue.personal_html(recipient),
                    "headers": {"list-unsubscribe": request.issue.list_unsubscribe(recipient),
                                "list-unsubscribe-post": "List-Unsubscribe=One-Click"},
                }), encoding="utf-8")  # fmt: skip
            results.append(DeliveryResult(recipient.subscriber_id, True, request.issue.message_id(recipient)))
        return results

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        return [DeliveryResult(r.subscriber_id, self._card(request.chunk_key, r.subscriber_id).exists())
                for r in request.recipients]  # fmt: skip

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        body = message.get_body(("plain",))
        card = self.folder / f"{key}.message.json"
        card.write_text(json.dumps({"to": str(message["To"]), "subject": str(message["Subject"]),
                                    "text": body.get_content() if body else "", "html": "", "headers": {}}),
                        encoding="utf-8")  # fmt: skip
        return key
