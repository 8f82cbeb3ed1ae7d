"""The shipped provider contract suite (newsletter.testing), run over every built-in provider.

Each built-in gets a harness: the provider built with ``from_config`` and pointed at its
fake server (tests/fakes/ for the HTTP APIs, aiosmtpd for SMTP, a temporary Maildir for
the outbox), and the server's view of what it received.  The in-process fakes of
newsletter.testing run the same suite, so they are held to the contract they model.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from fakes import FakeButtondown, FakeMailgun, FakePostmark, FakeResend, Fault
from newsletter.providers.buttondown import ButtondownProvider
from newsletter.providers.mailgun import MailgunProvider
from newsletter.providers.outbox import OutboxProvider
from newsletter.providers.postmark import PostmarkProvider
from newsletter.providers.resend import ResendProvider
from newsletter.providers.smtp import SmtpProvider
from newsletter.testing import (
    AudienceProviderContract,
    BatchProviderContract,
    FakeAudienceProvider,
    FakeBatchProvider,
    Harness,
    Received,
)  # fmt: skip
from smtp_server import PASSWORD, USER, SmtpServer

HTTP_FAULTS = {
    "rate_limited": lambda: Fault.http(429, retry_after=0),
    "unavailable": lambda: Fault.http(503),
    "auth": lambda: Fault.http(401),
    "drop": Fault.drop,
    "accept_then_drop": Fault.accept_then_drop,
}


def parsed_message(raw: bytes, address: str | None = None) -> Received:
    """A MIME message as its recipient reads it."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return Received(
        address or message["To"].addresses[0].addr_spec, str(message["Subject"]),
        text.get_content() if text else "", html.get_content() if html else "",
        {name.lower(): str(value) for name, value in message.items()},
    )  # fmt: skip


class FakeServerHarness(Harness):
    """A provider class on one of the fake HTTP servers of tests/fakes/."""

    faults = tuple(HTTP_FAULTS)

    def __init__(self, fake, factory, settings: dict, variable: str, secret: str, config) -> None:
        self.fake, self.factory, self.settings, self.secret_variable, self.secret = (
            fake,
            factory,
            settings,
            variable,
            secret,
        )
        self.config = config

    def provider(self):
        return self.factory.from_config(self.settings, config=self.config, environ={self.secret_variable: self.secret})

    def without_secret(self):
        return lambda: self.factory.from_config(self.settings, config=self.config, environ={})

    def with_wrong_secret(self):
        wrong = {self.secret_variable: "wrong-" + self.secret[::-1]}
        return lambda: self.factory.from_config(self.settings, config=self.config, environ=wrong)

    def received(self) -> list[Received]:
        return [Received(d.address, d.subject, d.text or "", d.html or "", {k.lower(): v for k, v in d.headers.items()})
                for d in self.fake.delivered]  # fmt: skip

    def fail_next(self, kind: str) -> None:
        self.fake.inject(HTTP_FAULTS[kind]())

    def audience(self) -> list[str]:
        return list(getattr(self.fake, "subscribers", []))


class TestMailgunContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, config):
        with FakeMailgun() as fake:
            yield FakeServerHarness(fake, MailgunProvider, {"domain": fake.domain, "base_url": fake.url},
                                    "NEWSLETTER_MAILGUN_API_KEY", fake.api_key, config)  # fmt: skip


class TestPostmarkContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, config):
        with FakePostmark() as fake:
            yield FakeServerHarness(fake, PostmarkProvider, {"base_url": fake.url},
                                    "NEWSLETTER_POSTMARK_SERVER_TOKEN", fake.server_token, config)  # fmt: skip


class TestResendContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, config):
        with FakeResend() as fake:
            yield FakeServerHarness(fake, ResendProvider, {"base_url": fake.url}, "NEWSLETTER_RESEND_API_KEY",
                                    fake.api_key, config)  # fmt: skip


class ButtondownHarness(FakeServerHarness):
    """Buttondown's fake records a send-draft as a send, not as deliveries: both count as received."""

    def received(self) -> list[Received]:
        previews = [Received(address, send["subject"]) for send in self.fake.sends if send["kind"] == "send-draft"
                    for address in send["recipients"]]  # fmt: skip
        return super().received() + previews


class TestButtondownContract(AudienceProviderContract):
    @pytest.fixture
    def harness(self, config):
        with FakeButtondown(subscribers=["ann@example.org", "bob@example.org"]) as fake:
            yield ButtondownHarness(fake, ButtondownProvider, {"base_url": fake.url},
                                    "NEWSLETTER_BUTTONDOWN_API_KEY", fake.api_key, config)  # fmt: skip


class OutboxHarness(Harness):
    """The outbox: the Maildir is the server; nothing to fail, no secret."""

    def __init__(self, config, folder: Path) -> None:
        self.config, self.folder = config, folder

    def provider(self):
        return OutboxProvider.from_config({"path": str(self.folder)}, config=self.config, environ={})

    def received(self) -> list[Received]:
        files = sorted((self.folder / "new").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        return [parsed_message(path.read_bytes()) for path in files]


class TestOutboxContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, config, tmp_path):
        return OutboxHarness(config, tmp_path / "maildir")


class SmtpHarness(Harness):
    """SMTP over STARTTLS to aiosmtpd on loopback, with its connection faults."""

    faults = ("drop", "accept_then_drop")
    secret = PASSWORD
    secret_variable = "NEWSLETTER_SMTP_PASSWORD"

    def __init__(self, server: SmtpServer, certificate: Path, config) -> None:
        self.server, self.config = server, config
        self.settings = {"host": "127.0.0.1", "port": server.port, "security": "starttls", "username": USER,
                         "ca_file": str(certificate), "timeout": 10}  # fmt: skip

    def provider(self):
        return SmtpProvider.from_config(
            self.settings, config=self.config, environ={"NEWSLETTER_SMTP_PASSWORD": PASSWORD}
        )

    def without_secret(self):
        return lambda: SmtpProvider.from_config(self.settings, config=self.config, environ={})

    def with_wrong_secret(self):
        wrong = {"NEWSLETTER_SMTP_PASSWORD": "wrong horse battery staple"}
        return lambda: SmtpProvider.from_config(self.settings, config=self.config, environ=wrong)

    def received(self) -> list[Received]:
        recorder = self.server.recorder
        with recorder.lock:
            messages = list(recorder.messages)
        return [parsed_message(raw, address) for _sender, rcpts, raw in messages for address in rcpts]

    def fail_next(self, kind: str) -> None:
        recorder = self.server.recorder
        with recorder.lock:
            if kind == "drop":  # the connection closes at the next MAIL FROM: nothing was sent
                recorder.faults.drop_at_mail.append(recorder.mail_commands + 1)
            elif kind == "accept_then_drop":  # the next message is queued, its answer never arrives
                recorder.faults.drop_after_data.append(len(recorder.messages) + 1)
            else:
                raise NotImplementedError(kind)


class TestSmtpContract(BatchProviderContract):
    @pytest.fixture
    def harness(self, config, certificate):
        with SmtpServer(*certificate) as server:
            yield SmtpHarness(server, certificate[0], config)


class InProcessHarness(Harness):
    """newsletter.testing's own fakes: the provider is its own server."""

    faults = ("rate_limited", "unavailable", "auth", "drop", "accept_then_drop")

    def __init__(self, fake) -> None:
        self.fake = fake

    def provider(self):
        return self.fake

    def received(self) -> list[Received]:
        return sorted((m for messages in self.fake.history.values() for m in messages), key=lambda m: m.address)

    def fail_next(self, kind: str) -> None:
        self.fake.fail_next(kind)

    def audience(self) -> list[str]:
        return list(getattr(self.fake, "audience", []))


class TestFakeBatchProviderContract(BatchProviderContract):
    @pytest.fixture(params=[(True, True), (False, True), (True, False), (False, False)],
                    ids=["lookup+idempotent", "idempotent", "lookup", "neither"])  # fmt: skip
    def harness(self, request):
        lookup, idempotency = request.param
        return InProcessHarness(FakeBatchProvider(max_batch=50, lookup=lookup, idempotency=idempotency))


class TestFakeAudienceProviderContract(AudienceProviderContract):
    @pytest.fixture
    def harness(self):
        return InProcessHarness(FakeAudienceProvider(["ann@example.org", "bob@example.org"]))
