"""The SQLite ledger: subscribers, issues, chunks and per-recipient deliveries.

The only module that speaks SQL (through sqlite-utils).  The schema changes
only through migrations in :data:`MIGRATIONS`, never edited once shipped.

A delivery is written ``planned`` when the issue is planned, moved to
``in_flight`` (committed) *before* its provider call, and to ``accepted`` or
``rejected`` after it: a crash can leave ``in_flight`` rows, never a send
that the ledger does not know about.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import sqlite_utils
from sqlite_utils import Migrations

from .errors import LedgerBusy, LedgerCorrupt, LedgerError, SubscriberError

MIGRATIONS = Migrations("newsletter")


class DeliveryState(StrEnum):
    """Where one recipient's copy (a delivery) or a whole chunk stands.  Stored as these strings."""

    PLANNED = "planned"  # in the frozen audience, not yet handed to the provider
    IN_FLIGHT = "in_flight"  # committed before the provider call: it may have been delivered
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # the provider may have it; reconciled (or resolved) before any resend
    SKIPPED = "skipped"  # the person left before their chunk went out (deliveries only)


class IssueState(StrEnum):
    PLANNING = "planning"  # the audience is being frozen slice by slice (resumed by the next plan)
    SENDING = "sending"  # until every chunk is settled
    SENT = "sent"
    MARKED = "marked"  # recorded as sent without mailing anyone (mark-sent)


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


PLANNED, IN_FLIGHT, ACCEPTED, REJECTED, UNKNOWN, SKIPPED = DeliveryState
PLANNING, SENDING, SENT, MARKED = IssueState
PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = SubscriberStatus
SUPPRESSED_STATUSES = (UNSUBSCRIBED, BOUNCED, COMPLAINED)
UNSETTLED = (PLANNED, IN_FLIGHT, UNKNOWN)

# Every allowed move, in one place: ``{kind: {from: {to, ...}}}``.  Each update below names the
# states it leaves and is checked against this table; a row found in another state is a bug
# and fails loudly (:class:`LedgerStateError`) instead of being overwritten.
TRANSITIONS: dict[str, dict[str, set[str]]] = {
    "delivery": {
        PLANNED: {IN_FLIGHT, SKIPPED, ACCEPTED, REJECTED},
        IN_FLIGHT: {ACCEPTED, REJECTED, UNKNOWN, PLANNED},  # PLANNED: released (nothing went) or resolve --resend
        UNKNOWN: {ACCEPTED, REJECTED, PLANNED},  # reconciled, or the editor's resolve
        ACCEPTED: set(), REJECTED: set(), SKIPPED: set(),
    },
    "chunk": {
        PLANNED: {IN_FLIGHT, ACCEPTED, REJECTED, UNKNOWN},  # settled at once when nobody is left to send
        IN_FLIGHT: {IN_FLIGHT, ACCEPTED, REJECTED, UNKNOWN, PLANNED},
        UNKNOWN: {IN_FLIGHT, ACCEPTED, REJECTED, UNKNOWN, PLANNED},
        ACCEPTED: set(), REJECTED: set(),
    },
    "issue": {PLANNING: {SENDING}, SENDING: {SENT}, SENT: set(), MARKED: set()},
    "subscriber": {
        PENDING: {ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED},
        ACTIVE: {UNSUBSCRIBED, BOUNCED, COMPLAINED},
        # Back to ACTIVE only through Ledger.reactivate (the editor, naming the override).
        UNSUBSCRIBED: {BOUNCED, COMPLAINED, ACTIVE},
        BOUNCED: {UNSUBSCRIBED, COMPLAINED, ACTIVE},
        COMPLAINED: {UNSUBSCRIBED, BOUNCED, ACTIVE},
    },
}  # fmt: skip


class LedgerStateError(RuntimeError):
    """An update found a row in a state it may not leave that way: a bug, never overwritten."""


def _leaving(kind: str, sources: Iterable[str], target: str) -> list[str]:
    """The states an update leaves, checked against :data:`TRANSITIONS`; returns them as a list."""
    sources = list(sources)
    for source in sources:
        if target not in TRANSITIONS[kind][source]:
            raise LedgerStateError(f"a {kind} cannot go from {source} to {target}")
    return sources


def _expect_one(cursor: sqlite3.Cursor, what: str) -> None:
    if cursor.rowcount != 1:
        raise LedgerStateError(f"{what}: expected one row in an allowed state, found {cursor.rowcount}")
# Outgoing message states (m008).
OUTGOING_QUEUED, OUTGOING_SENT, OUTGOING_SKIPPED, OUTGOING_FAILED = "queued", "sent", "skipped", "failed"
DEFAULT_LIST = "default"
WEBHOOK_MEMORY = timedelta(days=30)  # how long a webhook call's one-time id is remembered

# Long operations (import, planning) write in slices of this many rows, each its own
# transaction, and pause between slices so that a waiting writer (a one-click unsubscribe)
# takes the lock within one slice: well under a second even on a loaded machine.
SLICE_ROWS = 5000
SLICE_PAUSE_SECONDS = 0.01
# While waiting for the write lock SQLite's own busy handler sleeps up to 100 ms between
# tries; a short handler in a loop of ours polls every few milliseconds instead, so the
# pause between slices is enough.
LOCK_POLL_MS = 5
DEFAULT_WRITE_WAIT_MS = 10_000


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["subscribers"].create(
        {
            "id": int,
            "email": str,
            "status": str,
            "source": str,
            "created_at": str,
            "updated_at": str,
            "unsubscribed_at": str,
        },
        pk="id",
        not_null={"email", "status", "created_at", "updated_at"},
    )
    db["subscribers"].create_index(["email"], unique=True)
    db["subscribers"].create_index(["status", "id"])
    db["issues"].create(
        {
            "id": int,
            "key": str,
            "post_id": str,
            "slug": str,
            "content_hash": str,
            "subject": str,
            "provider": str,
            "status": str,
            "recipients": int,
            "created_at": str,
            "sent_at": str,
        },
        pk="id",
        not_null={"key", "post_id", "slug", "content_hash", "subject", "provider", "status", "created_at"},
    )
    db["issues"].create_index(["key"], unique=True)
    db["issues"].create_index(["post_id"])
    db["chunks"].create(
        {
            "issue_id": int,
            "number": int,
            "state": str,
            "idempotency_key": str,
            "attempts": int,
            "updated_at": str,
        },
        pk=("issue_id", "number"),
        foreign_keys=[("issue_id", "issues", "id")],
        not_null={"state", "idempotency_key"},
        defaults={"attempts": 0},
    )
    db["deliveries"].create(
        {
            "id": int,
            "issue_id": int,
            "chunk": int,
            "subscriber_id": int,
            "email": str,
            "state": str,
            "provider_message_id": str,
            "error": str,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[("issue_id", "issues", "id"), ("subscriber_id", "subscribers", "id")],
        not_null={"issue_id", "chunk", "subscriber_id", "email", "state"},
    )
    db["deliveries"].create_index(["issue_id", "subscriber_id"], unique=True)
    db["deliveries"].create_index(["issue_id", "chunk", "state"])


@MIGRATIONS()
def m002_chunk_provider_reference(db: sqlite_utils.Database) -> None:
    """What the provider calls a whole chunk (Buttondown's email id), for reconciliation."""
    db["chunks"].add_column("provider_reference", str)


@MIGRATIONS()
def m003_issue_kind(db: sqlite_utils.Database) -> None:
    """``issue`` or ``correction`` (an explicit re-send of an edited post)."""
    db["issues"].add_column("kind", str, not_null_default="issue")


@MIGRATIONS()
def m004_consent_and_suppression(db: sqlite_utils.Database) -> None:
    """Consent records (LAW-04), double opt-in, lists, and a suppression list of hashes (LAW-07)."""
    subscribers = db["subscribers"]
    subscribers.add_column("list", str, not_null_default=DEFAULT_LIST)
    for column in ("consent_at", "consent_source", "consent_text_version", "consent_ip", "consent_user_agent",
                   "confirmed_at", "confirm_token_hash"):  # fmt: skip
        subscribers.add_column(column, str)
    db.execute("UPDATE subscribers SET consent_at = created_at, consent_source = source WHERE consent_at IS NULL")
    db["suppressions"].create(
        {"list": str, "address_hash": str, "reason": str, "created_at": str},
        pk=("list", "address_hash"),
        not_null={"reason", "created_at"},
    )
    # Registered here, on the connection the migration runs on, so that the migration does
    # not depend on whoever opened the database having registered it (same effect as before).
    db.conn.create_function("sha256_hex", 1, address_hash, deterministic=True)
    db.execute(
        "INSERT OR IGNORE INTO suppressions (list, address_hash, reason, created_at) "
        "SELECT ?, sha256_hex(email), status, updated_at FROM subscribers WHERE status = ?",
        [DEFAULT_LIST, UNSUBSCRIBED],
    )


_STATE_COLUMNS = {
    "subscribers": ("status", SubscriberStatus),
    "issues": ("status", IssueState),
    "chunks": ("state", [state for state in DeliveryState if state != SKIPPED]),
    "deliveries": ("state", DeliveryState),
}


@MIGRATIONS(transactional=False)
def m005_state_checks(db: sqlite_utils.Database) -> None:
    """CHECK constraints on every state column, so no write can store a state the code does not know.

    SQLite cannot add a CHECK to an existing table, so each table is rebuilt the documented
    way (a new table with the constraint, copy, drop, rename, indexes again) in one
    transaction with foreign keys off, then checked with ``foreign_key_check``.  The values
    are those of the enums above, frozen here as text so later enum changes need a migration.
    """
    conn = db.conn
    conn.execute("PRAGMA foreign_keys = OFF")  # no effect inside a transaction: set before BEGIN
    try:
        conn.execute("BEGIN IMMEDIATE")
        for table, (column, states) in _STATE_COLUMNS.items():
            create = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()[0]
            if "CHECK" in create:
                continue  # already rebuilt (a run interrupted after its commit)
            indexes = [row[0] for row in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table]
            )]  # fmt: skip
            allowed = ", ".join(f"'{str(state)}'" for state in states)
            head, _, _ = create.rpartition(")")
            body = head.split("(", 1)[1]
            conn.execute(f"CREATE TABLE [{table}_checked] ({body},\n   CHECK ([{column}] IN ({allowed}))\n)")
            conn.execute(f"INSERT INTO [{table}_checked] SELECT * FROM [{table}]")
            conn.execute(f"DROP TABLE [{table}]")
            conn.execute(f"ALTER TABLE [{table}_checked] RENAME TO [{table}]")
            for index in indexes:
                conn.execute(index)
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise sqlite3.IntegrityError(f"foreign keys broken by the rebuild: {problems[:3]}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


@MIGRATIONS()
def m008_outgoing_messages(db: sqlite_utils.Database) -> None:
    """Subscription requests and the mail they cause, sent later by a worker, never in the request.

    ``state``: ``queued`` until handled, then ``sent`` (the provider took it), ``skipped``
    (nothing was due: the address was already active or suppressed) or ``failed`` (refused for
    good).  ``next_attempt_at`` spaces retries (backoff); ``claimed_until`` lets one worker at a
    time handle a row and frees it again if that worker dies.
    """
    columns = {
        "id": int, "kind": str, "email": str, "list": str, "source": str, "client_ip": str,
        "user_agent": str, "requested_at": str, "state": str, "attempts": int, "next_attempt_at": str,
        "claimed_until": str, "provider_reference": str, "last_error": str, "updated_at": str,
    }  # fmt: skip
    db["outgoing_messages"].create(
        columns,
        pk="id",
        not_null={"kind", "email", "requested_at", "state", "next_attempt_at", "updated_at"},
        defaults={"attempts": 0},
    )
    db["outgoing_messages"].create_index(["state", "next_attempt_at"])


# Keep this migration last: other migrations are numbered before it.
@MIGRATIONS()
def m009_webhook_replay(db: sqlite_utils.Database) -> None:
    """The one-time id of every webhook call applied, so a captured call cannot be replayed."""
    db["webhook_calls"].create(
        {"provider": str, "replay_id": str, "body_sha256": str, "received_at": str},
        pk=("provider", "replay_id"),
        not_null={"body_sha256", "received_at"},
    )
    db["webhook_calls"].create_index(["received_at"])


def address_hash(email: str) -> str:
    """What the suppression list keeps of an address: its SHA-256, never the address."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssueRecord:
    id: int
    key: str
    post_id: str
    slug: str
    content_hash: str
    subject: str
    provider: str
    status: str
    recipients: int | None
    created_at: str
    sent_at: str | None
    kind: str = "issue"


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    subscriber_id: int
    email: str
    state: str


class Ledger:
    """The ledger database, migrated on open.

    Every write is one committed transaction that takes the write lock up front
    (``BEGIN IMMEDIATE``), waiting at most ``busy_timeout_ms`` for another process
    to release it, then raising :class:`LedgerBusy`.  A deferred transaction that
    read first could not wait: SQLite refuses its upgrade to a writer at once.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = DEFAULT_WRITE_WAIT_MS) -> None:
        self.path = Path(path)
        self.wait_ms = int(busy_timeout_ms)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite_utils.Database(self.path)
            self.db.execute(f"PRAGMA busy_timeout = {self.wait_ms}")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.enable_wal()
            if MIGRATIONS.pending(self.db):
                MIGRATIONS.apply(self.db)
        except sqlite3.Error as exc:
            raise _ledger_error(exc, self.path, action="open") from None
        except OSError as exc:
            raise LedgerError(f"cannot open the ledger ({exc})", where=str(path), hint="check the path and its permissions")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One committed transaction (a savepoint when nested); SQLite errors become :class:`LedgerError`."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        try:
            self._begin_immediate()
        except sqlite3.Error as exc:
            raise _ledger_error(exc, self.path) from None
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _ledger_error(exc, self.path) from exc
            raise

    def _begin_immediate(self) -> None:
        """Take the write lock, polling every few ms, for at most the bounded wait."""
        conn = self.db.conn
        deadline = time.monotonic() + self.wait_ms / 1000
        conn.execute(f"PRAGMA busy_timeout = {LOCK_POLL_MS}")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self.wait_ms}")

    def _slices(self, rows: Iterable, size: int = SLICE_ROWS) -> Iterator[list]:
        """``rows`` in lists of ``size``, pausing between them so waiting writers get the lock."""
        batch: list = []
        first = True
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                if not first:
                    time.sleep(SLICE_PAUSE_SECONDS)
                first = False
                yield batch
                batch = []
        if batch:
            if not first:
                time.sleep(SLICE_PAUSE_SECONDS)
            yield batch

    # -- subscribers -------------------------------------------------------------------------

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
            table = self.db["subscribers"]
            table.insert(
                {
                    "email": email, "status": status, "source": source, "created_at": stamp, "updated_at": stamp,
                    "list": DEFAULT_LIST, "consent_at": stamp, "consent_source": source,
                    "confirmed_at": stamp if status == ACTIVE else None, **(consent or {}),
                }  # fmt: skip
            )
            return table.last_pk, "added"

    def import_subscribers(
        self, rows: Iterable[tuple[str, str]], *, source: str, now: datetime
    ) -> dict[str, int]:
        """Import ``(address, status)`` pairs in slices of committed transactions.

        ``status`` is ``active`` or one of :data:`SUPPRESSED_STATUSES`.  Counts ``added``,
        ``duplicate`` (in the file or already known), ``suppressed`` (an active row whose
        address the ledger suppresses: skipped) and, per suppressed status, the rows
        recorded as suppressed: an unknown address gets a suppression entry (its hash),
        a known one leaves the list.  Nothing here ever makes anyone active again.
        Duplicate and suppression checks are set operations, one query per slice.
        """
        counts = {"added": 0, "duplicate": 0, "suppressed": 0, **{status: 0 for status in SUPPRESSED_STATUSES}}
        stamp = now.isoformat()
        seen: set[str] = set()

        def first_sightings() -> Iterator[tuple[str, str]]:
            for email, status in rows:
                if email in seen:
                    counts["duplicate"] += 1
                    continue
                seen.add(email)
                yield email, status

        for batch in self._slices(first_sightings()):
            with self._write():
                self._import_slice(batch, source, stamp, counts)
        return counts

    def _import_slice(self, batch: list[tuple[str, str]], source: str, stamp: str, counts: dict[str, int]) -> None:
        emails = json.dumps([email for email, _ in batch])
        hashes = {email: address_hash(email) for email, _ in batch}
        known = {
            email: (subscriber_id, status)
            for subscriber_id, email, status in self.db.execute(
                "SELECT id, email, status FROM subscribers WHERE email IN (SELECT value FROM json_each(?))", [emails]
            )
        }
        suppressed = {
            row[0]
            for row in self.db.execute(
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
        conn = self.db.conn
        conn.executemany(
            """INSERT INTO subscribers (email, status, source, created_at, updated_at, list, consent_at,
                                        consent_source, confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            new_rows,
        )
        conn.executemany(
            "INSERT OR IGNORE INTO suppressions (list, address_hash, reason, created_at) VALUES (?, ?, ?, ?)",
            suppress_rows,
        )
        conn.executemany(
            "UPDATE subscribers SET status = ?, updated_at = ?, unsubscribed_at = ? WHERE id = ?", leaving
        )

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
            self.db["subscribers"].update(subscriber_id, changes)
            return True

    def confirm(self, subscriber_id: int, *, now: datetime) -> bool:
        """A pending subscriber confirmed: ``active`` unless the address is suppressed meanwhile."""
        stamp = now.isoformat()
        with self._write():
            row = self.subscriber(subscriber_id)
            if row is None or row["status"] != PENDING or self.is_suppressed(row["email"], row["list"]):
                return False
            self.db["subscribers"].update(
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
                self.db["subscribers"].insert(
                    {"email": email, "source": source, "created_at": stamp, "list": DEFAULT_LIST, "consent_at": stamp,
                     "consent_source": source, **changes}  # fmt: skip
                )
            else:
                self.db["subscribers"].update(row["id"], changes)
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
            self.db["subscribers"].update(subscriber_id, changes)

    def subscriber_by_email(self, email: str) -> dict | None:
        rows = list(self.db["subscribers"].rows_where("email = ?", [email], limit=1))
        return rows[0] if rows else None

    def subscriber(self, subscriber_id: int) -> dict | None:
        rows = list(self.db["subscribers"].rows_where("id = ?", [subscriber_id], limit=1))
        return rows[0] if rows else None

    def subscribers(self, status: str | None = None) -> Iterator[dict]:
        """Stream subscribers in id order, never the whole list in memory."""
        if status:
            yield from self.db["subscribers"].rows_where("status = ?", [status], order_by="id")
        else:
            yield from self.db["subscribers"].rows_where(order_by="id")

    def count_subscribers(self, status: str | None = None) -> int:
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return self.db.execute(f"SELECT count(*) FROM subscribers {where}", args).fetchone()[0]

    # -- issues ------------------------------------------------------------------------------

    def issues_for_post(self, post_id: str) -> list[IssueRecord]:
        rows = self.db["issues"].rows_where("post_id = ?", [post_id], order_by="id")
        return [IssueRecord(**row) for row in rows]

    def issues_with_slug_or_content(self, slug: str, content_hash: str) -> list[IssueRecord]:
        """Issues recorded under ``slug`` or with ``content_hash``, whatever their post id, oldest first."""
        rows = self.db["issues"].rows_where("slug = ? OR content_hash = ?", [slug, content_hash], order_by="id")
        return [IssueRecord(**row) for row in rows]

    def issue_by_key(self, key: str) -> IssueRecord | None:
        rows = list(self.db["issues"].rows_where("key = ?", [key], limit=1))
        return IssueRecord(**rows[0]) if rows else None

    def unfinished_issues(self) -> list[IssueRecord]:
        """Issues whose send started and did not finish, oldest first: they are resumed first."""
        return [IssueRecord(**row) for row in self.db["issues"].rows_where("status = ?", [SENDING], order_by="id")]

    def count_audience_of(self, issue_id: int) -> int:
        """How many people received ``issue_id`` and are still subscribed (a correction's audience)."""
        return self.db.execute(
            """SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.issue_id = ? AND d.state = ? AND s.status = ?""",
            [issue_id, ACCEPTED, ACTIVE],
        ).fetchone()[0]

    def resolve(self, issue_id: int, *, assume_sent: bool, now: datetime) -> int:
        """The editor's decision on chunks nothing could reconcile; returns the deliveries changed.

        ``assume_sent``: they count as delivered (no one gets a second copy, some may get none).
        Otherwise they go back to ``planned`` and the next send delivers them (some may get two).
        """
        stamp = now.isoformat()
        state, note = (ACCEPTED, "assumed delivered (newsletter resolve)") if assume_sent else (PLANNED, None)
        _leaving("delivery", [IN_FLIGHT, UNKNOWN], state)
        _leaving("chunk", [IN_FLIGHT, UNKNOWN], state)
        with self._write():
            cursor = self.db.execute(
                "UPDATE deliveries SET state = ?, error = ?, updated_at = ? WHERE issue_id = ? AND state IN (?, ?)",
                [state, note, stamp, issue_id, IN_FLIGHT, UNKNOWN],
            )
            changed = cursor.rowcount
            self.db.execute(
                """UPDATE chunks SET state = CASE
                       WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = chunks.issue_id
                                    AND d.chunk = chunks.number AND d.state = ?) THEN ?
                       WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = chunks.issue_id
                                        AND d.chunk = chunks.number) THEN ?
                       ELSE ? END,
                   updated_at = ?
                   WHERE issue_id = ? AND state IN (?, ?)""",
                [PLANNED, PLANNED, state, ACCEPTED, stamp, issue_id, IN_FLIGHT, UNKNOWN],
            )
        return changed

    def all_issues(self) -> list[IssueRecord]:
        return [IssueRecord(**row) for row in self.db["issues"].rows_where(order_by="id")]

    def plan_issue(
        self, *, key: str, post_id: str, slug: str, content_hash: str, subject: str, provider: str,
        chunk_size: int, now: datetime, local_audience: bool = True, kind: str = "issue",
        audience_of: int | None = None,
    ) -> IssueRecord:  # fmt: skip
        """Record an issue and freeze its audience: one ``planned`` delivery per active subscriber.

        Recipients are numbered into chunks in subscriber-id order, so the plan
        (and every idempotency key derived from it) is the same on a replay.
        Done in SQL, in slices of committed transactions (the issue stays
        ``planning`` until the last one, and a plan interrupted there is resumed
        by the next call with the same key): the list is never loaded into
        memory and other writers get the lock between slices.  When the provider
        keeps the audience (``local_audience=False``) the issue is one chunk
        with no local deliveries.  A correction (``audience_of``) goes to the
        people who received that issue and are still subscribed.
        """
        stamp = now.isoformat()
        with self._write():
            table = self.db["issues"]
            existing = self.issue_by_key(key)
            if existing is not None and existing.status == PLANNING:
                issue_id = existing.id
            else:
                table.insert(
                    {
                        "key": key, "post_id": post_id, "slug": slug, "content_hash": content_hash, "subject": subject,
                        "provider": provider, "status": PLANNING, "created_at": stamp, "kind": kind,
                    }  # fmt: skip
                )
                issue_id = table.last_pk
            if not local_audience:
                self.db.execute(
                    "INSERT OR IGNORE INTO chunks (issue_id, number, state, idempotency_key, attempts, updated_at)"
                    " VALUES (?, 0, ?, ?, 0, ?)",
                    [issue_id, PLANNED, f"{key}:0", stamp],
                )
                (source,) = _leaving("issue", [PLANNING], SENDING)
                _expect_one(
                    self.db.execute("UPDATE issues SET status = ? WHERE id = ? AND status = ?", [SENDING, issue_id, source]),
                    f"plan issue {issue_id}",
                )
                return self.issue_by_key(key)
            last_id, planned = self.db.execute(
                "SELECT coalesce(max(subscriber_id), 0), count(*) FROM deliveries WHERE issue_id = ?", [issue_id]
            ).fetchone()
            # The audience is who is active now: later subscribers are not part of this issue.
            through = self.db.execute("SELECT coalesce(max(id), 0) FROM subscribers").fetchone()[0]
        if audience_of is None:
            audience = "SELECT id, email FROM subscribers WHERE status = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?"
            arguments: list = [ACTIVE]
        else:
            audience = """SELECT s.id, s.email FROM subscribers s JOIN deliveries d ON d.subscriber_id = s.id
                          WHERE s.status = ? AND d.issue_id = ? AND d.state = ? AND s.id > ? AND s.id <= ?
                          ORDER BY s.id LIMIT ?"""
            arguments = [ACTIVE, audience_of, ACCEPTED]
        first_slice = True
        while True:
            if not first_slice:
                time.sleep(SLICE_PAUSE_SECONDS)  # let a waiting writer in between slices
            first_slice = False
            with self._write():
                added = self.db.execute(
                    f"""INSERT INTO deliveries (issue_id, chunk, subscriber_id, email, state, updated_at)
                        SELECT ?, (? + ROW_NUMBER() OVER (ORDER BY id) - 1) / ?, id, email, ?, ?
                        FROM ({audience}) ORDER BY id""",
                    [issue_id, planned, chunk_size, PLANNED, stamp, *arguments, last_id, through, SLICE_ROWS],
                ).rowcount
                if added:
                    self.db.execute(
                        """INSERT OR IGNORE INTO chunks (issue_id, number, state, idempotency_key, attempts, updated_at)
                           SELECT DISTINCT issue_id, chunk, ?, ? || ':' || chunk, 0, ? FROM deliveries
                           WHERE issue_id = ? AND chunk >= ?""",
                        [PLANNED, key, stamp, issue_id, planned // chunk_size],
                    )
                    planned += added
                    last_id = self.db.execute(
                        "SELECT max(subscriber_id) FROM deliveries WHERE issue_id = ?", [issue_id]
                    ).fetchone()[0]
                if added < SLICE_ROWS:
                    (source,) = _leaving("issue", [PLANNING], SENDING)
                    _expect_one(
                        self.db.execute(
                            "UPDATE issues SET status = ?, recipients = ? WHERE id = ? AND status = ?",
                            [SENDING, planned, issue_id, source],
                        ),
                        f"plan issue {issue_id}",
                    )
                    break
        return self.issue_by_key(key)

    def mark_issue(self, *, key: str, post_id: str, slug: str, content_hash: str, subject: str, now: datetime) -> None:
        """Record a post as sent without mailing anyone (``newsletter mark-sent``)."""
        stamp = now.isoformat()
        with self._write():
            self.db["issues"].insert(
                {
                    "key": key, "post_id": post_id, "slug": slug, "content_hash": content_hash, "subject": subject,
                    "provider": "mark-sent", "status": MARKED, "recipients": 0, "created_at": stamp, "sent_at": stamp,
                }  # fmt: skip
            )

    def open_chunks(self, issue_id: int) -> list[tuple[int, str]]:
        """``(number, idempotency key)`` of each chunk not yet settled, in order."""
        rows = self.db.execute(
            "SELECT number, idempotency_key FROM chunks WHERE issue_id = ? AND state IN (?, ?, ?) ORDER BY number",
            [issue_id, PLANNED, IN_FLIGHT, UNKNOWN],
        ).fetchall()
        return [(number, key) for number, key in rows]

    def chunk_deliveries(self, issue_id: int, chunk: int) -> list[DeliveryRow]:
        """The unsettled deliveries of a chunk."""
        rows = self.db.execute(
            """SELECT id, subscriber_id, email, state FROM deliveries
               WHERE issue_id = ? AND chunk = ? AND state IN (?, ?, ?) ORDER BY subscriber_id""",
            [issue_id, chunk, PLANNED, IN_FLIGHT, UNKNOWN],
        ).fetchall()
        return [DeliveryRow(*row) for row in rows]

    def skip_unsubscribed(self, issue_id: int, chunk: int, *, now: datetime) -> int:
        """Planned deliveries whose subscriber left since planning are skipped, never sent."""
        with self._write():
            cursor = self.db.execute(
                """UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?
                   AND subscriber_id IN (SELECT id FROM subscribers WHERE status != ?)""",
                [SKIPPED, now.isoformat(), issue_id, chunk, PLANNED, ACTIVE],
            )
            return cursor.rowcount

    def start_chunk(self, issue_id: int, chunk: int, *, now: datetime) -> set[int]:
        """Commit ``in_flight`` for a chunk and its deliveries *before* the provider is called.

        In the same transaction, planned deliveries whose subscriber is no longer active are
        skipped: an unsubscribe committed before this call is never sent.  Returns the
        subscriber ids skipped here, which the caller must leave out of the request.
        """
        stamp = now.isoformat()
        with self._write():
            left = {
                row[0]
                for row in self.db.execute(
                    """SELECT d.subscriber_id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                       WHERE d.issue_id = ? AND d.chunk = ? AND d.state = ? AND s.status != ?""",
                    [issue_id, chunk, PLANNED, ACTIVE],
                )
            }
            if left:
                (source,) = _leaving("delivery", [PLANNED], SKIPPED)
                self.db.execute(
                    f"""UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?
                        AND subscriber_id IN ({",".join("?" * len(left))})""",
                    [SKIPPED, stamp, issue_id, chunk, source, *sorted(left)],
                )
            sources = _leaving("chunk", UNSETTLED, IN_FLIGHT)
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, attempts = attempts + 1, updated_at = ? WHERE issue_id = ? AND number = ?"
                    " AND state IN (?, ?, ?)",
                    [IN_FLIGHT, stamp, issue_id, chunk, *sources],
                ),
                f"start chunk {chunk} of issue {issue_id}",
            )
            (source,) = _leaving("delivery", [PLANNED], IN_FLIGHT)
            self.db.execute(
                "UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?",
                [IN_FLIGHT, stamp, issue_id, chunk, source],
            )
        return left

    def settle_chunk(
        self, issue_id: int, chunk: int, outcomes: Sequence[tuple[int, str, str | None, str | None]], *, now: datetime
    ) -> None:
        """Record ``(delivery id, state, provider message id, error)`` for each delivery, then the chunk."""
        stamp = now.isoformat()
        with self._write():
            for target in {state for _, state, _, _ in outcomes}:
                _leaving("delivery", UNSETTLED, target)
            settled = self.db.conn.executemany(
                "UPDATE deliveries SET state = ?, provider_message_id = ?, error = ?, updated_at = ? WHERE id = ?"
                " AND issue_id = ? AND chunk = ? AND state IN (?, ?, ?)",
                [(state, message_id, error, stamp, delivery_id, issue_id, chunk, *UNSETTLED)
                 for delivery_id, state, message_id, error in outcomes],
            ).rowcount  # fmt: skip
            if settled != len(outcomes):
                raise LedgerStateError(
                    f"settle chunk {chunk} of issue {issue_id}: {len(outcomes) - settled} deliveries were already settled"
                )
            left = self.db.execute(
                "SELECT count(*) FROM deliveries WHERE issue_id = ? AND chunk = ? AND state IN (?, ?, ?)",
                [issue_id, chunk, PLANNED, IN_FLIGHT, UNKNOWN],
            ).fetchone()[0]
            accepted = self.db.execute(
                "SELECT count(*) FROM deliveries WHERE issue_id = ? AND chunk = ? AND state = ?",
                [issue_id, chunk, ACCEPTED],
            ).fetchone()[0]
            state = UNKNOWN if left else (ACCEPTED if accepted else REJECTED)
            sources = _leaving("chunk", UNSETTLED, state)
            # Settling again to the same state is idempotent (reconciliation may have settled it).
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, updated_at = ? WHERE issue_id = ? AND number = ?"
                    " AND (state IN (?, ?, ?) OR state = ?)",
                    [state, stamp, issue_id, chunk, *sources, state],
                ),
                f"settle chunk {chunk} of issue {issue_id}",
            )

    def accept_chunk(self, issue_id: int, chunk: int, reference: str, *, now: datetime) -> None:
        """A whole chunk the provider took at once (audience family), with its reference."""
        (source,) = _leaving("chunk", [IN_FLIGHT], ACCEPTED)
        with self._write():
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, provider_reference = ?, updated_at = ? WHERE issue_id = ? AND number = ?"
                    " AND state = ?",
                    [ACCEPTED, reference, now.isoformat(), issue_id, chunk, source],
                ),
                f"accept chunk {chunk} of issue {issue_id}",
            )

    def release_chunk(self, issue_id: int, chunk: int, *, now: datetime) -> None:
        """Back to ``planned``: the call failed in a way that proves nothing was delivered."""
        self._set_chunk(issue_id, chunk, PLANNED, now, leaving=[IN_FLIGHT])

    def mark_chunk_unknown(self, issue_id: int, chunk: int, *, now: datetime) -> None:
        """``unknown``: the provider may have the chunk; it must be reconciled before any resend."""
        self._set_chunk(issue_id, chunk, UNKNOWN, now, leaving=UNSETTLED)

    def _set_chunk(self, issue_id: int, chunk: int, state: str, now: datetime, *, leaving: Sequence[str]) -> None:
        stamp = now.isoformat()
        sources = _leaving("chunk", leaving, state)
        (delivery_source,) = _leaving("delivery", [IN_FLIGHT], state)
        with self._write():
            _expect_one(
                self.db.execute(
                    f"UPDATE chunks SET state = ?, updated_at = ? WHERE issue_id = ? AND number = ?"
                    f" AND state IN ({','.join('?' * len(sources))})",
                    [state, stamp, issue_id, chunk, *sources],
                ),
                f"move chunk {chunk} of issue {issue_id} to {state}",
            )
            self.db.execute(
                "UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?",
                [state, stamp, issue_id, chunk, delivery_source],
            )

    def finish_issue(self, issue_id: int, *, now: datetime) -> bool:
        """Mark the issue sent once no chunk is left open; returns whether it is finished."""
        with self._write():
            open_left = self.db.execute(
                "SELECT count(*) FROM chunks WHERE issue_id = ? AND state IN (?, ?, ?)",
                [issue_id, PLANNED, IN_FLIGHT, UNKNOWN],
            ).fetchone()[0]
            if open_left:
                return False
            (source,) = _leaving("issue", [SENDING], SENT)
            _expect_one(
                self.db.execute(
                    "UPDATE issues SET status = ?, sent_at = ? WHERE id = ? AND status = ?",
                    [SENT, now.isoformat(), issue_id, source],
                ),
                f"finish issue {issue_id}",
            )
            return True

    def delivery_counts(self, issue_id: int) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT state, count(*) FROM deliveries WHERE issue_id = ? GROUP BY state", [issue_id]
        ).fetchall()
        return dict(rows)

    def deliveries(self, issue_id: int) -> list[dict]:
        return list(self.db["deliveries"].rows_where("issue_id = ?", [issue_id], order_by="id"))

    def backup(self, target: Path) -> int:
        """Write a consistent copy of the ledger to ``target`` while others read and write it.

        SQLite's online backup API copies one snapshot in a single step (a WAL reader:
        writers are never blocked); the copy is checked, synced, then renamed into
        place, so ``target`` is either absent or a whole, valid database.  Returns its size.
        """
        target = Path(target)
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.unlink(missing_ok=True)
            try:
                copy = sqlite3.connect(partial)
                copy.execute("PRAGMA user_version")  # opens the file now: a bad place fails here
            except sqlite3.Error:
                raise OSError(f"cannot create a file in {target.parent}") from None
            try:
                self.db.conn.backup(copy)
                # The copy stands alone: no -wal file next to it is needed to read it.
                copy.execute("PRAGMA journal_mode = DELETE")
                verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
            if verdict != "ok":
                raise LedgerError(f"the backup failed its check ({verdict})", where=str(target),
                                  hint="the ledger itself may be damaged; run 'sqlite3 <ledger> \'PRAGMA integrity_check\''")
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        except sqlite3.Error as exc:
            partial.unlink(missing_ok=True)
            raise _ledger_error(exc, self.path, action="back up") from None
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise LedgerError(f"cannot write the backup ({exc.strerror or exc})", where=str(target),
                              hint="choose a path in a writable folder") from None
        return target.stat().st_size

    # -- webhook replay guard ---------------------------------------------------------------------

    def remember_webhook(self, provider: str, replay_id: str, body_sha256: str, *, now: datetime) -> str:
        """Record a webhook call's one-time id: ``"new"``, ``"repeat"`` (same body) or ``"conflict"``."""
        with self._write():
            row = self.db.execute(
                "SELECT body_sha256 FROM webhook_calls WHERE provider = ? AND replay_id = ?", [provider, replay_id]
            ).fetchone()
            if row:
                return "repeat" if row[0] == body_sha256 else "conflict"
            # Older ids cannot come back: signed timestamps that old are refused before this point.
            self.db.execute("DELETE FROM webhook_calls WHERE received_at < ?", [(now - WEBHOOK_MEMORY).isoformat()])
            self.db.execute(
                "INSERT INTO webhook_calls (provider, replay_id, body_sha256, received_at) VALUES (?, ?, ?, ?)",
                [provider, replay_id, body_sha256, now.isoformat()],
            )
        return "new"

    def forget_webhook(self, provider: str, replay_id: str) -> None:
        """Undo :meth:`remember_webhook` when applying the call failed, so the provider's retry applies it."""
        with self._write():
            self.db.execute("DELETE FROM webhook_calls WHERE provider = ? AND replay_id = ?", [provider, replay_id])

    # -- outgoing messages (subscription requests and their confirmation mail) --------------

    def queue_outgoing(
        self, kind: str, email: str, *, now: datetime, source: str, client_ip: str = "", user_agent: str = ""
    ) -> int:
        """Record a request to handle later: one INSERT, whatever the address's state."""
        stamp = now.isoformat()
        with self._write():
            # A write as the transaction's first statement: SQLite then waits for a busy lock
            # (busy_timeout) instead of failing a read-to-write upgrade at once.
            cursor = self.db.execute(
                """INSERT INTO outgoing_messages (kind, email, list, source, client_ip, user_agent, requested_at,
                       state, attempts, next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)""",
                [kind, email, DEFAULT_LIST, source, client_ip[:64], user_agent[:200], stamp, OUTGOING_QUEUED,
                 stamp, stamp],
            )  # fmt: skip
            return cursor.lastrowid

    def due_outgoing(self, now: datetime, *, limit: int = 100, ignore_backoff: bool = False) -> list[dict]:
        """Queued rows whose retry time has come and that no live worker holds, oldest first."""
        stamp = now.isoformat()
        backoff = "" if ignore_backoff else "AND next_attempt_at <= :now"
        return [
            dict(row)
            for row in self.db.query(
                f"""SELECT * FROM outgoing_messages WHERE state = :queued {backoff}
                    AND (claimed_until IS NULL OR claimed_until <= :now) ORDER BY id LIMIT :limit""",
                {"queued": OUTGOING_QUEUED, "now": stamp, "limit": limit},
            )
        ]

    def claim_outgoing(self, message_id: int, *, now: datetime, until: datetime) -> bool:
        """Take a queued row for one attempt; ``False`` when another worker has it."""
        stamp = now.isoformat()
        with self._write():
            cursor = self.db.execute(
                """UPDATE outgoing_messages SET claimed_until = ?, attempts = attempts + 1, updated_at = ?
                   WHERE id = ? AND state = ? AND (claimed_until IS NULL OR claimed_until <= ?)""",
                [until.isoformat(), stamp, message_id, OUTGOING_QUEUED, stamp],
            )
            return cursor.rowcount == 1

    def settle_outgoing(
        self, message_id: int, state: str, *, now: datetime, reference: str | None = None, error: str | None = None
    ) -> None:
        """The outcome of a claimed row: ``sent``, ``skipped`` or ``failed``."""
        with self._write():
            self.db.execute(
                """UPDATE outgoing_messages SET state = ?, provider_reference = ?, last_error = ?,
                   claimed_until = NULL, updated_at = ? WHERE id = ?""",
                [state, reference, error, now.isoformat(), message_id],
            )

    def defer_outgoing(self, message_id: int, *, now: datetime, retry_at: datetime, error: str) -> None:
        """A temporary failure: the row stays queued until ``retry_at``."""
        with self._write():
            self.db.execute(
                """UPDATE outgoing_messages SET next_attempt_at = ?, last_error = ?, claimed_until = NULL,
                   updated_at = ? WHERE id = ?""",
                [retry_at.isoformat(), error, now.isoformat(), message_id],
            )

    def outgoing_counts(self) -> dict[str, int]:
        """How many outgoing rows are in each state."""
        return dict(self.db.execute("SELECT state, count(*) FROM outgoing_messages GROUP BY state").fetchall())


_FLAG = {UNSUBSCRIBED: "unsubscribe", BOUNCED: "bounce", COMPLAINED: "complaint"}


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return "locked" in str(exc) or "busy" in str(exc)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return True
    message = str(exc)
    return "malformed" in message or "not a database" in message


def _ledger_error(exc: sqlite3.Error, path: Path, action: str = "write") -> LedgerError:
    message = str(exc)
    hint = "restore it from a backup, or point send.database at another file"
    if _is_corrupt(exc):
        return LedgerCorrupt(
            f"cannot {action} the ledger: it is damaged ({message})",
            where=str(path),
            hint=f"restore the latest backup ('newsletter backup' writes one) over it, or salvage what is left with"
            f" 'sqlite3 {path.name} .recover | sqlite3 recovered.db' and point send.database at recovered.db",
        )
    if _is_busy(exc):
        return LedgerBusy(
            f"the ledger stayed busy (another process was writing): {message}",
            where=str(path),
            hint="nothing was written; try again in a moment",
        )
    elif "readonly" in message:
        hint = "make the database file and its folder writable"
    elif "unable to open" in message:
        hint = "send.database must be a file path in a writable folder"
    return LedgerError(f"cannot {action} the ledger ({message})", where=str(path), hint=hint)


def _translating_errors(method):
    """Wrap a public :class:`Ledger` method so a SQLite error (a damaged page met while
    reading, say) becomes a one-line :class:`LedgerError`, never an internal error."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _ledger_error(exc, self.path, action="read") from None

        return stream

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _ledger_error(exc, self.path, action="read") from None

    return call


for _name, _method in list(vars(Ledger).items()):
    if inspect.isfunction(_method) and not _name.startswith("_"):
        setattr(Ledger, _name, _translating_errors(_method))
