"""The provider interface: one small contract for both families (see DESIGN.md).

A provider is a class registered under the ``newsletter.providers`` entry-point
group and built with ``from_config``.  It only delivers: retrying, chunking and
recording belong to :mod:`newsletter.send`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from ..config import Config
from ..render import Issue, Recipient

BATCH, AUDIENCE = "batch", "audience"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; shown by ``newsletter providers`` and read by the send engine."""

    family: str  # BATCH: we keep the list; AUDIENCE: the provider keeps it
    max_batch: int | None  # recipients per call; None = the whole audience in one call
    idempotency: bool  # a replay with the same key cannot deliver twice
    lookup: bool  # can tell after a crash whether a chunk was delivered
    custom_headers: bool  # can carry our List-Unsubscribe headers
    unsubscribe: str  # "ours" (signed links we verify) or "provider"


def message_parts(message: EmailMessage) -> dict[str, str]:
    """The pieces an HTTP API wants from a MIME message: from, to, subject, text, html."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "from": str(message["From"]),
        "to": str(message["To"]),
        "subject": str(message["Subject"]),
        "text": text.get_content() if text else "",
        "html": html.get_content() if html else "",
    }


@dataclass(frozen=True)
class ChunkRequest:
    """One call's worth of recipients for an issue, with its derived idempotency key."""

    issue: Issue
    recipients: Sequence[Recipient]
    idempotency_key: str
    date: datetime

    @property
    def chunk_key(self) -> str:
        """The chunk's own key, the same for a retry of some of its recipients (``…:retryN``)."""
        return self.idempotency_key.split(":retry", 1)[0]


@dataclass(frozen=True)
class DeliveryResult:
    """What the provider said about one recipient."""

    subscriber_id: int
    accepted: bool
    message_id: str | None = None
    error: str | None = None
    retryable: bool = False  # refused for now (a partial failure), may succeed on a later attempt


@runtime_checkable
class BatchProvider(Protocol):
    """A provider that sends to recipients we give it, a chunk at a time."""

    name: str
    capabilities: Capabilities

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> "BatchProvider":
        """Build the provider from its ``[providers.NAME]`` table and the environment (for secrets)."""

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        """Deliver one chunk; return one result per recipient or raise a typed ProviderError."""

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        """After a crash: what became of this chunk, or ``None`` when the provider cannot tell."""

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        """One transactional message (a subscription confirmation); returns the provider's id."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class AudienceProvider(Protocol):
    """A provider that keeps the list itself: one issue is one create-then-send."""

    name: str
    capabilities: Capabilities

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> "AudienceProvider":
        """Build the provider from its ``[providers.NAME]`` table and the environment (for secrets)."""

    def publish(self, issue: Issue, *, idempotency_key: str) -> str:
        """Create the issue as a draft, then send it; return the provider's id for it."""

    def close(self) -> None:
        """Release connections."""
