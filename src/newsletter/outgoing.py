"""Subscription requests queued in the ledger and handled later, never inside the HTTP request.

The subscribe form only validates the address and records the request
(:func:`queue_subscription`, one INSERT whatever the address's state), so its answer and
its timing reveal nothing about membership and never depend on the provider being up.
:func:`deliver_outgoing` then does the state-dependent work: the consent record and the
confirmation mail through the configured transactional path, or, when the provider keeps
the audience (Buttondown), the provider's own subscribe call.  It runs in the service's
background worker (:class:`OutgoingWorker`), in ``newsletter outgoing`` and before each
``newsletter send``.  Temporary failures are retried later, spaced by the shared
:class:`~newsletter.retry.RetryPolicy`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .config import Config, Secret
from .errors import NewsletterError, ProviderAuthError, ProviderError, ProviderRejected
from .providers.base import Provider
from .render import confirmation_message
from .retry import RetryPolicy
from .store import OUTGOING_FAILED, OUTGOING_SENT, OUTGOING_SKIPPED, Ledger
from .subscribers import normalize_address, request_subscription
from .templates import Environment, make_environment

SUBSCRIBE = "subscribe"
CLAIM_LEASE = timedelta(minutes=5)  # a worker that dies mid-row frees it after this long
GIVE_UP_AFTER = timedelta(days=3)  # a confirmation later than this would be stale (its link expires)
AUDIENCE = "audience"  # the provider family that keeps the list itself (providers.base.AUDIENCE)

log = logging.getLogger("newsletter.outgoing")


def queue_subscription(
    ledger: Ledger, raw_address: str, *, now: datetime, source: str, client_ip: str = "", user_agent: str = ""
) -> None:
    """Record a subscription request: the same single write for a new, pending, active or suppressed address.

    Raises :class:`~newsletter.errors.SubscriberError` for something that is not an address
    (that answer depends on the input only, never on the ledger).
    """
    address = normalize_address(raw_address)
    ledger.outgoing.queue_outgoing(
        SUBSCRIBE, address, now=now, source=source, client_ip=client_ip, user_agent=user_agent
    )


@dataclass
class OutgoingReport:
    """What one pass over the queue did."""

    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0

    def describe(self) -> str:
        """One line for the CLI."""
        return f"{self.sent} sent, {self.skipped} with nothing due, {self.deferred} deferred, {self.failed} failed"


def deliver_outgoing(
    config: Config,
    ledger: Ledger,
    provider_factory: Callable[[], Provider],
    signing_keys: Sequence[Secret],
    *,
    clock: Callable[[], datetime],
    policy: RetryPolicy,
    ignore_backoff: bool = False,
    limit: int = 100,
) -> OutgoingReport:
    """Handle the queued requests whose time has come (at most ``limit``).

    The provider is built only when there is something to do.  A temporary provider
    failure defers the row by the policy's backoff and ends the pass (the provider is
    down: the next rows would fail the same way); a refusal marks the row ``failed``.
    """
    report = OutgoingReport()
    rows = ledger.outgoing.due_outgoing(clock(), limit=limit, ignore_backoff=ignore_backoff)
    if not rows:
        return report
    env = make_environment(config.templates_dir)
    with ExitStack() as stack:
        provider = stack.enter_context(closing(provider_factory()))
        for row in rows:
            now = clock()
            if not ledger.outgoing.claim_outgoing(row["id"], now=now, until=now + CLAIM_LEASE):
                continue  # another worker has it
            try:
                state, reference = _handle(config, ledger, provider, signing_keys, env, row, clock)
            except ProviderError as error:
                # Refused credentials are the operator's to fix, not the visitor's: keep the request.
                later = error.retryable or isinstance(error, ProviderAuthError)
                if later and now - _parse(row["requested_at"]) < GIVE_UP_AFTER:
                    wait = policy.wait(row["attempts"], getattr(error, "retry_after", None))
                    ledger.outgoing.defer_outgoing(row["id"], now=now, retry_at=now + timedelta(seconds=wait),
                                          error=error.one_line())  # fmt: skip
                    report.deferred += 1
                    log.warning("outgoing message %s deferred: %s", row["id"], error.one_line())
                    break
                ledger.outgoing.settle_outgoing(row["id"], OUTGOING_FAILED, now=now, error=error.one_line())
                report.failed += 1
                log.error("outgoing message %s failed: %s", row["id"], error.one_line())
                continue
            except NewsletterError as error:  # a busy ledger, a broken template: this row later, not lost
                wait = policy.wait(row["attempts"], None)
                retry_at = now + timedelta(seconds=wait)
                ledger.outgoing.defer_outgoing(row["id"], now=now, retry_at=retry_at, error=error.one_line())
                report.deferred += 1
                log.warning("outgoing message %s deferred: %s", row["id"], error.one_line())
                break
            ledger.outgoing.settle_outgoing(row["id"], state, now=clock(), reference=reference)
            if state == OUTGOING_SENT:
                report.sent += 1
            else:
                report.skipped += 1
    return report


def _handle(
    config: Config, ledger: Ledger, provider: Provider, signing_keys: Sequence[Secret], env: Environment, row: Mapping,
    clock: Callable[[], datetime],
) -> tuple[str, str | None]:  # fmt: skip
    """One subscription request: ``(state, provider reference)``."""
    capabilities = getattr(provider, "capabilities", None)
    if getattr(capabilities, "family", None) == AUDIENCE:
        subscribe = getattr(provider, "subscribe", None)
        if subscribe is None:
            raise ProviderRejected(f"{provider.name} keeps the audience but has no subscribe call",
                                   hint="choose a provider that can add subscribers")  # fmt: skip
        reference = subscribe(row["email"], key=f"outgoing-{row['id']}", ip_address=row["client_ip"] or None)
        # None: the provider already knew the address and left it as it was (never re-activated).
        return (OUTGOING_SENT if reference else OUTGOING_SKIPPED), reference
    due = request_subscription(
        ledger, signing_keys, config.email.list_id, row["email"], now=_parse(row["requested_at"]), source=row["source"],
        ip=row["client_ip"] or "", user_agent=row["user_agent"] or "",
    )  # fmt: skip
    if due is None:
        return OUTGOING_SKIPPED, None
    address, token = due
    key = hashlib.sha256(token.encode()).hexdigest()[:24]
    message = confirmation_message(
        config, env, to=address, confirm_url=f"{config.site.base_url}confirm/{token}", date=clock(), key=key
    )
    return OUTGOING_SENT, provider.send_message(message, key=f"confirm-{key}")


def _parse(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def flush_outgoing(
    config: Config,
    *,
    environ: Mapping[str, str],
    clock: Callable[[], datetime],
    provider_factory: Callable[[], Provider] | None = None,
    ignore_backoff: bool = False,
) -> OutgoingReport:
    """Open the ledger and handle what is due (the worker's pass, ``newsletter outgoing``, before ``send``)."""
    from .providers import load_provider

    factory = provider_factory or (lambda: load_provider(config, environ=environ))
    with closing(Ledger(config.database_path)) as ledger:
        return deliver_outgoing(
            config, ledger, factory, config.token_keys(environ), clock=clock, policy=config.retry,
            ignore_backoff=ignore_backoff,
        )  # fmt: skip


class OutgoingWorker:
    """A daemon thread that flushes the queue when told (:meth:`notify`) and every ``interval`` seconds."""

    def __init__(self, flush: Callable[[], OutgoingReport], *, interval: float = 5.0) -> None:
        self.flush = flush
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0  # completed passes, for tests and logs

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="newsletter-outgoing", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """Something was queued: run a pass now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except NewsletterError as error:  # a busy ledger, a missing secret: try again next pass
                log.warning("outgoing messages not handled: %s", error.one_line())
            except Exception:  # never let the worker die: the queue would silently stop
                log.exception("outgoing worker pass failed")
            self.passes += 1
