"""Local subscribers: address normalisation, CSV import/export, signed unsubscribe tokens.

Tokens (SEC-09): ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))`` where
the payload is ``[version, purpose, key id, list id, subscriber id, issued at]``.
No address in clear; scoped to one list; verified with ``hmac.compare_digest``;
retired keys still verify during a rotation; unsubscribe tokens never expire
(LAW-02: they must work months later).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Iterable, Sequence

from .config import Secret
from .errors import SubscriberError
from .store import Ledger
from .textutil import is_email_address

TOKEN_VERSION = 1
UNSUBSCRIBE = "unsubscribe"
EXPORT_FIELDS = ["email", "status", "source", "created_at", "updated_at", "unsubscribed_at"]


def normalize_address(raw: str) -> str:
    """Trim and lowercase an address, or raise :class:`SubscriberError` if it is not one."""
    address = raw.strip().lower()
    if not is_email_address(address):
        raise SubscriberError(f"{raw.strip()[:80]!r} is not a valid email address", hint="write it as name@example.org")
    return address


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    list_id: str
    subscriber_id: int
    issued_at: int


class InvalidToken(ValueError):
    """A token that was tampered with, signed by an unknown key, or for another list."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_id(key: Secret) -> str:
    return hashlib.sha256(key.reveal().encode("utf-8")).hexdigest()[:8]


def _mac(key: Secret, payload: bytes) -> bytes:
    return hmac.new(key.reveal().encode("utf-8"), payload, hashlib.sha256).digest()


def make_token(keys: Sequence[Secret], *, purpose: str, list_id: str, subscriber_id: int, issued_at: datetime) -> str:
    """Sign a token with the current key (the first of ``keys``)."""
    key = keys[0]
    payload = json.dumps(
        [TOKEN_VERSION, purpose, _key_id(key), list_id, subscriber_id, int(issued_at.timestamp())],
        separators=(",", ":"),
    ).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def verify_token(token: str, keys: Sequence[Secret], *, purpose: str, list_id: str) -> TokenClaims:
    """Check a token's signature, purpose and list; raise :class:`InvalidToken` without detail."""
    try:
        encoded_payload, encoded_mac = token.split(".")
        payload = _unb64(encoded_payload)
        mac = _unb64(encoded_mac)
        version, token_purpose, key_id, token_list, subscriber_id, issued_at = json.loads(payload)
    except (ValueError, TypeError):
        raise InvalidToken("invalid token") from None
    # One spelling per token: base64 ignores the last character's spare bits, we do not.
    if _b64(payload) != encoded_payload or _b64(mac) != encoded_mac:
        raise InvalidToken("invalid token")
    signer = next((k for k in keys if _key_id(k) == key_id), None)
    if signer is None or not hmac.compare_digest(_mac(signer, payload), mac):
        raise InvalidToken("invalid token")
    if version != TOKEN_VERSION or token_purpose != purpose or token_list != list_id:
        raise InvalidToken("invalid token")
    if not isinstance(subscriber_id, int) or not isinstance(issued_at, int):
        raise InvalidToken("invalid token")
    return TokenClaims(token_purpose, token_list, subscriber_id, issued_at)


def unsubscribe_url(base: str, token: str) -> str:
    """The personal one-click URL: the configured base followed by the token."""
    return base.rstrip("/") + "/" + token


@dataclass
class ImportReport:
    """What ``subscribers import`` did, line by line counted."""

    added: int = 0
    already: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def import_csv(ledger: Ledger, handle: IO[str], *, source: str, now: datetime) -> ImportReport:
    """Add every address of a CSV file (an ``email`` column, else the first column).

    Invalid lines are reported with their line number and skipped; the rest is imported.
    """
    report = ImportReport()
    reader = csv.reader(handle)
    column = 0
    for number, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip():
            continue
        if number == 1:
            lowered = [cell.strip().lower() for cell in row]
            if "email" in lowered:
                column = lowered.index("email")
                continue
        raw = row[column] if column < len(row) else ""
        try:
            address = normalize_address(raw)
        except SubscriberError:
            report.invalid.append((number, raw.strip()[:80]))
            continue
        existing = ledger.subscriber_by_email(address)
        if existing is not None:
            report.already += 1
            continue
        ledger.add_subscriber(address, source=source, now=now)
        report.added += 1
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
