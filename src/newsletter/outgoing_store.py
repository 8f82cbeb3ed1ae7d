"""The outgoing queue: subscription requests and the mail they cause, in the ledger database.

Rows are written by the service (one INSERT per request) and handled later by a worker
(``outgoing.py``), which claims a row, sends, then settles or defers it.
"""

from __future__ import annotations

from datetime import datetime

from .store import DEFAULT_LIST, OUTGOING_QUEUED, LedgerPart, translating_errors


@translating_errors
class OutgoingQueue(LedgerPart):
    """Queued subscription requests and their confirmation mail (``ledger.outgoing``)."""

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
            assert cursor.lastrowid is not None  # an INSERT always sets it
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
