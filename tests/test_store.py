"""The ledger: migrations, the frozen list of recipients of an issue, and writes before each call."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
import sqlite_utils

from conftest import FIXED_NOW
from newsletter.errors import LedgerError
from newsletter.migrations import MIGRATIONS
from newsletter.store import ACCEPTED, IN_FLIGHT, PLANNED, SKIPPED, TRANSITIONS, Ledger, LedgerStateError


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger(tmp_path / "ledger.db")
    yield opened
    opened.close()


def plan(ledger, key="k1", chunk_size=2):
    return ledger.issues.plan_issue(
        key=key, post_id="urn:uuid:1", slug="s", content_hash="h" * 64, subject="S", provider="outbox",
        chunk_size=chunk_size, now=FIXED_NOW,
    )  # fmt: skip


def test_migrations_are_recorded_and_applied_once(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    Ledger(path).close()
    db = sqlite_utils.Database(path)
    applied = [m.name for m in MIGRATIONS.applied(db)]
    assert applied[:5] == [
        "m001_initial",
        "m002_chunk_provider_reference",
        "m003_issue_kind",
        "m004_consent_and_suppression",
        "m005_state_checks",
    ]
    assert applied[-1] == "m009_webhook_replay"  # kept last
    assert "m008_outgoing_messages" in applied
    assert not MIGRATIONS.pending(db)
    assert {"subscribers", "issues", "chunks", "deliveries"} <= set(db.table_names())


def test_issue_plan_freezes_active_subscribers_into_ordered_chunks(ledger):
    for n in range(5):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    ledger.subscribers.unsubscribe(2, now=FIXED_NOW)
    record = plan(ledger)
    assert record.recipients == 4 and record.status == "sending"
    assert ledger.sends.open_chunks(record.id) == [(0, "k1:0"), (1, "k1:1")]
    assert [d.subscriber_id for d in ledger.sends.chunk_deliveries(record.id, 0)] == [1, 3]
    assert [d.subscriber_id for d in ledger.sends.chunk_deliveries(record.id, 1)] == [4, 5]
    # Subscribers joining after planning are not part of this issue.
    ledger.subscribers.add_subscriber("late@example.org", source="test", now=FIXED_NOW)
    assert ledger.sends.delivery_counts(record.id) == {PLANNED: 4}


def test_in_flight_is_committed_before_the_call(ledger, tmp_path):
    ledger.subscribers.add_subscriber("a@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW)
    # A second connection (another process) sees the committed state.
    with sqlite3.connect(tmp_path / "ledger.db") as other:
        assert other.execute("SELECT state FROM deliveries").fetchall() == [(IN_FLIGHT,)]
        assert other.execute("SELECT state, attempts FROM chunks").fetchall() == [(IN_FLIGHT, 1)]


def test_settling_every_chunk_finishes_the_issue(ledger):
    ledger.subscribers.add_subscriber("a@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    assert not ledger.sends.finish_issue(record.id, now=FIXED_NOW)
    (delivery,) = ledger.sends.chunk_deliveries(record.id, 0)
    ledger.sends.settle_chunk(record.id, 0, [(delivery.id, ACCEPTED, "<m@x>", None)], now=FIXED_NOW)
    assert ledger.sends.finish_issue(record.id, now=FIXED_NOW)
    assert ledger.issues.issue_by_key("k1").status == "sent"
    assert ledger.sends.deliveries(record.id)[0]["provider_message_id"] == "<m@x>"


def test_subscribers_who_leave_mid_send_are_skipped(ledger):
    for n in range(2):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    ledger.subscribers.unsubscribe(1, now=FIXED_NOW)
    assert ledger.sends.skip_unsubscribed(record.id, 0, now=FIXED_NOW) == 1
    assert [d.subscriber_id for d in ledger.sends.chunk_deliveries(record.id, 0)] == [2]
    assert ledger.sends.delivery_counts(record.id) == {PLANNED: 1, SKIPPED: 1}


def test_same_issue_key_cannot_be_planned_twice(ledger):
    plan(ledger)
    with pytest.raises(LedgerError):
        plan(ledger)


def test_unsubscribe_is_idempotent(ledger):
    subscriber_id, created = ledger.subscribers.add_subscriber("a@example.org", source="t", now=FIXED_NOW)
    assert created
    assert ledger.subscribers.unsubscribe(subscriber_id, now=FIXED_NOW)
    assert not ledger.subscribers.unsubscribe(subscriber_id, now=FIXED_NOW)
    assert ledger.subscribers.count_subscribers("active") == 0 and ledger.subscribers.count_subscribers() == 1


def test_an_unreadable_database_is_a_ledger_error(tmp_path):
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError) as caught:
        Ledger(path)
    assert str(path) in caught.value.one_line()


def test_a_locked_database_is_a_ledger_error_and_changes_nothing(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerError) as caught:
            Ledger(path, busy_timeout_ms=50).subscribers.add_subscriber("a@example.org", source="t", now=FIXED_NOW)
        assert "locked" in caught.value.message and "try again" in caught.value.hint
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Ledger(path).subscribers.count_subscribers() == 0


# -- the state machine (issue 11 item 4) -----------------------------------------------------


def test_states_are_enums_stored_as_the_same_strings():
    from newsletter.store import DeliveryState, IssueState, SubscriberStatus

    assert [str(s) for s in DeliveryState] == ["planned", "in_flight", "accepted", "rejected", "unknown", "skipped"]
    assert [str(s) for s in IssueState] == ["planning", "sending", "sent", "marked"]
    assert [str(s) for s in SubscriberStatus] == ["pending", "active", "unsubscribed", "bounced", "complained"]
    # Every state of every kind has an entry in the one transition table, and every target is a state.
    for kind, enum in (("delivery", DeliveryState), ("issue", IssueState), ("subscriber", SubscriberStatus)):
        assert set(TRANSITIONS[kind]) == set(enum)
        assert set().union(*TRANSITIONS[kind].values()) <= set(enum)
    assert set(TRANSITIONS["chunk"]) == set(DeliveryState) - {SKIPPED}


def test_an_update_from_a_state_it_may_not_leave_fails_loudly(ledger):
    ledger.subscribers.add_subscriber("a@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW)
    (delivery,) = ledger.sends.chunk_deliveries(record.id, 0)
    ledger.sends.settle_chunk(record.id, 0, [(delivery.id, ACCEPTED, "m1", None)], now=FIXED_NOW)
    # Settling the same delivery again (a second copy recorded as if new) is refused, not overwritten.
    with pytest.raises(LedgerStateError, match="already settled"):
        ledger.sends.settle_chunk(record.id, 0, [(delivery.id, "rejected", None, "late")], now=FIXED_NOW)
    with pytest.raises(LedgerStateError):
        ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW)  # an accepted chunk never goes out again
    with pytest.raises(LedgerStateError):
        ledger.sends.release_chunk(record.id, 0, now=FIXED_NOW)
    assert ledger.sends.deliveries(record.id)[0]["state"] == ACCEPTED
    assert ledger.sends.finish_issue(record.id, now=FIXED_NOW)
    with pytest.raises(LedgerStateError):
        ledger.sends.finish_issue(record.id, now=FIXED_NOW)  # sent is final


def test_check_constraints_refuse_unknown_states(ledger):
    ledger.subscribers.add_subscriber("a@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    for sql in (
        "UPDATE deliveries SET state = 'sent-ish'",
        "UPDATE chunks SET state = 'skipped'",
        "UPDATE issues SET status = 'done'",
        "UPDATE subscribers SET status = 'maybe'",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            ledger.db.execute(sql)
        ledger.db.conn.rollback()
    assert ledger.sends.delivery_counts(record.id) == {PLANNED: 1}


def test_an_old_ledger_is_migrated_in_place_and_m004_needs_no_registered_function(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)  # a bare connection: nothing registered sha256_hex on it
    MIGRATIONS.apply(db, stop_before="m004_consent_and_suppression")
    db["subscribers"].insert(
        {"email": "gone@example.org", "status": "unsubscribed", "created_at": "t", "updated_at": "t"}
    )
    db["subscribers"].insert({"email": "here@example.org", "status": "active", "created_at": "t", "updated_at": "t"})
    MIGRATIONS.apply(db, stop_before="m005_state_checks")
    db.close()
    with closing(Ledger(path)) as ledger:
        assert ledger.subscribers.suppression_reason("gone@example.org") == "unsubscribed"
        assert ledger.subscribers.count_subscribers("active") == 1
        schema = ledger.db.execute("SELECT sql FROM sqlite_master WHERE name = 'subscribers'").fetchone()[0]
        assert "CHECK" in schema
        assert ledger.db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert ledger.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_every_per_chunk_statement_is_bounded_by_the_chunk_index(ledger):
    """The queries of each chunk search the (issue, chunk, state) index, never the whole issue."""
    from newsletter.send_ledger import PER_CHUNK_SQL

    for n in range(60):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger, chunk_size=10)
    for name, sql in PER_CHUNK_SQL.items():
        steps = [row[3] for row in ledger.db.execute("EXPLAIN QUERY PLAN " + sql, [1] * sql.count("?"))]
        on_deliveries = [step for step in steps if "deliveries" in step or step.startswith("SEARCH d ")]
        assert on_deliveries, (name, steps)
        for step in on_deliveries:
            assert step.startswith("SEARCH"), (name, steps)
            assert "INDEX idx_deliveries_issue_id_chunk_state (issue_id=? AND chunk=?" in step, (name, steps)
        # The one scan allowed is of the statement's own list of delivery ids (json_each of a parameter).
        assert not any(step.startswith("SCAN") and not step.startswith("SCAN json_each") for step in steps), steps
        assert not any("idx_subscribers_status_id" in step or "issue_id_subscriber_id" in step for step in steps)
    # The reordered query still returns the chunk in subscriber order.
    assert [d.subscriber_id for d in ledger.sends.chunk_deliveries(record.id, 3)] == list(range(31, 41))


def test_per_delivery_and_per_chunk_row_statements_find_their_row_by_primary_key(ledger):
    from newsletter.send_ledger import PER_CHUNK_ROW_SQL, PER_DELIVERY_SQL

    for n in range(60):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    plan(ledger, chunk_size=10)
    expected = {
        "deliveries": (PER_DELIVERY_SQL, "INTEGER PRIMARY KEY (rowid=?)"),
        "chunks": (PER_CHUNK_ROW_SQL, "INDEX sqlite_autoindex_chunks_1 (issue_id=? AND number=?)"),
    }
    for table, (statements, key) in expected.items():
        for name, sql in statements.items():
            steps = [row[3] for row in ledger.db.execute("EXPLAIN QUERY PLAN " + sql, [1] * sql.count("?"))]
            assert steps == [f"SEARCH {table} USING {key}"], (name, steps)


def test_in_flight_commits_are_synchronous_and_settling_is_not(ledger):
    """The in_flight mark is fsynced before the call; a chunk's outcome rides on the next synced commit."""
    ledger.subscribers.add_subscriber("a@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger)
    assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    statements: list[str] = []
    ledger.db.conn.set_trace_callback(statements.append)
    ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW)
    assert "COMMIT" in statements and not any("synchronous = NORMAL" in s for s in statements)
    statements.clear()
    (delivery,) = ledger.sends.chunk_deliveries(record.id, 0)
    ledger.sends.settle_chunk(record.id, 0, [(delivery.id, ACCEPTED, "m1", None)], now=FIXED_NOW)
    ledger.db.conn.set_trace_callback(None)
    normal, commit, full = (statements.index(s) for s in
                            ("PRAGMA synchronous = NORMAL", "COMMIT", "PRAGMA synchronous = FULL"))  # fmt: skip
    assert normal < commit < full
    assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_a_person_who_left_is_skipped_by_the_chunks_own_commit(ledger):
    for n in range(3):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger, chunk_size=3)
    ledger.subscribers.unsubscribe(2, now=FIXED_NOW)
    rows = ledger.sends.chunk_deliveries(record.id, 0)
    assert [(r.subscriber_id, r.departed) for r in rows] == [(1, False), (2, True), (3, False)]
    assert ledger.sends.delivery_counts(record.id) == {PLANNED: 3}  # reading wrote nothing
    assert ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW) == {2}
    assert ledger.sends.delivery_counts(record.id) == {IN_FLIGHT: 2, SKIPPED: 1}


@pytest.mark.parametrize("distinct", [3, 40])  # few groups: one statement each; many: one per delivery
def test_a_chunks_outcomes_are_recorded_per_delivery_alike_or_not(ledger, distinct):
    for n in range(50):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger, chunk_size=50)
    ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW)
    rows = ledger.sends.chunk_deliveries(record.id, 0)
    wanted = {}
    for n, row in enumerate(rows):
        if n % 7 == 3:
            wanted[row.id] = ("rejected", None, f"550 no such user {n % distinct}")
        else:
            wanted[row.id] = ("accepted", f"<m{n % distinct}@x>", None)
    ledger.sends.settle_chunk(record.id, 0, [(i, *o) for i, o in wanted.items()], now=FIXED_NOW)
    recorded = {d["id"]: (d["state"], d["provider_message_id"], d["error"]) for d in ledger.sends.deliveries(record.id)}
    assert recorded == wanted
    with pytest.raises(LedgerStateError, match="1 deliveries were already settled"):
        ledger.sends.settle_chunk(record.id, 0, [(rows[0].id, "accepted", "<again@x>", None)], now=FIXED_NOW)


def test_one_by_one_commits_in_flight_synchronously_and_each_hand_over_without_sync(ledger):
    """SMTP's chunk: one fsynced in_flight commit, then one unsynced commit per message."""
    for n in range(3):
        ledger.subscribers.add_subscriber(f"r{n}@example.org", source="test", now=FIXED_NOW)
    record = plan(ledger, chunk_size=3)
    statements: list[str] = []
    ledger.db.conn.set_trace_callback(statements.append)
    ledger.sends.start_chunk(record.id, 0, now=FIXED_NOW, boot="this boot")
    assert "COMMIT" in statements and not any("synchronous = NORMAL" in s for s in statements)
    first, second, third = ledger.sends.chunk_deliveries(record.id, 0)
    statements.clear()
    ledger.sends.hand_over(record.id, 0, first.id, [], now=FIXED_NOW)
    ledger.sends.hand_over(record.id, 0, second.id, [(first.id, ACCEPTED, "<1@x>", None)], now=FIXED_NOW)
    ledger.db.conn.set_trace_callback(None)
    assert statements.count("PRAGMA synchronous = NORMAL") == statements.count("COMMIT") == 2
    # Killed while handing over the second: under another boot all of the chunk is in doubt,
    # under the same boot only the second; the third was never handed over.
    assert ledger.sends.release_unsent(record.id, 0, boot="another boot", now=FIXED_NOW) == 0
    assert ledger.sends.release_unsent(record.id, 0, boot="this boot", now=FIXED_NOW) == 1
    states = {d["id"]: d["state"] for d in ledger.sends.deliveries(record.id)}
    assert states == {first.id: ACCEPTED, second.id: IN_FLIGHT, third.id: PLANNED}
    assert ledger.sends.release_unsent(record.id, 0, boot=None, now=FIXED_NOW) == 0  # no boot id: assume nothing
