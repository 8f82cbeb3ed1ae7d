"""A real SMTP server on loopback (aiosmtpd) with TLS, AUTH and injectable faults."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "lettre", "correct horse battery staple"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (the tests' private CA)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Faults:
    """What the server does wrong, consumed as it happens."""

    rcpt_451: set[str] = field(default_factory=set)  # answer 451 once for these addresses
    rcpt_550: set[str] = field(default_factory=set)  # refuse these addresses for good
    drop_at_mail: list[int] = field(default_factory=list)  # close the connection at the Nth MAIL FROM
    drop_after_data: list[int] = field(default_factory=list)  # accept the Nth message, then close unanswered
    data_delay: float = 0.0  # seconds before each DATA answer (a slow server), so a kill lands mid-chunk
    logins_allowed: int | None = None  # refuse every login after this many have succeeded
    connections_allowed: int | None = None  # answer EHLO on any later connection with 421, as relays do
    # Hold each DATA answer until this many connections are inside a message at once, or a login was
    # refused (the next connection came), or OVERLAP_WAIT seconds have passed: a client that really
    # sends side by side gets there, one that does not never does.
    await_overlap: int = 0


OVERLAP_WAIT = 20.0


class Recorder:
    """The aiosmtpd handler: records accepted messages, applies faults."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins = 0  # not auth_*: aiosmtpd reads handler attributes named auth_* as mechanisms
        self.logged_in = 0
        self.mail_commands = 0
        self.faults = Faults()
        self.lock = threading.Lock()
        self.in_message: set[int] = set()  # the sessions between MAIL FROM and the DATA answer
        self.most_in_message = 0  # the largest that set has been
        self.peers: set[tuple] = set()  # the client ends of the connections that said EHLO
        self.turned_away = 0
        self._overlap: asyncio.Event | None = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            allowed = self.faults.connections_allowed
            if allowed is not None and session.peer not in self.peers and len(self.peers) >= allowed:
                self.turned_away += 1
                return ["421 4.7.0 too many connections from you"]
            self.peers.add(session.peer)  # the same peer after STARTTLS
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
            if self.mail_commands in self.faults.drop_at_mail:
                server.transport.close()
                return "421 4.4.2 closing connection"
            self.in_message.add(id(session))
            self.most_in_message = max(self.most_in_message, len(self.in_message))
        if self.faults.await_overlap and len(self.in_message) >= self.faults.await_overlap:
            self.overlap_event().set()
        envelope.mail_from = address
        return "250 OK"

    def overlap_event(self) -> asyncio.Event:
        if self._overlap is None:  # made on the server's event loop, where it is awaited
            self._overlap = asyncio.Event()
        return self._overlap

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if address in self.faults.rcpt_451:
                self.faults.rcpt_451.discard(address)
                return "451 4.3.0 try again later"
            if address in self.faults.rcpt_550:
                return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.faults.data_delay:
            await asyncio.sleep(self.faults.data_delay)
        if self.faults.await_overlap:
            try:
                await asyncio.wait_for(self.overlap_event().wait(), OVERLAP_WAIT)
            except TimeoutError:  # waited once for nothing: the test reads most_in_message and fails
                self.overlap_event().set()
        with self.lock:
            self.in_message.discard(id(session))
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            if len(self.messages) in self.faults.drop_after_data:
                server.transport.close()  # the message is queued, the answer never arrives
        return "250 2.0.0 queued"


def make_authenticator(recorder: Recorder):
    def authenticator(server, session, envelope, mechanism, auth_data):
        recorder.logins += 1
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(), PASSWORD.encode()
        )
        allowed = recorder.faults.logins_allowed
        ok = ok and (allowed is None or recorder.logged_in < allowed)
        recorder.logged_in += ok
        if not ok and recorder.faults.await_overlap:
            recorder.overlap_event().set()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return authenticator


class SmtpServer:
    """``with SmtpServer(cert, key, implicit_tls=False) as server:`` → ``server.port``, ``server.recorder``."""

    def __init__(self, cert: Path, key: Path, *, implicit_tls: bool = False, smtputf8: bool = False) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.recorder = Recorder()
        self.port = free_port()
        options = {"authenticator": make_authenticator(self.recorder), "auth_required": True,
                   "enable_SMTPUTF8": smtputf8}  # fmt: skip
        if implicit_tls:
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
