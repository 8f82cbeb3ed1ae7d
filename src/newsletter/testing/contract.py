"""The provider contract suite: what every provider must do, run against its own fake server.

Subclass :class:`BatchProviderContract` or :class:`AudienceProviderContract` in a
test module, and give it a ``harness`` fixture returning a :class:`Harness`
(your provider pointed at your fake server, and the server's view of what it
received).  pytest then runs every contract test against it::

    import pytest
    from newsletter.testing import BatchProviderContract, Harness

    class TestAcme(BatchProviderContract):
        @pytest.fixture
        def harness(self):
            with AcmeFakeServer() as server:
                yield AcmeHarness(server)

The tests drive the provider directly and through the send engine's own retry
and reconciliation (:func:`newsletter.chunk_delivery.deliver_chunk`), so "exactly once"
is checked the way ``newsletter send`` relies on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest

from ..content import Post
from ..errors import ConfigError, DeliveryUncertain, ProviderAuthError, ProviderError, ProviderRateLimited
from ..providers.base import AudienceProvider, BatchProvider, ChunkRequest, Provider, check_provider_class
from ..render import UNSUBSCRIBE_PLACEHOLDER, Issue, Recipient
from ..retry import RetryPolicy
from .fakes import FAULTS, Received

SENT_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Harness(ABC):
    """What a provider's tests hand the contract suite."""

    #: the fault kinds (from :data:`newsletter.testing.FAULTS`) that :meth:`fail_next` can stage
    faults: tuple[str, ...] = ()
    #: the credential that must never appear in a ``repr``, an error or a log line ("" if none)
    secret: str = ""
    #: the environment variable the credential is read from
    secret_variable: str = ""

    @abstractmethod
    def provider(self) -> Provider:
        """A new provider instance pointed at the fake server (built with ``from_config``)."""

    @abstractmethod
    def received(self) -> list[Received]:
        """Every message the fake server accepted so far, oldest first."""

    def fail_next(self, kind: str) -> None:
        """Make the fake server's next request fail as ``kind`` (only kinds listed in :attr:`faults`)."""
        raise NotImplementedError(kind)

    def without_secret(self) -> Callable[[], Provider] | None:
        """A way to build the provider with its secret's variable unset, or ``None`` when it has no secret."""
        return None

    def with_wrong_secret(self) -> Callable[[], Provider] | None:
        """A way to build the provider with a wrong value in its secret's variable (the server must
        refuse it), or ``None``: then an ``"auth"`` fault, if the harness stages one, stands for it."""
        return None

    def audience(self) -> list[str]:
        """Audience providers: the addresses the fake server's list holds."""
        return []


def sample_issue(key: str = "contract-issue", subject: str = "Contract issue: é ✓") -> Issue:
    """A small rendered issue (with the unsubscribe placeholder in both parts) for provider tests."""
    placeholder = UNSUBSCRIBE_PLACEHOLDER + "0123456789abcdef"  # per issue, as render_issue makes it
    html = f'<p>Bonjour.</p><p><a href="{placeholder}">Se désabonner</a></p>'
    post = Post(
        source=Path("content/contract.md"), id="contract-post", slug="contract", title=subject, author="Ann",
        date=SENT_AT, updated=SENT_AT, tags=(), summary="Bonjour.", preheader="Bonjour.", html="<p>Bonjour.</p>",
        url="https://example.org/contract/",
    )  # fmt: skip
    return Issue(
        post=post, key=key, subject=subject, html=html, text=f"Bonjour.\n\nSe désabonner : {placeholder}\n",
        sender=Address("Le Journal", addr_spec="news@example.org"), reply_to="", list_name="Le Journal",
        list_id="journal.example.org", domain="example.org", unsubscribe_mailto="", placeholder=placeholder,
    )  # fmt: skip


def recipients(count: int, start: int = 1) -> list[Recipient]:
    """``count`` recipients, each with their own unsubscribe URL."""
    return [Recipient(n, f"reader{n}@example.org", f"https://example.org/unsubscribe/token-{n}")
            for n in range(start, start + count)]  # fmt: skip


def chunk(people: list[Recipient], key: str = "contract-issue:0") -> ChunkRequest:
    """A chunk request of the sample issue for ``people``."""
    return ChunkRequest(issue=sample_issue(), recipients=people, idempotency_key=key, date=SENT_AT)


def no_wait_policy(waits: list[float] | None = None) -> RetryPolicy:
    """The engine's retry policy without real sleeping (waits are recorded in ``waits``)."""
    record = waits.append if waits is not None else (lambda seconds: None)
    return RetryPolicy(max_attempts=6, base_delay=0.0, max_delay=0.0, sleep=record)


def counts(messages: list[Received]) -> dict[str, int]:
    """How many messages each address (lower-cased) received."""
    found: dict[str, int] = {}
    for message in messages:
        found[message.address.lower()] = found.get(message.address.lower(), 0) + 1
    return found


class _Common:
    """Contract tests for both families."""

    def test_the_class_passes_the_load_time_check(self, harness: Harness) -> None:
        provider = harness.provider()
        try:
            assert check_provider_class(provider.name, type(provider)) is type(provider)
        finally:
            provider.close()

    def test_closing_twice_is_harmless(self, harness: Harness) -> None:
        provider = harness.provider()
        provider.close()
        provider.close()

    def test_the_secret_never_shows_in_repr_or_errors(self, harness: Harness) -> None:
        if not harness.secret:
            assert harness.without_secret() is None  # a provider without credentials has nothing to leak
            return
        provider = harness.provider()
        try:
            assert harness.secret not in repr(provider)
            assert harness.secret not in repr(vars(provider))
            if "auth" in harness.faults:
                harness.fail_next("auth")
                with pytest.raises(ProviderAuthError) as caught:
                    self._exercise(provider)
                assert harness.secret not in str(caught.value) + repr(caught.value) + (caught.value.hint or "")
        finally:
            provider.close()

    def test_a_missing_secret_is_a_one_line_config_error_naming_the_variable(self, harness: Harness) -> None:
        build = harness.without_secret()
        if build is None:
            assert not harness.secret
            return
        with pytest.raises(ConfigError) as caught:
            build()
        text = caught.value.one_line()
        assert "\n" not in text and harness.secret_variable and harness.secret_variable in text

    @pytest.mark.parametrize("kind, error", [("rate_limited", ProviderRateLimited), ("unavailable", ProviderError),
                                             ("auth", ProviderAuthError)])  # fmt: skip
    def test_faults_raise_the_typed_error_and_deliver_nothing(
        self, harness: Harness, kind: str, error: type[ProviderError]
    ) -> None:
        provider = harness.provider()
        try:
            if kind not in harness.faults:  # the fake server cannot stage it: the plain call must work
                self._exercise(provider)
                assert harness.received()
                return
            harness.fail_next(kind)
            with pytest.raises(error) as caught:
                self._exercise(provider)
            assert caught.value.retryable is (kind != "auth")
            assert not caught.value.maybe_delivered
            assert harness.received() == []
        finally:
            provider.close()

    def test_check_access_passes_with_the_right_secret_and_sends_nothing(self, harness: Harness) -> None:
        """``newsletter doctor``'s call: authenticated and read-only, so nobody receives anything."""
        provider = harness.provider()
        try:
            provider.check_access()
            provider.check_access()  # read-only: asking twice changes nothing either
        finally:
            provider.close()
        assert harness.received() == []

    def test_check_access_with_a_wrong_secret_is_the_typed_auth_error_naming_the_variable(
        self, harness: Harness
    ) -> None:
        build = harness.with_wrong_secret()
        if build is None and "auth" not in harness.faults:
            assert not harness.secret  # only a provider without credentials has no wrong one to try
            return
        if build is None:
            harness.fail_next("auth")
            build = harness.provider
        provider = build()
        try:
            with pytest.raises(ProviderAuthError) as caught:
                provider.check_access()
        finally:
            provider.close()
        text = caught.value.one_line()
        assert "\n" not in text and not caught.value.retryable
        if harness.with_wrong_secret() is not None:
            assert harness.secret_variable in text  # the hint says which variable to fix
            assert harness.secret not in text
        assert harness.received() == []

    def _exercise(self, provider: Provider) -> None:
        raise NotImplementedError


class BatchProviderContract(_Common):
    """The contract of a batch provider (we keep the list, the provider delivers our chunks)."""

    def _exercise(self, provider: Provider) -> None:
        assert isinstance(provider, BatchProvider)
        provider.send_chunk(chunk(recipients(2)))

    def test_each_recipient_of_a_chunk_gets_one_message_with_their_own_unsubscribe_link(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        people = recipients(min(3, provider.capabilities.max_batch or 3))
        try:
            results = provider.send_chunk(chunk(people))
        finally:
            provider.close()
        assert sorted(r.subscriber_id for r in results) == [p.subscriber_id for p in people]
        assert all(r.accepted for r in results)
        received = harness.received()
        assert counts(received) == {p.email: 1 for p in people}
        for person in people:
            (message,) = [m for m in received if m.address.lower() == person.email]
            assert message.subject == sample_issue().subject
            others = [p.unsubscribe_url for p in people if p is not person]
            assert person.unsubscribe_url in message.text + message.html
            assert not any(url in message.text + message.html for url in others)
            if provider.capabilities.custom_headers:
                assert person.unsubscribe_url in message.headers.get("list-unsubscribe", "")
                assert message.headers.get("list-unsubscribe-post") == "List-Unsubscribe=One-Click"

    def test_a_full_chunk_goes_in_one_request(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        size = min(provider.capabilities.max_batch or 50, 50)
        try:
            results = provider.send_chunk(chunk(recipients(size)))
        finally:
            provider.close()
        assert len(results) == size and all(r.accepted for r in results)
        assert len(counts(harness.received())) == size

    def test_lookup_tells_a_sent_chunk_from_one_never_sent(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        try:
            if not provider.capabilities.lookup:
                assert provider.lookup_chunk(chunk(recipients(1))) is None
                return
            sent = chunk(recipients(2), key="contract-issue:1")
            provider.send_chunk(sent)
            found = provider.lookup_chunk(sent)
            assert found is not None and all(r.accepted for r in found)
            never = provider.lookup_chunk(chunk(recipients(2, start=10), key="contract-issue:2"))
            assert never is not None and not any(r.accepted for r in never)
        finally:
            provider.close()

    def test_an_idempotent_replay_delivers_nothing_twice(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        request = chunk(recipients(2))
        try:
            provider.send_chunk(request)
            if provider.capabilities.idempotency:
                provider.send_chunk(request)
        finally:
            provider.close()
        assert counts(harness.received()) == {"reader1@example.org": 1, "reader2@example.org": 1}

    def test_the_engine_retries_through_faults_to_exactly_once(self, harness: Harness) -> None:
        staged = [kind for kind in ("rate_limited", "unavailable", "drop") if kind in harness.faults]
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        from ..chunk_delivery import deliver_chunk

        for kind in staged:
            harness.fail_next(kind)
        people = recipients(min(2, provider.capabilities.max_batch or 2))
        try:
            results = deliver_chunk(provider, chunk(people), no_wait_policy(), lambda found: None, chunk=0)
        finally:
            provider.close()
        assert sorted(r.subscriber_id for r in results if r.accepted) == [p.subscriber_id for p in people]
        assert counts(harness.received()) == {p.email: 1 for p in people}

    def test_an_answer_lost_after_delivery_is_reconciled_never_resent(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, BatchProvider)
        from ..chunk_delivery import deliver_chunk

        people = recipients(min(2, provider.capabilities.max_batch or 2))
        landed: list = []
        staged = "accept_then_drop" in harness.faults  # otherwise: the plain path, still exactly once
        if staged:
            harness.fail_next("accept_then_drop")
        try:
            if not staged or provider.capabilities.lookup or provider.capabilities.idempotency:
                results = deliver_chunk(provider, chunk(people), no_wait_policy(), landed.extend, chunk=0)
                accepted = {r.subscriber_id for r in results + landed if r.accepted}
                assert accepted == {p.subscriber_id for p in people}
            else:
                with pytest.raises(DeliveryUncertain):
                    deliver_chunk(provider, chunk(people), no_wait_policy(), landed.extend, chunk=0)
        finally:
            provider.close()
        assert counts(harness.received()) == {p.email: 1 for p in people}

    def test_one_transactional_message_reaches_its_address(self, harness: Harness) -> None:
        provider = harness.provider()
        message = EmailMessage()
        message["From"] = "Le Journal <news@example.org>"
        message["To"] = "new@example.org"
        message["Subject"] = "Confirmez votre abonnement"
        message["Message-ID"] = "<confirm-contract@example.org>"
        message.set_content("https://example.org/confirm/token")
        try:
            assert isinstance(provider.send_message(message, key="confirm-contract"), str)
        finally:
            provider.close()
        (received,) = harness.received()
        assert received.address.lower() == "new@example.org"
        assert received.subject == "Confirmez votre abonnement"
        assert "https://example.org/confirm/token" in received.text + received.html


class AudienceProviderContract(_Common):
    """The contract of an audience provider (the provider keeps the list)."""

    def _exercise(self, provider: Provider) -> None:
        assert isinstance(provider, AudienceProvider)
        provider.publish(sample_issue(), idempotency_key="contract-issue:0")

    def test_a_published_issue_reaches_the_whole_audience_once(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, AudienceProvider)
        try:
            reference = provider.publish(sample_issue(), idempotency_key="contract-issue:0")
            provider.publish(sample_issue(), idempotency_key="contract-issue:0")  # a replay after a lost answer
        finally:
            provider.close()
        assert isinstance(reference, str) and reference
        assert harness.audience(), "the harness's fake server needs an audience"
        assert counts(harness.received()) == {a.lower(): 1 for a in harness.audience()}
        assert {m.subject.removeprefix("[PREVIEW] ") for m in harness.received()} == {sample_issue().subject}

    def test_a_test_send_reaches_only_the_given_addresses(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, AudienceProvider)
        try:
            provider.send_test(sample_issue(), ["editor@example.org"])
        finally:
            provider.close()
        assert counts(harness.received()) == {"editor@example.org": 1}

    def test_the_engine_replays_after_an_answer_lost_and_delivers_once(self, harness: Harness) -> None:
        from ..chunk_delivery import with_retries

        provider = harness.provider()
        assert isinstance(provider, AudienceProvider)
        for kind in ("accept_then_drop", "unavailable"):
            if kind in harness.faults:
                harness.fail_next(kind)
        try:
            with_retries(lambda: provider.publish(sample_issue(), idempotency_key="contract-issue:0"), no_wait_policy())
        finally:
            provider.close()
        assert counts(harness.received()) == {a.lower(): 1 for a in harness.audience()}

    def test_subscribe_adds_to_the_audience(self, harness: Harness) -> None:
        provider = harness.provider()
        assert isinstance(provider, AudienceProvider)
        try:
            provider.subscribe("new@example.org", key="contract-subscribe")
        finally:
            provider.close()
        assert "new@example.org" in [a.lower() for a in harness.audience()]


__all__ = [
    "FAULTS", "AudienceProviderContract", "BatchProviderContract", "Harness", "Received", "chunk", "counts",
    "no_wait_policy", "recipients", "sample_issue",
]  # fmt: skip
