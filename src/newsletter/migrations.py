"""The ledger's schema, one sqlite-utils migration per change, applied in order when the
ledger opens.  A migration is never edited once shipped: a change is a new function, named
``mNNN_what_it_does``, added at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .store import (
    DEFAULT_LIST,
    MIGRATIONS,
    SKIPPED,
    UNSUBSCRIBED,
    Database,
    DeliveryState,
    IssueState,
    SubscriberStatus,
    address_hash,
)


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    db.table("subscribers").create(
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
    db.table("subscribers").create_index(["email"], unique=True)
    db.table("subscribers").create_index(["status", "id"])
    db.table("issues").create(
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
    db.table("issues").create_index(["key"], unique=True)
    db.table("issues").create_index(["post_id"])
    db.table("chunks").create(
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
    db.table("deliveries").create(
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
    db.table("deliveries").create_index(["issue_id", "subscriber_id"], unique=True)
    db.table("deliveries").create_index(["issue_id", "chunk", "state"])


@MIGRATIONS()
def m002_chunk_provider_reference(db: Database) -> None:
    """What the provider calls a whole chunk (Buttondown's email id), for reconciliation."""
    db.table("chunks").add_column("provider_reference", str)


@MIGRATIONS()
def m003_issue_kind(db: Database) -> None:
    """``issue`` or ``correction`` (an explicit re-send of an edited post)."""
    db.table("issues").add_column("kind", str, not_null_default="issue")


@MIGRATIONS()
def m004_consent_and_suppression(db: Database) -> None:
    """Consent records (LAW-04), double opt-in, lists, and a suppression list of hashes (LAW-07)."""
    subscribers = db.table("subscribers")
    subscribers.add_column("list", str, not_null_default=DEFAULT_LIST)
    for column in ("consent_at", "consent_source", "consent_text_version", "consent_ip", "consent_user_agent",
                   "confirmed_at", "confirm_token_hash"):  # fmt: skip
        subscribers.add_column(column, str)
    db.execute("UPDATE subscribers SET consent_at = created_at, consent_source = source WHERE consent_at IS NULL")
    db.table("suppressions").create(
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


_STATE_COLUMNS: dict[str, tuple[str, Iterable[str]]] = {
    "subscribers": ("status", SubscriberStatus),
    "issues": ("status", IssueState),
    "chunks": ("state", [state for state in DeliveryState if state != SKIPPED]),
    "deliveries": ("state", DeliveryState),
}


@MIGRATIONS(transactional=False)
def m005_state_checks(db: Database) -> None:
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
            definition = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
            create = conn.execute(definition, [table]).fetchone()[0]
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
def m008_outgoing_messages(db: Database) -> None:
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
    db.table("outgoing_messages").create(
        columns,
        pk="id",
        not_null={"kind", "email", "requested_at", "state", "next_attempt_at", "updated_at"},
        defaults={"attempts": 0},
    )
    db.table("outgoing_messages").create_index(["state", "next_attempt_at"])


@MIGRATIONS()
def m007_chunk_hand_over(db: Database) -> None:
    """For providers that take one message per call (SMTP): the delivery being handed over now,
    and the boot the chunk was marked ``in_flight`` under, so that a resume after a crash of the
    process alone knows which ``in_flight`` deliveries never reached the provider
    (:meth:`.send_ledger.ChunkOutcomes.release_unsent`)."""
    db.table("chunks").add_column("handing_over", int)
    db.table("chunks").add_column("boot_id", str)


# Keep this migration last: other migrations are numbered before it.
@MIGRATIONS()
def m009_webhook_replay(db: Database) -> None:
    """The one-time id of every webhook call applied, so a captured call cannot be replayed."""
    db.table("webhook_calls").create(
        {"provider": str, "replay_id": str, "body_sha256": str, "received_at": str},
        pk=("provider", "replay_id"),
        not_null={"body_sha256", "received_at"},
    )
    db.table("webhook_calls").create_index(["received_at"])
