"""The send ledger: issues, their chunks and per-recipient deliveries, in the ledger database.

A delivery is written ``planned`` when the issue is planned, moved to
``in_flight`` (committed) *before* its provider call, and to ``accepted`` or
``rejected`` after it: a crash can leave ``in_flight`` rows, never a send
that the ledger does not know about.  Every update names the states it leaves
(:data:`.store.TRANSITIONS`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime

from .store import (
    ACCEPTED,
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    IN_FLIGHT,
    MARKED,
    PLANNED,
    PLANNING,
    REJECTED,
    SENDING,
    SENT,
    SKIPPED,
    SLICE_PAUSE_SECONDS,
    SLICE_ROWS,
    UNKNOWN,
    UNSETTLED,
    DeliveryRow,
    IssueRecord,
    LedgerPart,
    LedgerStateError,
    _expect_one,
    _leaving,
    translating_errors,
)  # fmt: skip

# The per-chunk statements of a send.  Each is bounded by the chunk through the
# (issue_id, chunk, state) index, never by the whole issue: ``ORDER BY subscriber_id`` alone
# made SQLite walk the issue's (issue_id, subscriber_id) index to avoid a sort, O(issue) per
# chunk.  The unary ``+`` takes that column out of index choice; a chunk is sorted in memory.
# Departed subscribers are found by primary key per delivery of the chunk, never by a scan of
# the subscribers' status index.  tests/test_store.py reads each one's EXPLAIN QUERY PLAN.
CHUNK_ROWS_SQL = """SELECT d.id, d.subscriber_id, d.email, d.state, s.status IS NOT ? FROM deliveries d
    JOIN subscribers s ON s.id = d.subscriber_id
    WHERE d.issue_id = ? AND d.chunk = ? AND d.state IN (?, ?, ?) ORDER BY +d.subscriber_id"""
SKIP_DEPARTED_SQL = """UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?
    AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = deliveries.subscriber_id AND s.status IS NOT ?)
    RETURNING subscriber_id"""
START_DELIVERIES_SQL = "UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?"
CHUNK_TALLY_SQL = """SELECT count(*) FILTER (WHERE state IN (?, ?, ?)), count(*) FILTER (WHERE state = ?)
    FROM deliveries WHERE issue_id = ? AND chunk = ?"""
# A chunk's outcomes: those that share a state, message id and error (a batch call answers with
# one id for all) are one statement over the list of their ids; the rest one statement each.
SETTLE_ALIKE_SQL = """UPDATE deliveries SET state = ?, provider_message_id = ?, error = ?, updated_at = ?
    WHERE issue_id = ? AND chunk = ? AND state IN (?, ?, ?) AND id IN (SELECT value FROM json_each(?))"""
SETTLE_ONE_SQL = """UPDATE deliveries SET state = ?, provider_message_id = ?, error = ?, updated_at = ?
    WHERE id = ? AND issue_id = ? AND chunk = ? AND state IN (?, ?, ?)"""
# One message per call (SMTP): what a resume releases, and what a failed call leaves unsent.
RELEASE_UNSENT_SQL = """UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?
    AND id IS NOT (SELECT handing_over FROM chunks WHERE issue_id = ? AND number = ?)
    AND EXISTS (SELECT 1 FROM chunks WHERE issue_id = ? AND number = ? AND boot_id = ?)"""
STOP_UNSENT_SQL = """UPDATE deliveries SET state = ?, updated_at = ? WHERE issue_id = ? AND chunk = ? AND state = ?
    AND id IS NOT ?"""
PER_CHUNK_SQL = {
    "chunk rows": CHUNK_ROWS_SQL, "skip departed": SKIP_DEPARTED_SQL, "start deliveries": START_DELIVERIES_SQL,
    "chunk tally": CHUNK_TALLY_SQL, "settle alike": SETTLE_ALIKE_SQL, "release unsent": RELEASE_UNSENT_SQL,
    "stop unsent": STOP_UNSENT_SQL,
}  # fmt: skip
MARK_UNCERTAIN_SQL = """UPDATE deliveries SET state = ?, updated_at = ?
    WHERE id = ? AND issue_id = ? AND chunk = ? AND state = ?"""
HAND_OVER_SQL = "UPDATE chunks SET handing_over = ?, updated_at = ? WHERE issue_id = ? AND number = ? AND state = ?"
# Statements on one delivery, found by its primary key (and checked against its chunk), or on one chunk.
PER_DELIVERY_SQL = {"settle one": SETTLE_ONE_SQL, "mark uncertain": MARK_UNCERTAIN_SQL}
PER_CHUNK_ROW_SQL = {"hand over": HAND_OVER_SQL}
# Beyond this many distinct outcomes in a chunk, one statement per delivery is the cheaper way.
ALIKE_GROUPS = 8
Outcomes = Sequence[tuple[int, str, str | None, str | None]]


def boot_id() -> str | None:
    """This boot of the machine (Linux's random boot id), ``None`` where the system has none.

    A commit that SQLite did not sync (``synchronous = NORMAL``) survives the death of the
    process but maybe not a power cut; under the same boot id, every such commit is still there.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


@translating_errors
class IssueLedger(LedgerPart):
    """Issue records (``ledger.issues``): planning an issue's frozen list of recipients, marking, resolving."""

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

    def count_recipients_of(self, issue_id: int) -> int:
        """How many people received ``issue_id`` and are still subscribed (a correction's recipients)."""
        return self.db.execute(
            """SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.issue_id = ? AND d.state = ? AND s.status = ?""",
            [issue_id, ACCEPTED, ACTIVE],
        ).fetchone()[0]

    def resolve(self, issue_id: int, *, assume_sent: bool, now: datetime, chunks: Sequence[int] = ()) -> int:
        """The editor's decision on chunks nothing could reconcile (only ``chunks``, when given, as
        the refusal names them); returns the deliveries changed.

        ``assume_sent``: they count as delivered (no one gets a second copy, some may get none).
        Otherwise they go back to ``planned`` and the next send delivers them (some may get two).
        """
        stamp = now.isoformat()
        state, note = (ACCEPTED, "assumed delivered (newsletter resolve)") if assume_sent else (PLANNED, None)
        _leaving("delivery", [IN_FLIGHT, UNKNOWN], state)
        _leaving("chunk", [IN_FLIGHT, UNKNOWN], state)
        only = f" AND chunk IN ({', '.join('?' * len(chunks))})" if chunks else ""
        with self._write():
            cursor = self.db.execute(
                "UPDATE deliveries SET state = ?, error = ?, updated_at = ? WHERE issue_id = ? AND state IN (?, ?)"
                + only,
                [state, note, stamp, issue_id, IN_FLIGHT, UNKNOWN, *chunks],
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
                   WHERE issue_id = ? AND state IN (?, ?)"""
                + only.replace("chunk IN", "number IN"),
                [PLANNED, PLANNED, state, ACCEPTED, stamp, issue_id, IN_FLIGHT, UNKNOWN, *chunks],
            )
        return changed

    def all_issues(self) -> list[IssueRecord]:
        return [IssueRecord(**row) for row in self.db["issues"].rows_where(order_by="id")]

    def plan_issue(
        self, *, key: str, post_id: str, slug: str, content_hash: str, subject: str, provider: str,
        chunk_size: int, now: datetime, list_is_local: bool = True, kind: str = "issue",
        recipients_of_issue: int | None = None,
    ) -> IssueRecord:  # fmt: skip
        """Record an issue and freeze its recipients: one ``planned`` delivery per active subscriber.

        Recipients are numbered into chunks in subscriber-id order, so the plan
        (and every idempotency key derived from it) is the same on a replay.
        Done in SQL, in slices of committed transactions (the issue stays
        ``planning`` until the last one, and a plan interrupted there is resumed
        by the next call with the same key): the list is never loaded into
        memory and other writers get the lock between slices.  When the provider
        keeps the list (``list_is_local=False``) the issue is one chunk
        with no local deliveries.  A correction (``recipients_of_issue``) goes to the
        people who received that issue and are still subscribed.
        """
        stamp = now.isoformat()
        with self._write():
            table = self.db.table("issues")
            existing = self.issue_by_key(key)
            if existing is not None and existing.status == PLANNING:
                issue_id = existing.id
            else:
                table.insert(
                    {
                        "key": key,
                        "post_id": post_id,
                        "slug": slug,
                        "content_hash": content_hash,
                        "subject": subject,
                        "provider": provider,
                        "status": PLANNING,
                        "created_at": stamp,
                        "kind": kind,
                    }  # fmt: skip
                )
                issue_id = int(table.last_pk or 0)
            if not list_is_local:
                self.db.execute(
                    "INSERT OR IGNORE INTO chunks (issue_id, number, state, idempotency_key, attempts, updated_at)"
                    " VALUES (?, 0, ?, ?, 0, ?)",
                    [issue_id, PLANNED, f"{key}:0", stamp],
                )
                (source,) = _leaving("issue", [PLANNING], SENDING)
                _expect_one(
                    self.db.execute(
                        "UPDATE issues SET status = ? WHERE id = ? AND status = ?", [SENDING, issue_id, source]
                    ),
                    f"plan issue {issue_id}",
                )
                return self._planned(key)
            last_id, planned = self.db.execute(
                "SELECT coalesce(max(subscriber_id), 0), count(*) FROM deliveries WHERE issue_id = ?", [issue_id]
            ).fetchone()
            # The recipients are who is active now: later subscribers are not part of this issue.
            through = self.db.execute("SELECT coalesce(max(id), 0) FROM subscribers").fetchone()[0]
        if recipients_of_issue is None:
            recipients_query = (
                "SELECT id, email FROM subscribers WHERE status = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?"
            )
            arguments: list = [ACTIVE]
        else:
            recipients_query = """SELECT s.id, s.email FROM subscribers s JOIN deliveries d ON d.subscriber_id = s.id
                          WHERE s.status = ? AND d.issue_id = ? AND d.state = ? AND s.id > ? AND s.id <= ?
                          ORDER BY s.id LIMIT ?"""
            arguments = [ACTIVE, recipients_of_issue, ACCEPTED]
        first_slice = True
        while True:
            if not first_slice:
                time.sleep(SLICE_PAUSE_SECONDS)  # let a waiting writer in between slices
            first_slice = False
            with self._write():
                added = self.db.execute(
                    f"""INSERT INTO deliveries (issue_id, chunk, subscriber_id, email, state, updated_at)
                        SELECT ?, (? + ROW_NUMBER() OVER (ORDER BY id) - 1) / ?, id, email, ?, ?
                        FROM ({recipients_query}) ORDER BY id""",
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
        return self._planned(key)

    def _planned(self, key: str) -> IssueRecord:
        record = self.issue_by_key(key)
        if record is None:  # written in this call: only a bug could lose it
            raise LedgerStateError(f"the issue {key!r} just planned is not in the ledger")
        return record

    def mark_issue(self, *, key: str, post_id: str, slug: str, content_hash: str, subject: str, now: datetime) -> None:
        """Record a post as sent without mailing anyone (``newsletter mark-sent``)."""
        stamp = now.isoformat()
        with self._write():
            self.db.table("issues").insert(
                {
                    "key": key,
                    "post_id": post_id,
                    "slug": slug,
                    "content_hash": content_hash,
                    "subject": subject,
                    "provider": "mark-sent",
                    "status": MARKED,
                    "recipients": 0,
                    "created_at": stamp,
                    "sent_at": stamp,
                }  # fmt: skip
            )


@translating_errors
class ChunkOutcomes(LedgerPart):
    """Per-delivery outcomes, and the chunks handed over one message at a time (SMTP).

    A part of :class:`SendLedger` (``ledger.sends``), kept apart so each stays one job."""

    def _record_outcomes(self, issue_id: int, chunk: int, outcomes: Outcomes, stamp: str) -> None:
        """Each delivery's outcome, in the caller's transaction; a delivery already settled is a bug."""
        alike: dict[tuple[str, str | None, str | None], list[int]] = {}
        for delivery_id, state, message_id, error in outcomes:
            alike.setdefault((state, message_id, error), []).append(delivery_id)
        for target in {state for state, _, _ in alike}:
            _leaving("delivery", UNSETTLED, target)
        if len(alike) <= ALIKE_GROUPS:
            settled = sum(
                self.db.execute(
                    SETTLE_ALIKE_SQL, [state, message_id, error, stamp, issue_id, chunk, *UNSETTLED, json.dumps(ids)]
                ).rowcount
                for (state, message_id, error), ids in alike.items()
            )
        else:
            settled = self.db.conn.executemany(
                SETTLE_ONE_SQL,
                [(state, message_id, error, stamp, delivery_id, issue_id, chunk, *UNSETTLED)
                 for delivery_id, state, message_id, error in outcomes],
            ).rowcount  # fmt: skip
        if settled != len(outcomes):
            raise LedgerStateError(
                f"settle chunk {chunk} of issue {issue_id}: {len(outcomes) - settled} deliveries were already settled"
            )

    # -- one message per call (SMTP) ----------------------------------------------------------------
    #
    # The chunk is marked in_flight once, synchronously (start_chunk with a boot id).  Then before
    # each message is handed over, one commit that SQLite does not sync records the outcome of the
    # message before it and names this one in chunks.handing_over.  Such a commit survives the
    # death of the process (it is in the WAL, in the kernel's cache) but maybe not a power cut.
    # So after a crash under the same boot, the in_flight deliveries other than handing_over never
    # reached the provider and are released (release_unsent); under another boot nothing is
    # assumed and they are all reconciled, as in any other chunk.

    def hand_over(self, issue_id: int, chunk: int, delivery_id: int, outcomes: Outcomes, *, now: datetime) -> None:
        """Record ``outcomes`` (of the messages before) and that ``delivery_id`` is handed over next."""
        stamp = now.isoformat()
        with self._write(durable=False):
            self._record_outcomes(issue_id, chunk, outcomes, stamp)
            _expect_one(
                self.db.execute(HAND_OVER_SQL, [delivery_id, stamp, issue_id, chunk, IN_FLIGHT]),
                f"hand over delivery {delivery_id} of chunk {chunk} of issue {issue_id}",
            )

    def stop_chunk(
        self, issue_id: int, chunk: int, outcomes: Outcomes, *, uncertain: int | None, now: datetime
    ) -> None:
        """A call failed part-way through a chunk: record ``outcomes``, make ``uncertain`` (the delivery
        the provider may have) ``unknown``, and release every other ``in_flight`` one, which was never
        handed over, back to ``planned``.  Synchronous: a resume relies on it."""
        stamp = now.isoformat()
        (unsent_source,) = _leaving("delivery", [IN_FLIGHT], PLANNED)
        with self._write():
            self._record_outcomes(issue_id, chunk, outcomes, stamp)
            if uncertain is not None:
                (source,) = _leaving("delivery", [IN_FLIGHT], UNKNOWN)
                self.db.execute(MARK_UNCERTAIN_SQL, [UNKNOWN, stamp, uncertain, issue_id, chunk, source])
            self.db.execute(STOP_UNSENT_SQL, [PLANNED, stamp, issue_id, chunk, unsent_source, uncertain])
            # The tally's first count, asked for unknown deliveries only.
            unknown, _ = self.db.execute(CHUNK_TALLY_SQL, [UNKNOWN] * 4 + [issue_id, chunk]).fetchone()
            state = UNKNOWN if unknown else PLANNED
            (source,) = _leaving("chunk", [IN_FLIGHT], state)
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, updated_at = ?, handing_over = NULL WHERE issue_id = ? AND number = ?"
                    " AND state = ?",
                    [state, stamp, issue_id, chunk, source],
                ),
                f"stop chunk {chunk} of issue {issue_id}",
            )

    def release_unsent(self, issue_id: int, chunk: int, *, boot: str | None, now: datetime) -> int:
        """After a crash: back to ``planned``, the ``in_flight`` deliveries of a one-message-per-call
        chunk that were never handed over, if the chunk was started under this ``boot`` (see above).
        Returns how many; the delivery being handed over stays ``in_flight``, for reconciliation."""
        if boot is None:
            return 0
        (source,) = _leaving("delivery", [IN_FLIGHT], PLANNED)
        with self._write():
            return self.db.execute(
                RELEASE_UNSENT_SQL,
                [PLANNED, now.isoformat(), issue_id, chunk, source, issue_id, chunk, issue_id, chunk, boot],
            ).rowcount


@translating_errors
class SendLedger(ChunkOutcomes):
    """Chunks and deliveries as a send moves them (``ledger.sends``), through :data:`.store.TRANSITIONS`."""

    def open_chunks(self, issue_id: int) -> list[tuple[int, str]]:
        """``(number, idempotency key)`` of each chunk not yet settled, in order."""
        rows = self.db.execute(
            "SELECT number, idempotency_key FROM chunks WHERE issue_id = ? AND state IN (?, ?, ?) ORDER BY number",
            [issue_id, PLANNED, IN_FLIGHT, UNKNOWN],
        ).fetchall()
        return [(number, key) for number, key in rows]

    def in_flight_chunks(self, issue_id: int) -> list[int]:
        """The numbers of the chunks a crash left ``in_flight``, in order (as many as were in progress)."""
        rows = self.db.execute(
            "SELECT number FROM chunks WHERE issue_id = ? AND state = ? ORDER BY number", [issue_id, IN_FLIGHT]
        ).fetchall()
        return [number for (number,) in rows]

    def chunks_in_doubt(self, issue_id: int) -> list[int]:
        """The numbers of the chunks left ``in_flight`` or ``unknown``: the provider may have some of their messages."""
        rows = self.db.execute(
            "SELECT number FROM chunks WHERE issue_id = ? AND state IN (?, ?) ORDER BY number",
            [issue_id, IN_FLIGHT, UNKNOWN],
        ).fetchall()
        return [number for (number,) in rows]

    def chunk_deliveries(self, issue_id: int, chunk: int) -> list[DeliveryRow]:
        """The unsettled deliveries of a chunk in subscriber order, each saying whether its person left.

        A read only: a planned delivery whose subscriber left (``departed``) must not be sent;
        it is skipped in the same commit as the chunk's ``in_flight`` (:meth:`start_chunk`) or
        its settling (:meth:`settle_chunk`).
        """
        rows = self.db.execute(CHUNK_ROWS_SQL, [ACTIVE, issue_id, chunk, PLANNED, IN_FLIGHT, UNKNOWN]).fetchall()
        return [DeliveryRow(row[0], row[1], row[2], row[3], departed=bool(row[4])) for row in rows]

    def skip_unsubscribed(self, issue_id: int, chunk: int, *, now: datetime) -> int:
        """Planned deliveries whose subscriber left since planning are skipped, never sent."""
        with self._write():
            return len(self._skip_departed(issue_id, chunk, now.isoformat()))

    def _skip_departed(self, issue_id: int, chunk: int, stamp: str) -> set[int]:
        (source,) = _leaving("delivery", [PLANNED], SKIPPED)
        rows = self.db.execute(SKIP_DEPARTED_SQL, [SKIPPED, stamp, issue_id, chunk, source, ACTIVE]).fetchall()
        return {row[0] for row in rows}

    def start_chunk(self, issue_id: int, chunk: int, *, now: datetime, boot: str | None = None) -> set[int]:
        """Commit ``in_flight`` for a chunk and its deliveries *before* the provider is called.

        In the same transaction, planned deliveries whose subscriber is no longer active are
        skipped: an unsubscribe committed before this call is never sent.  Returns the
        subscriber ids skipped here, which the caller must leave out of the request.  This
        commit is synchronous (fsynced): it must survive a power cut before the call is made.
        ``boot`` (:func:`boot_id`) is given when the chunk's messages will be handed over one at
        a time, each recorded first by :meth:`hand_over`.
        """
        stamp = now.isoformat()
        with self._write():
            left = self._skip_departed(issue_id, chunk, stamp)
            sources = _leaving("chunk", UNSETTLED, IN_FLIGHT)
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, attempts = attempts + 1, updated_at = ?, handing_over = NULL,"
                    " boot_id = ? WHERE issue_id = ? AND number = ? AND state IN (?, ?, ?)",
                    [IN_FLIGHT, stamp, boot, issue_id, chunk, *sources],
                ),
                f"start chunk {chunk} of issue {issue_id}",
            )
            (source,) = _leaving("delivery", [PLANNED], IN_FLIGHT)
            self.db.execute(START_DELIVERIES_SQL, [IN_FLIGHT, stamp, issue_id, chunk, source])
        return left

    def settle_chunk(self, issue_id: int, chunk: int, outcomes: Outcomes, *, now: datetime) -> None:
        """Record ``(delivery id, state, provider message id, error)`` for each delivery, then the chunk.

        One transaction for the whole chunk, not synchronous: a power cut may lose it, leaving
        the deliveries ``in_flight``, which a resume reconciles and never blindly resends; and
        the next synchronous commit (the next chunk's :meth:`start_chunk`) makes it durable too.
        Planned deliveries of people who left are skipped here as well (a chunk left with no
        one to send to after reconciliation).
        """
        stamp = now.isoformat()
        with self._write(durable=False):
            self._record_outcomes(issue_id, chunk, outcomes, stamp)
            self._skip_departed(issue_id, chunk, stamp)
            left, accepted = self.db.execute(CHUNK_TALLY_SQL, [*UNSETTLED, ACCEPTED, issue_id, chunk]).fetchone()
            state = UNKNOWN if left else (ACCEPTED if accepted else REJECTED)
            sources = _leaving("chunk", UNSETTLED, state)
            # Settling again to the same state is idempotent (reconciliation may have settled it).
            _expect_one(
                self.db.execute(
                    "UPDATE chunks SET state = ?, updated_at = ?, handing_over = NULL WHERE issue_id = ? AND number = ?"
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
                    "UPDATE chunks SET state = ?, provider_reference = ?, updated_at = ? WHERE issue_id = ?"
                    " AND number = ? AND state = ?",
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

    def feedback_counts(self, issue_id: int) -> dict[str, int]:
        """Of the issue's accepted deliveries, how many addresses bounced or complained since (webhooks).

        A subscriber counts when their status changed after the delivery was settled.
        """
        rows = self.db.execute(
            "SELECT s.status, count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
            " WHERE d.issue_id = ? AND d.state = ? AND s.status IN (?, ?) AND s.updated_at >= d.updated_at"
            " GROUP BY s.status",
            [issue_id, ACCEPTED, BOUNCED, COMPLAINED],
        ).fetchall()
        return {BOUNCED.value: 0, COMPLAINED.value: 0, **dict(rows)}

    def deliveries(self, issue_id: int) -> list[dict]:
        return list(self.db["deliveries"].rows_where("issue_id = ?", [issue_id], order_by="id"))
