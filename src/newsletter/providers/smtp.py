"""Plain SMTP (smtplib): a few connections, each reused for message after message, TLS always verified.

Batch family with one recipient per chunk, so the ledger records every single
message before and after it is handed over.  Replies are mapped per recipient:
4xx is temporary (retried by the engine), 5xx permanent.  A connection lost
before the DATA phase is safe to retry on a new connection; one lost during
DATA may have delivered the message, which the engine never re-sends blindly.

``connections`` (``[providers.smtp] connections``, default :data:`DEFAULT_CONNECTIONS`) is how
many messages the send engine may hand over at once (``Capabilities.concurrency``): each call
leases an idle connection from a small pool, or opens one, so a server works on one message
while we prepare the next.  A connection is only ever used by one call at a time.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

from ..config import Config, Secret, secret
from ..config_keys import did_you_mean
from ..errors import (
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTransient,
)
from ..render import Recipient
from ..textutil import is_email_address
from .base import BATCH, BatchProvider, Capabilities, ChunkRequest, DeliveryResult

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# What becomes of user@café.fr on a server without SMTPUTF8: refused with the reason (the
# address as the subscriber wrote it cannot travel), or sent to its A-label user@xn--caf-dma.fr.
IDN_DOMAINS = ("refuse", "a-label")
# Messages in flight at once, each on its own connection.  Two already overlap our work with the
# server's; relays limit concurrent connections per client (often to a handful), so the default
# stays small and the editor may raise it up to MAX_CONNECTIONS.
DEFAULT_CONNECTIONS = 2
MAX_CONNECTIONS = 16


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificate and host name verified, always (SEC-11); ``ca_file`` adds a private CA."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Lease:
    """One connection lent to one call; :meth:`drop` when the call leaves it unusable."""

    def __init__(self, connection: smtplib.SMTP) -> None:
        self.connection = connection
        self.dropped = False

    def drop(self) -> None:
        self.dropped = True
        _close_quietly(self.connection)


def _close_quietly(connection: smtplib.SMTP) -> None:
    try:
        connection.close()
    except OSError:
        pass


class _Pool:
    """The open connections no call holds, and how many may be open at once (thread-safe)."""

    def __init__(self, most: int) -> None:
        self.idle: list[smtplib.SMTP] = []
        self.open = 0  # held or idle
        self.most = most  # lowered when the server turns one more away
        self._changed = threading.Condition()

    def take(self, connect: Callable[[], smtplib.SMTP]) -> smtplib.SMTP:
        """An idle connection, else a new one while fewer than the most are open, else the next one freed.

        A server that turns away one more connection while ours are open (relays limit them per
        client) lowers the most to those: the calls share them instead of failing the send.
        """
        with self._changed:
            while not self.idle and self.open >= self.most:
                self._changed.wait()
            if self.idle:
                return self.idle.pop()
            self.open += 1
        try:
            return connect()
        except ProviderTransient:
            with self._changed:
                self.open -= 1
                if not self.open:
                    raise  # none to share: the engine retries as for any transient failure
                self.most = self.open
            return self.take(connect)
        except BaseException:
            with self._changed:
                self.open -= 1
                self._changed.notify()
            raise

    @contextmanager
    def leased(self, connect: Callable[[], smtplib.SMTP]) -> Iterator[_Lease]:
        """A connection for one call, back in the pool after it unless dropped.

        A call that ends in anything but a reply we understood (a bug, an interrupt) may leave
        the conversation half-way, so its connection is closed instead of lent again.
        """
        lease = _Lease(self.take(connect))
        try:
            yield lease
        except ProviderError:
            self.give_back(lease)
            raise
        except BaseException:
            lease.drop()
            self.give_back(lease)
            raise
        self.give_back(lease)

    def give_back(self, lease: _Lease) -> None:
        with self._changed:
            if lease.dropped:
                self.open -= 1
            else:
                self.idle.append(lease.connection)
            self._changed.notify()

    def empty(self) -> list[smtplib.SMTP]:
        """Every idle connection, no longer the pool's."""
        with self._changed:
            idle, self.idle = self.idle, []
            self.open -= len(idle)
        return idle


class SmtpProvider(BatchProvider):
    """Sends each recipient's MIME message over a small pool of reused SMTP connections (thread-safe)."""

    name = "smtp"
    capabilities = Capabilities(
        family=BATCH, max_batch=1, idempotency=False, lookup=False, custom_headers=True, unsubscribe="ours",
        concurrency=DEFAULT_CONNECTIONS,
    )  # fmt: skip

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str = "",
        password: Secret | None = None,
        envelope_from: str,
        timeout: float = 30.0,
        ca_file: str | None = None,
        idn_domains: str = "refuse",
        password_env: str = "NEWSLETTER_SMTP_PASSWORD",
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.envelope_from = envelope_from
        self.timeout = timeout
        self.idn_domains = idn_domains
        self.password_env = password_env
        self.context = tls_context(ca_file) if security != "none" else None
        self.capabilities = replace(type(self).capabilities, concurrency=connections)
        self._pool = _Pool(connections)

    def __repr__(self) -> str:
        return f"SmtpProvider({self.host}:{self.port}, {self.security}, user={self.username!r}, password=****)"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, config: Config, environ: Mapping[str, str]) -> SmtpProvider:
        return cls(**_settings(settings, config, environ))

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        """A new connection, greeted, secured and logged in as configured."""
        connection: smtplib.SMTP
        where = f"smtp {self.host}:{self.port}"
        try:
            if self.security == "tls":
                connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            try:
                _greeted(connection.ehlo(), where)
                if self.security == "starttls":
                    connection.starttls(context=self.context)
                    _greeted(connection.ehlo(), where)
                if self.username:
                    connection.login(self.username, self.password.reveal() if self.password else "")
            except BaseException:
                _close_quietly(connection)  # half-opened: closed now, not whenever it is collected
                raise
        except smtplib.SMTPAuthenticationError as error:
            raise ProviderAuthError(
                f"the SMTP server refused the login ({error.smtp_code})",
                where=f"smtp {self.host}:{self.port}",
                hint="check providers.smtp.username and the password variable",
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise ProviderRejected(
                f"the server's TLS certificate is not trusted ({error.verify_message})",
                where=f"smtp {self.host}:{self.port}",
                hint="fix the server certificate, or set providers.smtp.ca_file to your private CA",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise ProviderRejected(
                "the server does not offer STARTTLS", where=f"smtp {self.host}:{self.port}", hint='try security = "tls"'
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise ProviderTransient(
                f"cannot connect ({error})", where=f"smtp {self.host}:{self.port}", hint="check host, port and network"
            ) from None
        return connection

    def check_access(self) -> None:
        """``newsletter doctor``: connect, EHLO, STARTTLS when configured, AUTH when there are
        credentials, QUIT — what a send does before its first MAIL FROM, and no more."""
        _check_access(self)

    def close(self) -> None:
        """QUIT every pooled connection (called once no call is in progress)."""
        for connection in self._pool.empty():
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            _close_quietly(connection)

    # -- sending ------------------------------------------------------------------------------

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        with self._pool.leased(self._connect) as lease:
            return [self._send_one(lease, request, recipient) for recipient in request.recipients]

    def _send_one(self, lease: _Lease, request: ChunkRequest, recipient: Recipient) -> DeliveryResult:
        connection = lease.connection
        carried, mail_options = self._envelope(connection, recipient)
        if carried is None:
            return self._refused_utf8(recipient)
        recipient = carried
        message = request.issue.message_bytes(recipient, date=request.date)
        message_id = request.issue.message_id(recipient)
        try:
            self._checked(lease, connection.mail(self.envelope_from, mail_options), "MAIL FROM")
            code, reply = connection.rcpt(recipient.email)
            if code >= 400:
                connection.rset()
                return self._refused(recipient.subscriber_id, code, reply)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            lease.drop()
            raise ProviderTransient(f"connection lost before sending ({error})", where=f"smtp {self.host}") from None
        try:
            code, reply = connection.data(message)
        except smtplib.SMTPDataError as error:
            return self._refused(recipient.subscriber_id, error.smtp_code, error.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            lease.drop()
            # The server may have queued the message before the answer was lost.
            raise ProviderTransient(
                f"connection lost during DATA ({error})", where=f"smtp {self.host}", maybe_delivered=True
            ) from None
        return DeliveryResult(recipient.subscriber_id, True, message_id)

    # -- international addresses (RFC 6531) ---------------------------------------------------

    def _envelope(self, connection: smtplib.SMTP, recipient: Recipient):
        """``(recipient, MAIL FROM options)`` for one message, or ``(None, [])`` when this server
        cannot carry the address.  Any non-ASCII address needs SMTPUTF8 (RFC 6531); with
        ``idn_domains = "a-label"`` an IDN domain alone goes as its A-label (``xn--…``) instead."""
        if recipient.email.isascii():
            connection.command_encoding = "ascii"
            return recipient, []
        if connection.has_extn("smtputf8"):
            connection.command_encoding = "utf-8"  # smtplib's own switch for UTF-8 commands
            return recipient, ["SMTPUTF8", "BODY=8BITMIME"] if connection.has_extn("8bitmime") else ["SMTPUTF8"]
        if self.idn_domains != "a-label":
            return None, []
        from ..subscribers import ascii_address

        ascii_form = ascii_address(recipient.email)
        if ascii_form is None:
            return None, []
        return replace(recipient, email=ascii_form), []

    def _refused_utf8(self, recipient: Recipient) -> DeliveryResult:
        local_part, _, _ = recipient.email.rpartition("@")
        fix = "send through a server that does"
        if local_part.isascii() and self.idn_domains != "a-label":
            fix += ', or set providers.smtp.idn_domains = "a-label" to send to the xn-- form of the domain'
        return DeliveryResult(
            recipient.subscriber_id, False, None,
            f"{recipient.email}: the address is not ASCII and {self.host} does not offer SMTPUTF8 (RFC 6531); {fix}",
            retryable=False,
        )  # fmt: skip

    def send_message(self, message: EmailMessage, *, key: str) -> str:
        with self._pool.leased(self._connect) as lease:
            return self._send_transactional(lease, message)

    def _send_transactional(self, lease: _Lease, message: EmailMessage) -> str:
        try:
            refused = lease.connection.send_message(message, from_addr=self.envelope_from)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            raise ProviderRejected(f"{code} {_text(reply)}", where=f"smtp {self.host}") from None
        except smtplib.SMTPNotSupportedError:  # smtplib's own check: UTF-8 headers need SMTPUTF8
            raise ProviderRejected(
                f"{message['To']}: the address is not ASCII and {self.host} does not offer SMTPUTF8 (RFC 6531)",
                where=f"smtp {self.host}",
                hint="send through a server that offers SMTPUTF8",
            ) from None
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            lease.drop()
            raise ProviderTransient(f"connection lost ({error})", where=f"smtp {self.host}") from None
        if refused:
            raise ProviderRejected(f"refused: {refused}", where=f"smtp {self.host}")
        return str(message["Message-ID"])

    def _checked(self, lease: _Lease, answer: tuple[int, bytes], step: str) -> None:
        code, reply = answer
        if code in (421, 451, 452):
            if code == 421:  # the server is closing the connection
                lease.drop()
            raise ProviderRateLimited(f"{step}: {code} {_text(reply)}", where=f"smtp {self.host}")
        if code >= 500:
            raise ProviderRejected(
                f"{step} refused: {code} {_text(reply)}", where=f"smtp {self.host}",
                hint="check providers.smtp.envelope_from and the server's sending rules",
            )  # fmt: skip
        if code >= 400:
            raise ProviderTransient(f"{step}: {code} {_text(reply)}", where=f"smtp {self.host}")

    @staticmethod
    def _refused(subscriber_id: int, code: int, reply: bytes | str) -> DeliveryResult:
        return DeliveryResult(subscriber_id, False, None, f"{code} {_text(reply)}", retryable=400 <= code < 500)


def _greeted(answer: tuple[int, bytes], where: str) -> None:
    """EHLO answered 250, else the server turned us away (a 421 when it takes no more connections)."""
    code, reply = answer
    if 400 <= code < 500:
        raise ProviderTransient(
            f"EHLO refused: {code} {_text(reply)}", where=where,
            hint="the server takes no (more) connections from this client now; try later or lower"
            " providers.smtp.connections",
        )  # fmt: skip
    if code != 250:
        raise ProviderRejected(f"EHLO refused: {code} {_text(reply)}", where=where,
                               hint="the server does not take this client; ask its operator")  # fmt: skip


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _settings(settings: Mapping[str, Any], config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of :class:`SmtpProvider` from ``[providers.smtp]``, each checked."""
    where = "newsletter.toml: providers.smtp"
    host = settings.get("host")
    if not isinstance(host, str) or not host:
        raise ConfigError("host is missing", where=where, hint='add host = "smtp.example.org"')
    security = settings.get("security", "starttls")
    if security not in SECURITY:
        raise ConfigError(f"security {security!r} is unknown", where=where, hint=f"use one of {', '.join(SECURITY)}")
    if security == "none" and host not in ("localhost", "127.0.0.1", "::1"):
        raise ConfigError(
            'security = "none" sends in clear text', where=where, hint="use it only for a relay on localhost"
        )
    username = settings.get("username", "")
    password = None
    password_env = settings.get("password_env", "NEWSLETTER_SMTP_PASSWORD")
    if username:
        password = secret(password_env, environ)
    port = settings.get("port", DEFAULT_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"port {port!r} is not a port number", where=where, hint="e.g. port = 587")
    timeout = settings.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError("timeout must be a number of seconds > 0", where=where, hint="e.g. timeout = 30")
    envelope_from = settings.get("envelope_from", config.email.from_address)
    if not isinstance(envelope_from, str) or not is_email_address(envelope_from):
        raise ConfigError(
            f"envelope_from {str(envelope_from)[:60]!r} is not an email address",
            where=f"{where}.envelope_from", hint="write a bare address such as bounces@example.org",
        )  # fmt: skip
    idn_domains = settings.get("idn_domains", "refuse")
    if idn_domains not in IDN_DOMAINS:
        raise ConfigError(
            f"idn_domains {str(idn_domains)[:40]!r} is unknown", where=f"{where}.idn_domains",
            hint=did_you_mean(idn_domains, IDN_DOMAINS, otherwise="")
            + ' ("a-label" sends user@café.fr as user@xn--caf-dma.fr to a server without SMTPUTF8)',
        )  # fmt: skip
    connections = settings.get("connections", DEFAULT_CONNECTIONS)
    if isinstance(connections, bool) or not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS:
        raise ConfigError(
            f"connections {str(connections)[:40]!r} is not a whole number from 1 to {MAX_CONNECTIONS}",
            where=f"{where}.connections",
            hint=f"e.g. connections = {DEFAULT_CONNECTIONS} (messages sent at once, each on its own connection;"
            " stay within what the server allows per client)",
        )
    return dict(
        host=host,
        port=port,
        security=security,
        username=username,
        password=password,
        envelope_from=envelope_from,
        timeout=float(timeout),
        ca_file=settings.get("ca_file"),
        idn_domains=idn_domains,
        password_env=password_env,
        connections=connections,
    )


def _check_access(provider: SmtpProvider) -> None:
    """See :meth:`SmtpProvider.check_access`."""
    where, step = f"smtp {provider.host}:{provider.port}", "connect"
    connection: smtplib.SMTP | None = None
    try:
        if provider.security == "tls":
            connection = smtplib.SMTP_SSL(
                provider.host, provider.port, timeout=provider.timeout, context=provider.context
            )
        else:
            connection = smtplib.SMTP(provider.host, provider.port, timeout=provider.timeout)
        step = "EHLO"
        code, reply = connection.ehlo()
        if code != 250:
            raise ProviderRejected(f"EHLO refused: {code} {_text(reply)}", where=where,
                                   hint="the server does not take this client; ask its operator")  # fmt: skip
        if provider.security == "starttls":
            step = "STARTTLS"
            if not connection.has_extn("starttls"):
                raise ProviderRejected(
                    "the server does not offer STARTTLS", where=where,
                    hint='use security = "tls" (usually port 465), or a server that offers it',
                )  # fmt: skip
            connection.starttls(context=provider.context)
            connection.ehlo()
        if provider.username:
            step = "AUTH"
            if not connection.has_extn("auth"):
                raise ProviderRejected("the server offers no AUTH to log in with", where=where,
                                       hint="remove providers.smtp.username for a relay without login")  # fmt: skip
            connection.login(provider.username, provider.password.reveal() if provider.password else "")
        step = "QUIT"
        connection.quit()
        connection = None
    except smtplib.SMTPAuthenticationError as error:
        raise ProviderAuthError(
            f"the server refused the login of {provider.username!r} ({error.smtp_code})", where=where,
            hint=f"check providers.smtp.username and the password in {provider.password_env}",
        ) from None  # fmt: skip
    except ssl.SSLCertVerificationError as error:
        raise ProviderRejected(
            f"the server's TLS certificate is not trusted ({error.verify_message})", where=where,
            hint="fix the server certificate, or set providers.smtp.ca_file to your private CA",
        ) from None  # fmt: skip
    except (smtplib.SMTPException, OSError) as error:
        fix = {"connect": "check providers.smtp.host and port, and that the server is up",
               "STARTTLS": 'the TLS handshake failed: try security = "tls" on port 465'}  # fmt: skip
        raise ProviderTransient(
            f"{step} failed ({error or type(error).__name__})", where=where,
            hint=fix.get(step, "check providers.smtp.security and port against what the server offers"),
        ) from None  # fmt: skip
    finally:
        if connection is not None:
            connection.close()
