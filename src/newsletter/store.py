"""The SQLite ledger: opening, transactions, the states with their one transition table, and errors.

The ledger is one database with two domains over it: the subscriber store
(:mod:`.subscriber_store`, ``ledger.subscribers``) and the send ledger
(:mod:`.send_ledger`, ``ledger.issues`` and ``ledger.sends``).  These three modules
are the only ones that speak SQL (through sqlite-utils).  The schema changes
only through the migrations of :mod:`.migrations` (for both domains), never
edited once shipped.

A delivery is written ``planned`` when the issue is planned, moved to
``in_flight`` (committed) *before* its provider call, and to ``accepted`` or
``rejected`` after it: a crash can leave ``in_flight`` rows, never a send
that the ledger does not know about.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Database as Database  # re-exported: the type migrations.py annotates with
from sqlite_utils import Migrations

from .errors import LedgerBusy, LedgerCorrupt, LedgerError

# The schema's history: :mod:`.migrations` registers one function per change here (sqlite-utils
# is imported in this module only).
MIGRATIONS = Migrations("newsletter")


class DeliveryState(StrEnum):
    """Where one recipient's copy (a delivery) or a whole chunk stands.  Stored as these strings."""

    PLANNED = "planned"  # in the frozen list of recipients, not yet handed to the provider
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
    departed: bool = False  # the subscriber is no longer active: a planned delivery is never sent


class Ledger:
    """The ledger database, migrated on open; its domains: :attr:`subscribers`, :attr:`issues`, :attr:`sends`,
    :attr:`outgoing`.

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
            # Every commit fsyncs the WAL unless a write says otherwise (see _write(durable=False)).
            self.db.execute("PRAGMA synchronous = FULL")
            from . import migrations  # noqa: F401  (registers the schema's changes on MIGRATIONS)

            if MIGRATIONS.pending(self.db):
                MIGRATIONS.apply(self.db)
        except sqlite3.Error as exc:
            raise _ledger_error(exc, self.path, action="open") from None
        except OSError as exc:
            raise LedgerError(
                f"cannot open the ledger ({exc})", where=str(path), hint="check the path and its permissions"
            ) from exc
        from .outgoing_store import OutgoingQueue  # imported here: they build on this module
        from .send_ledger import IssueLedger, SendLedger
        from .subscriber_store import SubscriberStore

        self.subscribers = SubscriberStore(self)
        self.issues = IssueLedger(self)
        self.sends = SendLedger(self)
        self.outgoing = OutgoingQueue(self)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[None]:
        """One committed transaction (a savepoint when nested); SQLite errors become :class:`LedgerError`.

        ``durable`` (the default) commits synchronously: the WAL is fsynced before this returns.
        ``durable=False`` skips that fsync (``synchronous = NORMAL``): the commit survives a
        crash of the process, and a power cut can lose it only until the next durable commit,
        which syncs every frame before its own.  Only writes that a lost commit leaves safe
        (a later reconciliation recovers them) use it.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        if not durable:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
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
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous = FULL")

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

    def slices(self, rows: Iterable, size: int = SLICE_ROWS) -> Iterator[list]:
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
                raise LedgerError(
                    f"the backup failed its check ({verdict})", where=str(target),
                    hint="the ledger itself may be damaged; run 'sqlite3 <ledger> \'PRAGMA integrity_check\''",
                )  # fmt: skip
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        except sqlite3.Error as exc:
            partial.unlink(missing_ok=True)
            raise _ledger_error(exc, self.path, action="back up") from None
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise LedgerError(
                f"cannot write the backup ({exc.strerror or exc})",
                where=str(target),
                hint="choose a path in a writable folder",
            ) from None
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


def _translating_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a public :class:`Ledger` method so a SQLite error (a damaged page met while
    reading, say) becomes a one-line :class:`LedgerError`, never an internal error."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _ledger_error(exc, self.path, action="read") from None

        return stream

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _ledger_error(exc, self.path, action="read") from None

    return call


def translating_errors(cls: type) -> type:
    """Class decorator: every public method's SQLite errors become :class:`LedgerError` (see above)."""
    for name, method in list(vars(cls).items()):
        if inspect.isfunction(method) and not name.startswith("_"):
            setattr(cls, name, _translating_errors(method))
    return cls


translating_errors(Ledger)


class LedgerPart:
    """One domain's methods over a shared :class:`Ledger`: its connection and its transactions."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @property
    def db(self) -> sqlite_utils.Database:
        return self._ledger.db

    @property
    def path(self) -> Path:
        return self._ledger.path

    def _write(self, *, durable: bool = True) -> contextlib.AbstractContextManager[None]:
        return self._ledger._write(durable=durable)
