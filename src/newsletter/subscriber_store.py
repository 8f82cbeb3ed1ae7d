"""The subscriber store: subscribers, consent and the suppression list, in the ledger database.

A suppressed address (unsubscribed, bounced, complained) is never made active
again except by :meth:`SubscriberStore.reactivate`, the editor's explicit decision.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import cast

from .errors import SubscriberError
from .store import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    DEFAULT_LIST,
    PENDING,
    SUPPRESSED_STATUSES,
    TRANSITIONS,
    UNSUBSCRIBED,
    LedgerPart,
    address_hash,
    translating_errors,
)  # fmt: skip

_FLAG: dict[str, str] = {UNSUBSCRIBED: "unsubscribe", BOUNCED: "bounce", COMPLAINED: "complaint"}


@translating_errors
class SubscriberStore(LedgerPart):
    """Subscribers and suppressions (``ledger.subscribers``); each write one committed transaction."""

    def add_subscriber(
        self, email: str, *, source: str, now: datetime, status: str = ACTIVE, consent: dict | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        """Add an address; returns ``(id, outcome)`` with outcome ``added``, ``known`` or ``suppressed``.

        A suppressed address (unsubscribed, bounced, complained) is never re-activated
        or re-added here: only :meth:`reactivate` (an explicit editor command) lifts it.
        """
        stamp = now.isoformat()
        with self._write():
            row = self.subscriber_by_email(email)
            if row is not None:
                return row["id"], "suppressed" if row["status"] in SUPPRESSED_STATUSES else "known"
            if self.is_suppressed(email):
                return 0, "suppressed"
            table = self.db.table("subscribers")
            table.insert(
                {
                    "email": email,
                    "status": status,
                    "source": source,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "list": DEFAULT_LIST,
                    "consent_at": stamp,
                    "consent_source": source,
                    "confirmed_at": stamp if status == ACTIVE else None,
                    **(consent or {}),
                }  # fmt: skip
            )
            return cast(int, table.last_pk), "added"  # an insert always sets it

    def import_subscribers(
        self, rows: Sequence[tuple[str, str]], *, source: str, now: datetime,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, int]:  # fmt: skip
        """Import ``(address, status)`` pairs in slices of committed transactions.

        ``status`` is ``active`` or one of :data:`SUPPRESSED_STATUSES`.  Counts ``added``,
        ``duplicate`` (in the file or already known), ``suppressed`` (an active row whose
        address the ledger suppresses: skipped) and, per suppressed status, the rows
        recorded as suppressed: an unknown address gets a suppression entry (its hash),
        a known one leaves the list.  Nothing here ever makes anyone active again.
        Duplicate and suppression checks are set operations, one query per slice.
        ``progress(done, total)`` hears how many rows were written after each slice.
        """
        counts: dict[str, int] = {"added": 0, "duplicate": 0, "suppressed": 0}
        counts.update({status: 0 for status in SUPPRESSED_STATUSES})
        stamp = now.isoformat()
        seen: set[str] = set()
        read = 0

        def first_sightings() -> Iterator[tuple[str, str]]:
            nonlocal read
            for email, status in rows:
                read += 1
                if email in seen:
                    counts["duplicate"] += 1
                    continue
                seen.add(email)
                yield email, status

        for batch in self._ledger.slices(first_sightings()):
            with self._write():
                _import_slice(self.db.conn, batch, source, stamp, counts)
            if progress is not None:
                progress(read, len(rows))
        return counts

    def is_suppressed(self, email: str, list_name: str = DEFAULT_LIST) -> bool:
        return self.suppression_reason(email, list_name) is not None

    def suppression_reason(self, email: str, list_name: str = DEFAULT_LIST) -> str | None:
        row = self.db.execute(
            "SELECT reason FROM suppressions WHERE list = ? AND address_hash = ?", [list_name, address_hash(email)]
        ).fetchone()
        return row[0] if row else None

    def add_suppression(self, email: str, reason: str, *, now: datetime, list_name: str = DEFAULT_LIST) -> None:
        with self._write():
            self.db.execute(
                "INSERT OR REPLACE INTO suppressions (list, address_hash, reason, created_at) VALUES (?, ?, ?, ?)",
                [list_name, address_hash(email), reason, now.isoformat()],
            )

    def set_status(self, subscriber_id: int, status: str, *, now: datetime) -> bool:
        """Move a subscriber to a suppressed status (or back to ``pending``); records the suppression.

        Never to ``active``: :meth:`confirm` (a pending person who is not suppressed) and
        :meth:`reactivate` (the editor, naming what is overridden) are the only ways there.
        """
        if status == ACTIVE:
            raise ValueError("set_status cannot activate; use confirm() or reactivate()")
        stamp = now.isoformat()
        with self._write():
            row = self.subscriber(subscriber_id)
            if row is None or row["status"] == status:
                return False
            if status not in TRANSITIONS["subscriber"][row["status"]]:
                return False  # e.g. a suppressed person never becomes pending again
            changes = {"status": status, "updated_at": stamp}
            if status in SUPPRESSED_STATUSES:
                changes["unsubscribed_at"] = stamp
                self.db.execute(
                    "INSERT OR REPLACE INTO suppressions (list, address_hash, reason, created_at) VALUES (?, ?, ?, ?)",
                    [row["list"], address_hash(row["email"]), status, stamp],
                )
            elif row["status"] in SUPPRESSED_STATUSES:
                return False  # a suppressed person never becomes pending again either
            self.db.table("subscribers").update(subscriber_id, changes)
            return True

    def confirm(self, subscriber_id: int, *, now: datetime) -> bool:
        """A pending subscriber confirmed: ``active`` unless the address is suppressed meanwhile."""
        stamp = now.isoformat()
        with self._write():
            row = self.subscriber(subscriber_id)
            if row is None or row["status"] != PENDING or self.is_suppressed(row["email"], row["list"]):
                return False
            self.db.table("subscribers").update(
                subscriber_id,
                {"status": ACTIVE, "updated_at": stamp, "confirmed_at": stamp, "confirm_token_hash": None},
            )
            return True

    def reactivate(self, email: str, *, overrides: Iterable[str], now: datetime, source: str = "cli") -> str:
        """The editor's explicit decision: make a suppressed address active again.

        ``overrides`` names the suppressions the editor means to lift (``unsubscribed``,
        ``bounced``, ``complained``); any other one stands and raises :class:`SubscriberError`.
        Returns the status that was lifted (``active`` if there was none).
        """
        stamp = now.isoformat()
        allowed = set(overrides)
        with self._write():
            row = self.subscriber_by_email(email)
            list_name = row["list"] if row else DEFAULT_LIST
            reasons = {reason for reason in (self.suppression_reason(email, list_name),) if reason}
            if row is not None and row["status"] in SUPPRESSED_STATUSES:
                reasons.add(row["status"])
            refused = reasons - allowed
            if refused:
                flags = " ".join(f"--override-{_FLAG[reason]}" for reason in sorted(refused))
                raise SubscriberError(
                    f"{email} is {' and '.join(sorted(refused))}; it stays suppressed",
                    hint=f"to mail it again anyway, say so: newsletter subscribers reactivate {email} {flags}",
                )
            self.db.execute(
                "DELETE FROM suppressions WHERE list = ? AND address_hash = ?", [list_name, address_hash(email)]
            )
            changes = {"status": ACTIVE, "updated_at": stamp, "unsubscribed_at": None, "confirmed_at": stamp,
                       "confirm_token_hash": None}  # fmt: skip
            if row is None:
                self.db.table("subscribers").insert(
                    {
                        "email": email,
                        "source": source,
                        "created_at": stamp,
                        "list": DEFAULT_LIST,
                        "consent_at": stamp,
                        "consent_source": source,
                        **changes,
                    }  # fmt: skip
                )
            else:
                self.db.table("subscribers").update(row["id"], changes)
            return "/".join(sorted(reasons)) or ACTIVE

    def unsubscribe(self, subscriber_id: int, *, now: datetime) -> bool:
        """Mark a subscriber unsubscribed (and suppressed); returns whether anything changed (idempotent)."""
        with self._write():
            row = self.subscriber(subscriber_id)
            if row is None or row["status"] in SUPPRESSED_STATUSES:
                return False
            return self.set_status(subscriber_id, UNSUBSCRIBED, now=now)

    def update_subscriber(self, subscriber_id: int, changes: dict) -> None:
        with self._write():
            self.db.table("subscribers").update(subscriber_id, changes)

    def subscriber_by_email(self, email: str) -> dict | None:
        rows = list(self.db.table("subscribers").rows_where("email = ?", [email], limit=1))
        return rows[0] if rows else None

    def subscriber(self, subscriber_id: int) -> dict | None:
        rows = list(self.db.table("subscribers").rows_where("id = ?", [subscriber_id], limit=1))
        return rows[0] if rows else None

    def stream(self, status: str | None = None) -> Iterator[dict]:
        """Stream subscribers in id order, never the whole list in memory."""
        if status:
            yield from self.db.table("subscribers").rows_where("status = ?", [status], order_by="id")
        else:
            yield from self.db.table("subscribers").rows_where(order_by="id")

    def count_subscribers(self, status: str | None = None) -> int:
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return self.db.execute(f"SELECT count(*) FROM subscribers {where}", args).fetchone()[0]


def _import_slice(
    conn: sqlite3.Connection, batch: list[tuple[str, str]], source: str, stamp: str, counts: dict[str, int]
) -> None:
    emails = json.dumps([email for email, _ in batch])
    hashes = {email: address_hash(email) for email, _ in batch}
    known = {
        email: (subscriber_id, status)
        for subscriber_id, email, status in conn.execute(
            "SELECT id, email, status FROM subscribers WHERE email IN (SELECT value FROM json_each(?))", [emails]
        )
    }
    suppressed = {
        row[0]
        for row in conn.execute(
            "SELECT address_hash FROM suppressions WHERE list = ? AND address_hash IN (SELECT value FROM json_each(?))",
            [DEFAULT_LIST, json.dumps(list(hashes.values()))],
        )
    }
    new_rows, suppress_rows, leaving = [], [], []
    for email, status in batch:
        if status == ACTIVE:
            if email in known:
                counts["suppressed" if known[email][1] in SUPPRESSED_STATUSES else "duplicate"] += 1
            elif hashes[email] in suppressed:
                counts["suppressed"] += 1
            else:
                new_rows.append((email, ACTIVE, source, stamp, stamp, DEFAULT_LIST, stamp, source, stamp))
                counts["added"] += 1
            continue
        counts[status] += 1
        suppress_rows.append((DEFAULT_LIST, hashes[email], status, stamp))
        if email in known and known[email][1] not in SUPPRESSED_STATUSES:
            leaving.append((status, stamp, stamp, known[email][0]))
    conn.executemany(
        """INSERT INTO subscribers (email, status, source, created_at, updated_at, list, consent_at,
                                    consent_source, confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        new_rows,
    )
    conn.executemany(
        "INSERT OR IGNORE INTO suppressions (list, address_hash, reason, created_at) VALUES (?, ?, ?, ?)",
        suppress_rows,
    )
    conn.executemany("UPDATE subscribers SET status = ?, updated_at = ?, unsubscribed_at = ? WHERE id = ?", leaving)
