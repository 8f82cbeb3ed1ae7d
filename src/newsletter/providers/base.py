"""The provider interface: one abstract base, two families (docs/plugins.md walks through it).

A provider is a class registered under the ``newsletter.providers`` entry-point
group, a subclass of :class:`BatchProvider` (we keep the list and hand over
chunks of recipients) or :class:`AudienceProvider` (the provider keeps the
list; an issue is one create-then-send).  It declares what it can do once, in
its ``capabilities``; the send engine reads them and never probes for methods.
A plug-in that misses an abstract method, or declares a capability without the
method behind it, is refused when it is loaded (:func:`check_provider_class`).

A provider only delivers: retrying, chunking and recording belong to
:mod:`newsletter.send`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, ClassVar

from ..config import Config
from ..render import Issue, Recipient
from ..webhooks import SuppressionEvent, WebhookCall, WebhookProof

BATCH, AUDIENCE = "batch", "audience"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; shown by ``newsletter providers`` and read by the send engine."""

    family: str  # BATCH: we keep the list; AUDIENCE: the provider keeps it
    max_batch: int | None  # recipients per call; None = the whole audience in one call
    idempotency: bool  # a replay with the same key cannot deliver twice
    lookup: bool  # can tell after a crash whether a chunk was delivered (lookup_chunk / lookup)
    custom_headers: bool  # can carry our List-Unsubscribe headers
    unsubscribe: str  # "ours" (signed links we verify) or "provider"
    webhooks: bool = False  # reports bounces and complaints (verify_webhook / parse_events)
    tracking: bool = False  # the provider can track opens and clicks (off unless the editor turns it on)
    concurrency: int = 1  # chunk requests the send engine may have in flight at once (thread-safe send_chunk)


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


# -- the base classes -------------------------------------------------------------------------------


class Provider(ABC):
    """What every provider is: built from its config table, checked before a send, able to send
    one transactional message (a subscription confirmation), and closed after use."""

    name: str  # a class attribute, the entry-point name
    capabilities: Capabilities  # a class attribute; a test fake may set its own per instance
    family: ClassVar[str]  # set by the family subclasses; capabilities.family must agree

    @classmethod
    @abstractmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> Provider:
        """Build the provider from its ``[providers.NAME]`` table and the environment (for secrets)."""

    def preflight(self) -> None:
        """Before an issue is planned: anything that would make the send fail half-way (nothing by default)."""
        return None

    def check_access(self) -> None:
        """For ``newsletter doctor``: prove the provider takes our credentials, sending nothing.

        One cheap, read-only, authenticated call from the provider's own documentation (an SMTP
        login and QUIT, a GET of an account resource); a refused key raises
        :class:`~newsletter.errors.ProviderAuthError` whose hint names the variable to fix.
        Not part of ``preflight``: a send should not pay one more request per issue for it.
        Nothing by default (a provider without a server, such as the outbox).
        """
        return None

    @abstractmethod
    def send_message(self, message: EmailMessage, *, key: str) -> str:
        """One transactional message (a subscription confirmation); returns the provider's id for it."""

    def close(self) -> None:
        """Release connections (nothing by default)."""
        return None

    # Webhooks: only for providers whose capabilities say ``webhooks=True``.  Class methods, because
    # the service verifies a call with the webhook secret alone, without the sending credentials.

    @classmethod
    def verify_webhook(
        cls, call: WebhookCall, *, settings: Mapping[str, Any], environ: Mapping[str, str], now: float
    ) -> WebhookProof:
        """Prove the call is the provider's (raise :class:`BadSignature`) and say what it can be used once as."""
        raise NotImplementedError(f"provider {cls.name!r} has no webhooks")

    @classmethod
    def parse_events(cls, call: WebhookCall) -> list[SuppressionEvent]:
        """The suppressions a verified call reports (raise :class:`BadPayload` for an unreadable body)."""
        raise NotImplementedError(f"provider {cls.name!r} has no webhooks")


class BatchProvider(Provider):
    """A provider that sends to recipients we give it, a chunk at a time."""

    family = BATCH

    @abstractmethod
    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        """Deliver one chunk; return one result per recipient or raise a typed ProviderError."""

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        """After a crash: what became of this chunk, or ``None`` when the provider cannot tell.

        Called only when ``capabilities.lookup`` is true (and then it must be overridden).
        """
        return None


class AudienceProvider(Provider):
    """A provider that keeps the list itself: one issue is one create-then-send."""

    family = AUDIENCE

    @abstractmethod
    def publish(self, issue: Issue, *, idempotency_key: str) -> str:
        """Create the issue as a draft, then send it; return the provider's id for it."""

    @abstractmethod
    def send_test(self, issue: Issue, addresses: list[str]) -> None:
        """The issue to ``addresses`` only; the audience gets nothing."""

    @abstractmethod
    def subscribe(self, email: str, *, key: str, ip_address: str | None = None) -> str | None:
        """Add an address to the provider's audience (the provider runs its own double opt-in);
        ``ip_address`` is where the request came from, for a provider that records it.  Returns
        the provider's id for a new subscriber, or ``None`` (already known, or no id to give)."""

    def lookup(self, reference: str) -> str | None:
        """The provider's status for a published issue; only when ``capabilities.lookup`` is true."""
        return None


# Which method each capability promises; a plug-in declaring one must override it.
_PROMISED: dict[str, dict[str, tuple[str, ...]]] = {
    "lookup": {BATCH: ("lookup_chunk",), AUDIENCE: ("lookup",)},
    "webhooks": {BATCH: ("verify_webhook", "parse_events"), AUDIENCE: ("verify_webhook", "parse_events")},
}


def ascii_recipients(request: ChunkRequest, provider: str) -> tuple[ChunkRequest, list[DeliveryResult]]:
    """For an API whose documentation promises nothing about UTF-8 addresses (RFC 6531): an IDN
    domain goes as its A-label (``user@xn--caf-dma.fr``), which every mail system takes; a
    non-ASCII local part is refused for that recipient alone, with the reason."""
    from dataclasses import replace

    from ..subscribers import ascii_address

    kept, refused = [], []
    for recipient in request.recipients:
        if recipient.email.isascii():
            kept.append(recipient)
            continue
        ascii_form = ascii_address(recipient.email)
        if ascii_form is None:
            refused.append(DeliveryResult(
                recipient.subscriber_id, False, None,
                f"{recipient.email}: {provider}'s API does not document addresses with non-ASCII local parts "
                "(RFC 6531); send through SMTP with a server that offers SMTPUTF8", retryable=False,
            ))  # fmt: skip
        else:
            kept.append(replace(recipient, email=ascii_form))
    return replace(request, recipients=kept), refused


def check_provider_class(entry_name: str, factory: object) -> type[Provider]:
    """``factory`` as a usable provider class, or a one-line :class:`TypeError` naming the plug-in and the gap."""
    where = f"provider plug-in {entry_name!r}"
    if not (inspect.isclass(factory) and issubclass(factory, (BatchProvider, AudienceProvider))):
        raise TypeError(f"{where} is not a subclass of BatchProvider or AudienceProvider")
    missing = sorted(getattr(factory, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"{where} does not implement {', '.join(missing)}")
    capabilities = getattr(factory, "capabilities", None)
    if not isinstance(capabilities, Capabilities):
        raise TypeError(f"{where} declares no capabilities (a Capabilities instance)")
    if not isinstance(getattr(factory, "name", None), str):
        raise TypeError(f"{where} has no name")
    if capabilities.family != factory.family:
        raise TypeError(f"{where} declares family {capabilities.family!r} but subclasses the {factory.family} base")
    for capability, methods in _PROMISED.items():
        if not getattr(capabilities, capability):
            continue
        lacking = [m for m in methods[factory.family] if _defined_in(factory, m) in _BASES]
        if lacking:
            raise TypeError(f"{where} declares {capability}=True but does not implement {', '.join(lacking)}")
    return factory


_BASES = (Provider, BatchProvider, AudienceProvider)


def _defined_in(cls: type, method: str) -> type:
    """The class in ``cls``'s MRO that defines ``method``."""
    return next(k for k in cls.__mro__ if method in k.__dict__)
