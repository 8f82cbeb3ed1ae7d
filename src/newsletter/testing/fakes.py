"""In-process fake providers of both families, with fault injection and a per-recipient history.

They make engine tests short (no server, no network), and they are the
reference a plug-in author can compare a real provider with::

    from newsletter.testing import FakeBatchProvider

    fake = FakeBatchProvider(max_batch=2, lookup=True)
    fake.fail_next("unavailable")        # the next call raises ProviderTransient
    fake.fail_next("accept_then_drop")   # the one after delivers, then loses the answer
    ...
    assert [r.subject for r in fake.history["ann@example.org"]] == ["Hello"]
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from ..config import Config
from ..errors import ProviderAuthError, ProviderError, ProviderRateLimited, ProviderRejected, ProviderTransient
from ..providers.base import (
    AUDIENCE,
    BATCH,
    AudienceProvider,
    BatchProvider,
    Capabilities,
    ChunkRequest,
    DeliveryResult,
)  # fmt: skip
from ..render import Issue

FAULTS = ("rate_limited", "unavailable", "auth", "rejected", "drop", "accept_then_drop")


@dataclass(frozen=True)
class Received:
    """One message as its recipient got it (from a fake provider or a fake server)."""

    address: str
    subject: str
    text: str = ""
    html: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    key: str = ""  # the idempotency key (or issue key) it was sent under


def fault_error(kind: str, where: str, *, retry_after: float | None = 0.0) -> ProviderError:
    """The typed error a provider raises for ``kind`` (one of :data:`FAULTS`)."""
    if kind == "rate_limited":
        return ProviderRateLimited("HTTP 429: slow down", where=where, retry_after=retry_after)
    if kind == "unavailable":
        return ProviderTransient("HTTP 503: service unavailable", where=where)
    if kind == "auth":
        return ProviderAuthError("HTTP 401: bad credentials", where=where, hint="check the key")
    if kind == "rejected":
        return ProviderRejected("HTTP 422: invalid request", where=where)
    if kind in ("drop", "accept_then_drop"):
        return ProviderTransient("connection lost before an answer", where=where, maybe_delivered=kind != "drop")
    raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULTS)}")


class _Faults:
    """The shared machinery: queued faults, latency, call counting."""

    name: str  # the provider's, set by each fake class

    def __init__(self, latency: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._faults: deque[ProviderError | str] = deque()
        self.latency = latency
        self.sleep = sleep
        self.calls = 0
        self.history: dict[str, list[Received]] = defaultdict(list)

    def fail_next(self, fault: ProviderError | str, times: int = 1) -> None:
        """The next ``times`` calls fail: a fault kind from :data:`FAULTS` or any ProviderError to raise."""
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; use one of {', '.join(FAULTS)}")
        self._faults.extend([fault] * times)

    def _call(self, where: str, deliver: Callable[[], Any]) -> Any:
        """Run one provider call through the queued fault (if any) and the latency."""
        self.calls += 1
        fault = self._faults.popleft() if self._faults else None
        if self.latency:
            self.sleep(self.latency)
        if isinstance(fault, ProviderError):
            raise fault
        if fault == "accept_then_drop":
            deliver()
            raise fault_error(fault, where)
        if fault is not None:
            raise fault_error(fault, where)
        return deliver()

    def check_access(self) -> None:
        """``newsletter doctor``'s call: delivers nothing, but meets the queued fault ("auth": a wrong key)."""
        self._call(f"{self.name} check_access", lambda: None)

    def received_count(self) -> dict[str, int]:
        """How many messages each address received."""
        return {address: len(messages) for address, messages in self.history.items() if messages}


class FakeBatchProvider(_Faults, BatchProvider):
    """A batch provider in memory: ``history`` holds what each recipient received.

    ``idempotency=True`` makes a replayed key return the first answer without delivering
    again; ``lookup=True`` lets ``lookup_chunk`` say what a chunk's key delivered.
    """

    name = "fake-batch"
    capabilities = Capabilities(
        family=BATCH, max_batch=100, idempotency=True, lookup=True, custom_headers=True, unsubscribe="ours"
    )

    def __init__(
        self, *, max_batch: int = 100, idempotency: bool = True, lookup: bool = True, latency: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        _Faults.__init__(self, latency, sleep)
        self.capabilities = Capabilities(
            family=BATCH, max_batch=max_batch, idempotency=idempotency, lookup=lookup, custom_headers=True,
            unsubscribe="ours",
        )  # fmt: skip
        self._answers: dict[str, list[DeliveryResult]] = {}
        self._by_chunk: dict[str, dict[int, str]] = defaultdict(dict)  # chunk key -> subscriber -> message id

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]
    ) -> FakeBatchProvider:
        return cls(**{k: v for k, v in settings.items() if k in ("max_batch", "idempotency", "lookup", "latency")})

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        if len(request.recipients) > (self.capabilities.max_batch or len(request.recipients)):
            raise ProviderRejected(f"more than {self.capabilities.max_batch} recipients", where=self.name)

        def deliver() -> list[DeliveryResult]:
            if self.capabilities.idempotency and request.idempotency_key in self._answers:
                return self._answers[request.idempotency_key]
            results = []
            for recipient in request.recipients:
                message_id = request.issue.message_id(recipient)
                self.history[recipient.email].append(Received(
                    recipient.email, request.issue.subject, request.issue.personal_text(recipient),
                    request.issue.personal_html(recipient),
                    {"list-unsubscribe": request.issue.list_unsubscribe(recipient),
                     "list-unsubscribe-post": "List-Unsubscribe=One-Click"},
                    request.idempotency_key,
                ))  # fmt: skip
                self._by_chunk[request.chunk_key][recipient.subscriber_id] = message_id
                results.append(DeliveryResult(recipient.subscriber_id, True, message_id))
            self._answers[request.idempotency_key] = results
            return results

        return self._call(f"{self.name} send_chunk", deliver)

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        if not self.capabilities.lookup:
            return None
        found = self._call(f"{self.name} lookup_chunk", lambda: dict(self._by_chunk.get(request.chunk_key, {})))
        return [DeliveryResult(r.subscriber_id, r.subscriber_id in found, found.get(r.subscriber_id))
                for r in request.recipients]  # fmt: skip

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        def deliver() -> str:
            text = message.get_body(("plain",))
            html = message.get_body(("html",))
            self.history[str(message["To"])].append(Received(
                str(message["To"]), str(message["Subject"]), text.get_content() if text else "",
                html.get_content() if html else "", {}, key,
            ))  # fmt: skip
            return str(message["Message-ID"] or key)

        return self._call(f"{self.name} send_message", deliver)


class FakeAudienceProvider(_Faults, AudienceProvider):
    """An audience provider in memory: it keeps ``audience`` and delivers each published issue to it once."""

    name = "fake-audience"
    capabilities = Capabilities(
        family=AUDIENCE, max_batch=None, idempotency=True, lookup=False, custom_headers=False, unsubscribe="provider"
    )

    def __init__(
        self, audience: list[str] | tuple[str, ...] = (), *, latency: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        _Faults.__init__(self, latency, sleep)
        self.audience: list[str] = list(audience)
        self._published: dict[str, str] = {}  # idempotency key -> reference

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]
    ) -> FakeAudienceProvider:
        return cls(tuple(settings.get("audience", ())))

    def _deliver_issue(self, issue: Issue, addresses: list[str], key: str) -> None:
        for address in addresses:
            self.history[address].append(Received(address, issue.subject, issue.post.summary, issue.post.html, {}, key))

    def publish(self, issue: Issue, *, idempotency_key: str) -> str:
        def deliver() -> str:
            if idempotency_key not in self._published:
                self._deliver_issue(issue, self.audience, idempotency_key)
                self._published[idempotency_key] = f"email-{len(self._published) + 1}"
            return self._published[idempotency_key]

        return self._call(f"{self.name} publish", deliver)

    def send_test(self, issue: Issue, addresses: list[str]) -> None:
        self._call(f"{self.name} send_test", lambda: self._deliver_issue(issue, list(addresses), f"{issue.key}:test"))

    def subscribe(self, email: str, *, key: str, ip_address: str | None = None) -> str | None:
        def deliver() -> None:
            if email not in self.audience:
                self.audience.append(email)

        self._call(f"{self.name} subscribe", deliver)
        return None

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        raise ProviderRejected("an audience provider sends no single messages", where=self.name)
