"""The local subscriber list: address normalisation, CSV import/export, double opt-in, and
the editor's operations on it (add, remove, list, import, export).

For providers where we keep the list.  Addresses that unsubscribed, bounced or complained are
never re-activated from here (LAW-07).  Signed tokens live in :mod:`newsletter.tokens`.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email

from .config import Secret
from .errors import NewsletterError, NotFound, SubscriberError
from .store import ACTIVE, BOUNCED, COMPLAINED, PENDING, UNSUBSCRIBED, Ledger
from .textutil import header_break, is_email_address
from .tokens import CONFIRM, UNSUBSCRIBE, InvalidToken, make_token, verify_token

EXPORT_FIELDS = [
    "email", "status", "list", "source", "created_at", "updated_at", "unsubscribed_at",
    # the consent record (LAW-04)
    "consent_at", "consent_source", "consent_text_version", "consent_ip", "consent_user_agent", "confirmed_at",
]  # fmt: skip


def normalize_address(raw: str) -> str:
    """One spelling per address, or :class:`SubscriberError` if it is not one.

    International addresses are accepted (RFC 6531: ``josé@exemple.fr``, ``user@café.fr``) and
    stored in Unicode: NFC, lowercased, the domain as its IDNA U-label, so ``user@xn--caf-dma.fr``
    and ``user@CAFÉ.fr`` are the same subscriber.  Quoted local parts, IP-literal domains and
    display names are refused; so is anything a mail header may not hold (INJ-01).
    """
    address = raw.strip()
    plain = address.isascii() and "xn--" not in address.lower()
    if plain and header_break(address) is None and is_email_address(address):
        return address.lower()  # the common case, without the validator's cost
    try:
        if header_break(address) is not None or len(address) > 320:
            raise EmailNotValidError("not one line")
        checked = validate_email(address, check_deliverability=False, globally_deliverable=False)
        if "." not in checked.domain:  # a dotless domain is local to one network
            raise EmailNotValidError("no dot in the domain")
    except EmailNotValidError:
        raise SubscriberError(
            f"{address[:80]!r} is not a valid email address", hint="write it as name@example.org"
        ) from None
    return unicodedata.normalize("NFC", checked.normalized.lower())


def ascii_address(address: str) -> str | None:
    """The address with its domain as an IDNA A-label (``user@xn--caf-dma.fr``), which any mail
    server takes; None when the local part itself is not ASCII (only SMTPUTF8 carries it)."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{validate_email(address, check_deliverability=False, globally_deliverable=False).ascii_domain}"
    except EmailNotValidError:
        return None


# Column names of the address and of the status in the exports we read (lowercased).
# Buttondown: ``email``/``email_address`` and ``subscriber_type``/``type`` (regular, premium,
# unactivated, unsubscribed, removed, spammy, ...).  Mailchimp: ``Email Address``; its audience
# export is one file per status, the unsubscribed one with ``UNSUB_TIME``, the cleaned one
# (hard bounces) with ``CLEAN_TIME``, and newer exports an ``Email Marketing Status`` column.
# Substack: ``email`` with ``email_disabled`` (true when the reader stopped the emails).
EMAIL_COLUMNS = ("email", "email address", "email_address", "e-mail", "emailaddress")
STATUS_COLUMNS = ("status", "subscriber_type", "subscriber type", "type", "email marketing status", "member_status")
STATUS_MEANINGS = {
    ACTIVE: {"", "active", "subscribed", "regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused",
             "past_due", "confirmed", "free", "paid", "comp"},
    PENDING: {"pending", "unactivated", "unconfirmed", "not confirmed", "non-subscribed", "nonsubscribed",
              "transactional"},
    UNSUBSCRIBED: {"unsubscribed", "unsubscribe", "removed", "spammy", "inactive", "opted out", "opted-out",
                   "archived", "deleted", "disabled"},
    BOUNCED: {"bounced", "bounce", "cleaned", "undeliverable", "hard bounce", "hard_bounce", "invalid"},
    COMPLAINED: {"complained", "complaint", "spam", "spam complaint", "abuse", "reported"},
}  # fmt: skip
_STATUS_OF = {word: status for status, words in STATUS_MEANINGS.items() for word in words}
TRUE_WORDS = {"true", "yes", "1", "y", "t"}


@dataclass
class ImportReport:
    """What ``subscribers import`` did, counted per kind of line."""

    added: int = 0
    duplicate: int = 0
    suppressed: int = 0
    # Rows the file marks as having left, recorded as suppressed (never active), per status.
    left: dict[str, int] = field(default_factory=lambda: {UNSUBSCRIBED: 0, BOUNCED: 0, COMPLAINED: 0})
    # Rows the file marks as never confirmed: not imported (no consent to mail them).
    unconfirmed: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


class _Columns:
    """Where a file keeps the address and what says each row's status."""

    def __init__(self, header: list[str] | None) -> None:
        lowered = [cell.strip().lower() for cell in header] if header else []
        self.email = next((lowered.index(name) for name in EMAIL_COLUMNS if name in lowered), 0)
        self.status = next((lowered.index(name) for name in STATUS_COLUMNS if name in lowered), None)
        self.left_at = {  # a non-empty value in one of these says the row left
            lowered.index(name): reason
            for name, reason in (("unsub_time", UNSUBSCRIBED), ("clean_time", BOUNCED))
            if name in lowered
        }
        self.disabled = lowered.index("email_disabled") if "email_disabled" in lowered else None

    def status_of(self, row: list[str]) -> str | None:
        """The row's status, or None when the status column holds a word we do not know."""
        if self.disabled is not None and _cell(row, self.disabled).lower() in TRUE_WORDS:
            return UNSUBSCRIBED
        for index, reason in self.left_at.items():
            if _cell(row, index):
                return reason
        if self.status is None:
            return ACTIVE
        word = " ".join(_cell(row, self.status).lower().split())
        return _STATUS_OF.get(word, _STATUS_OF.get(word.replace(" ", "_")))


def _cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _is_header(row: list[str]) -> bool:
    return any(cell.strip().lower() in EMAIL_COLUMNS for cell in row)


def import_csv(
    ledger: Ledger, handle: IO[str], *, source: str, now: datetime, name: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:  # fmt: skip
    """Import the addresses of a CSV file, with the status each row carries.

    The address comes from an ``email``-like column (Buttondown, Mailchimp, Substack), else
    the first column.  A status column (see :data:`STATUS_COLUMNS` and :data:`STATUS_MEANINGS`)
    or a Mailchimp ``UNSUB_TIME``/``CLEAN_TIME``/Substack ``email_disabled`` column marks rows that
    left: they are recorded as suppressed, never active (LAW-07), and counted per status.
    Unconfirmed rows are not imported.  Invalid lines (a bad address, an unknown status) are
    reported with their line number and skipped; duplicates and suppressed addresses are
    counted, never re-activated.  The whole file is read and checked before anything is written.
    """
    report = ImportReport()
    rows: list[tuple[str, str]] = []
    columns = _Columns(None)
    reader = csv.reader(handle)
    first_record = True
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise SubscriberError(
                f"line {reader.line_num}: {exc}", where=name,
                hint="each line holds one address; check the quoting, or split the file",
            ) from None  # fmt: skip
        number = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if first_record:
            first_record = False
            if _is_header(row):  # only the first record of the file can be its header
                columns = _Columns(row)
                continue
        raw = _cell(row, columns.email)
        status = columns.status_of(row)
        if status is None:
            report.invalid.append((number, f"unknown status {_cell(row, columns.status or 0)[:40]!r} for {raw[:60]!r}"))
            continue
        try:
            address = normalize_address(raw)
        except SubscriberError:
            report.invalid.append((number, f"{raw[:80]!r} is not a valid address"))
            continue
        if status == PENDING:
            report.unconfirmed += 1
            continue
        rows.append((address, status))
    counts = ledger.subscribers.import_subscribers(rows, source=source, now=now, progress=progress)
    report.added, report.duplicate, report.suppressed = counts["added"], counts["duplicate"], counts["suppressed"]
    report.left = {status: counts[status] for status in (UNSUBSCRIBED, BOUNCED, COMPLAINED)}
    return report


def export_csv(rows: Iterable[dict], handle: IO[str]) -> int:
    """Write subscribers as CSV (header first); returns how many rows were written."""
    writer = csv.DictWriter(handle, fieldnames=EXPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


# -- double opt-in ------------------------------------------------------------------------------

CONSENT_TEXT_VERSION = "1"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def request_subscription(
    ledger: Ledger,
    signing_keys: Sequence[Secret],
    list_id: str,
    raw_address: str,
    *,
    now: datetime,
    source: str,
    ip: str = "",
    user_agent: str = "",
    consent_version: str = CONSENT_TEXT_VERSION,
) -> tuple[str, str] | None:
    """Record a subscription request; returns ``(address, confirm token)`` when a confirmation is due.

    A new (or still pending) address becomes ``pending`` with its consent record (LAW-04) and
    gets a single-use token; an active or suppressed (unsubscribed, bounced, complained)
    address gets nothing.  The caller answers the same whatever happened, so the form
    reveals nothing.
    """
    address = normalize_address(raw_address)
    consent = {
        "consent_at": now.isoformat(), "consent_source": source, "consent_text_version": consent_version,
        "consent_ip": ip[:64], "consent_user_agent": user_agent[:200],
    }  # fmt: skip
    row = ledger.subscribers.subscriber_by_email(address)
    if row is None:
        if ledger.subscribers.is_suppressed(address):
            return None
        subscriber_id, outcome = ledger.subscribers.add_subscriber(
            address, source=source, now=now, status=PENDING, consent=consent
        )
        if outcome != "added":
            return None
    elif row["status"] == PENDING:
        subscriber_id = row["id"]
        ledger.subscribers.update_subscriber(subscriber_id, {**consent, "updated_at": now.isoformat()})
    else:
        # Active: nothing to do.  Unsubscribed, bounced, complained: suppression wins over a
        # new request (issue 10); only the editor's 'subscribers reactivate' lifts it.
        return None
    token = make_token(signing_keys, purpose=CONFIRM, list_id=list_id, subscriber_id=subscriber_id, issued_at=now)
    ledger.subscribers.update_subscriber(subscriber_id, {"confirm_token_hash": _token_hash(token)})
    return address, token


def confirm_subscription(
    ledger: Ledger, signing_keys: Sequence[Secret], list_id: str, token: str, *, now: datetime, max_age: timedelta
) -> dict:
    """Confirm with a token: single-use, expiring; raises :class:`InvalidToken` without detail."""
    claims = verify_token(token, signing_keys, purpose=CONFIRM, list_id=list_id)
    if now.timestamp() - claims.issued_at > max_age.total_seconds():
        raise InvalidToken("invalid token")
    row = ledger.subscribers.subscriber(claims.subscriber_id)
    if (
        row is None
        or not row.get("confirm_token_hash")
        or not hmac.compare_digest(row["confirm_token_hash"], _token_hash(token))
    ):
        raise InvalidToken("invalid token")
    ledger.subscribers.confirm(row["id"], now=now)  # a suppression that came meanwhile stands
    return ledger.subscribers.subscriber(row["id"]) or row


def subscriber_for_token(
    ledger: Ledger, signing_keys: Sequence[Secret], list_id: str, token: str, *, purpose: str
) -> dict:
    """The subscriber a valid token names (reading only: GET pages change nothing)."""
    claims = verify_token(token, signing_keys, purpose=purpose, list_id=list_id)
    row = ledger.subscribers.subscriber(claims.subscriber_id)
    if row is None:
        raise InvalidToken("invalid token")
    return row


def unsubscribe_with_token(
    ledger: Ledger, signing_keys: Sequence[Secret], list_id: str, token: str, *, now: datetime
) -> dict:
    """Unsubscribe whoever the token names; idempotent; tokens never expire (LAW-02)."""
    row = subscriber_for_token(ledger, signing_keys, list_id, token, purpose=UNSUBSCRIBE)
    ledger.subscribers.unsubscribe(row["id"], now=now)
    return row


def suppress(ledger: Ledger, raw_address: str, reason: str, *, now: datetime) -> None:
    """A bounce or complaint: the address receives nothing any more, known or not (BULK-05, BULK-09)."""
    try:
        address = normalize_address(raw_address)
    except SubscriberError:
        return
    row = ledger.subscribers.subscriber_by_email(address)
    if row is not None:
        ledger.subscribers.set_status(row["id"], reason, now=now)
    else:
        ledger.subscribers.add_suppression(address, reason, now=now)


if TYPE_CHECKING:
    from .project import Newsletter

CONFIRM_MAX_AGE = timedelta(days=3)

ADD_OUTCOMES = {"added": "added", "known": "already subscribed", "suppressed": "suppressed, not added"}


@dataclass(frozen=True)
class Change:
    """What one command did to one address: ``outcome`` is a short phrase for people."""

    address: str
    outcome: str


class SubscriberBook:
    """The subscriber operations of a project, over its ledger (see :attr:`Newsletter.subscribers`)."""

    def __init__(self, project: Newsletter) -> None:
        self.project = project
        self.ledger = project.ledger
        self.clock = project.clock

    def add(self, emails: Iterable[str], *, source: str = "cli") -> list[Change]:
        """Add addresses as active (the editor vouches for their consent); every address is checked first."""
        addresses = [normalize_address(e) for e in emails]
        changes = []
        for address in addresses:
            _, outcome = self.ledger.subscribers.add_subscriber(address, source=source, now=self.clock())
            changes.append(Change(address, ADD_OUTCOMES[outcome]))
        return changes

    def remove(self, emails: Iterable[str]) -> list[Change]:
        """Unsubscribe addresses; they stay in the ledger, suppressed, so no import re-adds them."""
        addresses = [normalize_address(e) for e in emails]
        changes = []
        for address in addresses:
            row = self.ledger.subscribers.subscriber_by_email(address)
            if row is None:
                raise NotFound(f"{address} is not a subscriber", hint="run 'newsletter subscribers list'")
            changed = self.ledger.subscribers.unsubscribe(row["id"], now=self.clock())
            changes.append(Change(address, "unsubscribed" if changed else "already unsubscribed"))
        return changes

    def list(self, status: str | None = None) -> Iterator[dict]:
        """Stream subscribers (id order), optionally only those with ``status``."""
        return self.ledger.subscribers.stream(status)

    def count(self, status: str | None = None) -> int:
        return self.ledger.subscribers.count_subscribers(status)

    def import_csv(
        self, handle: IO[str], *, source: str, progress: Callable[[int, int], None] | None = None
    ) -> ImportReport:
        """Import a CSV export (an ``email`` column, else the first); see :func:`import_csv`.
        ``progress(done, total)`` hears how many of the file's valid rows were written."""
        name = getattr(handle, "name", "")
        try:
            return import_csv(self.ledger, handle, source=source, now=self.clock(), name=name, progress=progress)
        except UnicodeDecodeError as error:
            raise NewsletterError(
                "not valid UTF-8", where=getattr(handle, "name", "CSV"), hint="save the CSV as UTF-8"
            ) from error

    def reactivate(self, email: str, *, overrides: Iterable[str]) -> Change:
        """Make a suppressed address active again, lifting only the suppressions named in ``overrides``
        (``unsubscribed``, ``bounced``, ``complained``); any other raises :class:`SubscriberError`."""
        address = normalize_address(email)
        lifted = self.ledger.subscribers.reactivate(address, overrides=overrides, now=self.clock())
        return Change(address, f"active (was {lifted})" if lifted != "active" else "active (was not suppressed)")

    def export_csv(self, handle: IO[str]) -> int:
        """Write every subscriber as CSV; returns how many."""
        return export_csv(self.ledger.subscribers.stream(), handle)

    # -- what subscribers do themselves, through the service ---------------------------------

    def request(self, email: str, *, source: str, client_ip: str = "", user_agent: str = "") -> None:
        """Record a subscription request; the confirmation goes out later (:mod:`newsletter.outgoing`).

        The same single write whatever the address's state, so the answer reveals nothing.
        """
        from .outgoing import queue_subscription

        queue_subscription(
            self.ledger, email, now=self.clock(), source=source, client_ip=client_ip, user_agent=user_agent
        )

    def holder_of(self, token: str, *, purpose: str) -> dict:
        """The subscriber a signed ``confirm`` or ``unsubscribe`` token names (raises InvalidToken)."""
        return subscriber_for_token(self.ledger, self.project.signing_keys(), self._list_id, token, purpose=purpose)

    def confirm(self, token: str) -> None:
        """Double opt-in: a valid, fresh confirm token makes a pending subscriber active."""
        confirm_subscription(
            self.ledger, self.project.signing_keys(), self._list_id, token, now=self.clock(), max_age=CONFIRM_MAX_AGE
        )

    def unsubscribe(self, token: str) -> None:
        """One-click unsubscribe: the signed token is the only authorization (idempotent)."""
        unsubscribe_with_token(self.ledger, self.project.signing_keys(), self._list_id, token, now=self.clock())

    def suppress(self, email: str, reason: str) -> None:
        """A bounce or complaint the provider reported: the address is suppressed for good."""
        suppress(self.ledger, email, reason, now=self.clock())

    @property
    def _list_id(self) -> str:
        return self.project.config.email.list_id


def outcome_lines(changes: Sequence[Change]) -> list[str]:
    return [f"{c.outcome}  {c.address}" for c in changes]
