"""Local subscribers: address normalisation, CSV import/export, double opt-in.

Signed tokens live in :mod:`newsletter.tokens`; their names are imported here as well so that
existing callers keep working.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Iterable, Sequence

from .config import Secret
from .errors import SubscriberError
from .store import ACTIVE, BOUNCED, COMPLAINED, PENDING, UNSUBSCRIBED, Ledger
from .textutil import is_email_address
# Re-exported: callers written before tokens.py import these from here.
from .tokens import (  # noqa: F401
    CONFIRM,
    UNSUBSCRIBE,
    InvalidToken,
    TokenClaims,
    make_token,
    unsubscribe_url,
    verify_token,
)

EXPORT_FIELDS = [
    "email", "status", "list", "source", "created_at", "updated_at", "unsubscribed_at",
    # the consent record (LAW-04)
    "consent_at", "consent_source", "consent_text_version", "consent_ip", "consent_user_agent", "confirmed_at",
]  # fmt: skip


def normalize_address(raw: str) -> str:
    """Trim and lowercase an address, or raise :class:`SubscriberError` if it is not one."""
    address = raw.strip().lower()
    if not is_email_address(address):
        raise SubscriberError(f"{raw.strip()[:80]!r} is not a valid email address", hint="write it as name@example.org")
    return address


@dataclass
class ImportReport:
    """What ``subscribers import`` did, counted per kind of line."""

    added: int = 0
    duplicate: int = 0
    suppressed: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def import_csv(ledger: Ledger, handle: IO[str], *, source: str, now: datetime) -> ImportReport:
    """Add every address of a CSV file (an ``email`` column, else the first column), in one transaction.

    Invalid lines are reported with their line number and skipped; duplicates (in the file or
    already subscribed) and suppressed addresses (unsubscribed, bounced, complained; LAW-07)
    are skipped and counted, never re-activated.
    """
    report = ImportReport()
    addresses: list[str] = []
    column = 0
    for number, row in enumerate(csv.reader(handle), start=1):
        if not row or not "".join(row).strip():
            continue
        if number == 1:
            lowered = [cell.strip().lower() for cell in row]
            if "email" in lowered:
                column = lowered.index("email")
                continue
        raw = row[column] if column < len(row) else ""
        try:
            addresses.append(normalize_address(raw))
        except SubscriberError:
            report.invalid.append((number, raw.strip()[:80]))
    counts = ledger.import_subscribers(addresses, source=source, now=now)
    report.added, report.duplicate, report.suppressed = counts["added"], counts["duplicate"], counts["suppressed"]
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
    keys: Sequence[Secret],
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

    A new or unsubscribed address becomes ``pending`` with its consent record (LAW-04) and
    gets a single-use token; an active, bounced or complained address gets nothing.  The
    caller answers the same whatever happened, so the form reveals nothing.
    """
    address = normalize_address(raw_address)
    consent = {
        "consent_at": now.isoformat(), "consent_source": source, "consent_text_version": consent_version,
        "consent_ip": ip[:64], "consent_user_agent": user_agent[:200],
    }  # fmt: skip
    row = ledger.subscriber_by_email(address)
    if row is None:
        if ledger.suppression_reason(address) in (BOUNCED, COMPLAINED):
            return None
        subscriber_id, _ = ledger.add_subscriber(
            address, source=source, now=now, status=PENDING, consent=consent, confirmed_request=True
        )
    elif row["status"] in (PENDING, UNSUBSCRIBED):
        subscriber_id = row["id"]
        ledger.update_subscriber(subscriber_id, {**consent, "status": PENDING, "updated_at": now.isoformat()})
    else:
        return None
    token = make_token(keys, purpose=CONFIRM, list_id=list_id, subscriber_id=subscriber_id, issued_at=now)
    ledger.update_subscriber(subscriber_id, {"confirm_token_hash": _token_hash(token)})
    return address, token


def confirm_subscription(
    ledger: Ledger, keys: Sequence[Secret], list_id: str, token: str, *, now: datetime, max_age: timedelta
) -> dict:
    """Confirm with a token: single-use, expiring; raises :class:`InvalidToken` without detail."""
    claims = verify_token(token, keys, purpose=CONFIRM, list_id=list_id)
    if now.timestamp() - claims.issued_at > max_age.total_seconds():
        raise InvalidToken("invalid token")
    row = ledger.subscriber(claims.subscriber_id)
    if row is None or not row.get("confirm_token_hash") or not hmac.compare_digest(
        row["confirm_token_hash"], _token_hash(token)
    ):
        raise InvalidToken("invalid token")
    ledger.set_status(row["id"], ACTIVE, now=now)
    return ledger.subscriber(row["id"])


def subscriber_for_token(ledger: Ledger, keys: Sequence[Secret], list_id: str, token: str, *, purpose: str) -> dict:
    """The subscriber a valid token names (reading only: GET pages change nothing)."""
    claims = verify_token(token, keys, purpose=purpose, list_id=list_id)
    row = ledger.subscriber(claims.subscriber_id)
    if row is None:
        raise InvalidToken("invalid token")
    return row


def unsubscribe_with_token(ledger: Ledger, keys: Sequence[Secret], list_id: str, token: str, *, now: datetime) -> dict:
    """Unsubscribe whoever the token names; idempotent; tokens never expire (LAW-02)."""
    row = subscriber_for_token(ledger, keys, list_id, token, purpose=UNSUBSCRIBE)
    ledger.unsubscribe(row["id"], now=now)
    return row


def suppress(ledger: Ledger, raw_address: str, reason: str, *, now: datetime) -> None:
    """A bounce or complaint: the address receives nothing any more, known or not (BULK-05, BULK-09)."""
    try:
        address = normalize_address(raw_address)
    except SubscriberError:
        return
    row = ledger.subscriber_by_email(address)
    if row is not None:
        ledger.set_status(row["id"], reason, now=now)
    else:
        ledger.add_suppression(address, reason, now=now)
