"""SMTP over a few connections at once (issue 13): each subscriber exactly once, the server working on
several messages side by side, and a failure on one connection stopping the whole send cleanly."""

from __future__ import annotations

import sqlite3

import pytest

from smtp_server import SmtpServer
from test_smtp import NEWEST_SLUG, deliveries, received, use_smtp

READERS = [f"p{n:03d}@example.org" for n in range(120)]


def chunk_states(project) -> dict[str, int]:
    with sqlite3.connect(project / "newsletter.db") as db:
        return dict(db.execute("SELECT state, count(*) FROM chunks GROUP BY state").fetchall())


def delivery_states(project) -> dict[str, int]:
    with sqlite3.connect(project / "newsletter.db") as db:
        return dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())


@pytest.mark.parametrize("connections", [2, 3])
def test_each_subscriber_gets_one_message_over_connections_side_by_side(
    run, project, certificate, smtp_password, connections
):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.await_overlap = connections  # every DATA answer waits until they all overlap
        use_smtp(project, server.port, ca_file=cert, extra=f"batch_size = 10\nconnections = {connections}\n")
        run("subscribers", "add", *READERS)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 0, outcome.stderr
    assert server.recorder.most_in_message == connections  # that many messages in progress at once, no more
    assert server.recorder.logins == connections  # one login per connection, each reused
    assert sorted(received(server)) == READERS  # each exactly once
    assert {state for _, state, _ in deliveries(project)} == {"accepted"}
    assert chunk_states(project) == {"accepted": len(READERS) // 10}


def test_within_a_chunk_messages_go_in_subscriber_order(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert, extra="batch_size = 10\nconnections = 3\n")
        run("subscribers", "add", *READERS)
        assert run("send", "--yes").exit_code == 0
    with sqlite3.connect(project / "newsletter.db") as db:
        chunk_of = dict(db.execute("SELECT email, chunk FROM deliveries").fetchall())
    by_chunk: dict[int, list[str]] = {}
    for address in received(server):
        by_chunk.setdefault(chunk_of[address], []).append(address)
    assert len(by_chunk) == 12 and all(addresses == sorted(addresses) for addresses in by_chunk.values())


def test_a_dropped_connection_is_reopened_and_the_others_carry_on(run, project, certificate, smtp_password):
    """A 421 and a hang-up at one MAIL FROM: that worker reconnects (a retry is safe before DATA)."""
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.drop_at_mail = [25]
        use_smtp(project, server.port, ca_file=cert, extra="batch_size = 10\nconnections = 2\n")
        run("subscribers", "add", *READERS)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 0, outcome.stderr
    assert sorted(received(server)) == READERS
    assert server.recorder.logins == 3  # two connections, one of them reopened


def test_a_server_taking_fewer_connections_gets_them_shared_not_a_failed_send(
    run, project, certificate, smtp_password
):
    """A relay that turns a second connection away (421 at EHLO): the calls share the first one."""
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.connections_allowed = 1
        use_smtp(project, server.port, ca_file=cert, extra="batch_size = 10\nconnections = 3\n")
        run("subscribers", "add", *READERS)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 0, outcome.stderr
    assert server.recorder.turned_away >= 1 and server.recorder.logins == 1
    assert sorted(received(server)) == READERS
    assert {state for _, state, _ in deliveries(project)} == {"accepted"}


def test_a_connection_lost_during_data_stops_every_worker_and_the_resume_sends_each_once(
    run, project, certificate, smtp_password
):
    """The message whose answer was lost is the only one in doubt; the other connection finishes its
    message, records its chunk and stops; after the editor's decision the rest goes exactly once."""
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.drop_after_data = [30]  # the 30th message is queued, its answer lost
        use_smtp(project, server.port, ca_file=cert, extra="batch_size = 10\nconnections = 2\n")
        run("subscribers", "add", *READERS)
        stopped = run("send", "--yes")
        assert stopped.exit_code == 1
        (line,) = stopped.stderr.strip().splitlines()
        assert "(1 recipients) may or may not have been delivered" in line
        states = delivery_states(project)
        assert states.get("unknown") == 1 and "in_flight" not in states  # the other worker stopped cleanly
        assert "in_flight" not in chunk_states(project)
        assert states["accepted"] == len(received(server)) - 1  # all the server took is recorded, bar one
        assert states.get("planned", 0) > 0  # stopped well before the end
        in_doubt = next(email for email, state, _ in deliveries(project) if state == "unknown")
        again = run("send", "--yes")  # still refuses: nothing can tell whether that one got it
        assert again.exit_code == 1 and "(1 recipients) may or may not have been delivered" in again.stderr
        assert received(server).count(in_doubt) == 1  # never re-sent blindly
        assert "in_flight" not in delivery_states(project)
        assert run("resolve", "--assume-sent", NEWEST_SLUG).exit_code == 0
        finished = run("send", "--yes")
        assert finished.exit_code == 0, finished.stderr
    assert sorted(received(server)) == READERS  # each exactly once
    assert {state for _, state, _ in deliveries(project)} == {"accepted"}


def test_a_login_refused_on_the_second_connection_stops_the_send_and_the_resume_completes(
    run, project, certificate, smtp_password
):
    """Nothing is in doubt when a connection cannot even log in: the send stops at once, both chunks are
    recorded, and the resume sends exactly what was missing."""
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.logins_allowed = 1
        server.recorder.faults.await_overlap = 2  # the first connection waits: the second one is needed
        use_smtp(project, server.port, ca_file=cert, extra="batch_size = 10\nconnections = 2\n")
        run("subscribers", "add", *READERS)
        stopped = run("send", "--yes")
        assert stopped.exit_code == 1
        (line,) = stopped.stderr.strip().splitlines()
        assert "refused the login" in line
        states = delivery_states(project)
        assert set(states) <= {"accepted", "planned"} and states.get("accepted", 0) == len(received(server))
        assert set(chunk_states(project)) <= {"accepted", "planned"}
        server.recorder.faults.logins_allowed = None
        server.recorder.faults.await_overlap = 0
        finished = run("send", "--yes")
        assert finished.exit_code == 0, finished.stderr
    assert sorted(received(server)) == READERS
    assert {state for _, state, _ in deliveries(project)} == {"accepted"}


@pytest.mark.parametrize("written", ["0", "17", '"two"', "true", "1.5"])
def test_a_bad_connections_value_is_one_line_naming_the_setting(run, project, smtp_password, written):
    """Refused before the ledger records anything."""
    use_smtp(project, 2525, extra=f"connections = {written}\n")
    run("subscribers", "add", *READERS[:2])
    outcome = run("send", "--yes")
    assert outcome.exit_code != 0
    (line,) = outcome.stderr.strip().splitlines()
    assert "providers.smtp.connections" in line and "from 1 to 16" in line and "Traceback" not in line
    with sqlite3.connect(project / "newsletter.db") as db:
        assert db.execute("SELECT count(*) FROM issues").fetchone() == (0,)


# -- the ledger's desk: the workers' ledger calls run on the engine's thread -----------------------
# (the ledger's SQLite connection refuses any other thread, so every send above also proves it)


def test_a_desk_runs_each_workers_call_on_its_own_thread_and_hands_back_value_or_error():
    import threading

    from newsletter.delivery_pool import LedgerDesk
    from newsletter.errors import LedgerError

    desk, stop = LedgerDesk(), threading.Event()
    ran_on: list[int] = []
    answers: list[object] = []

    class Book:
        def note(self, value: int) -> int:
            ran_on.append(threading.get_ident())
            return value * 2

        def fail(self) -> None:
            raise LedgerError("the ledger is locked", where="newsletter.db")

    book = desk.forward(Book())

    def worker(value: int) -> None:
        try:
            answers.append(book.note(value))
            book.fail()
        except LedgerError as error:
            answers.append(error.message)
        finally:
            desk.leave()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    assert desk.serve(len(threads), stop) is None
    for thread in threads:
        thread.join()
    assert ran_on == [threading.get_ident()] * 3 and not stop.is_set()
    assert sorted(a for a in answers if isinstance(a, int)) == [2, 4, 6]
    assert answers.count("the ledger is locked") == 3
    assert desk.run(lambda: threading.get_ident()) == threading.get_ident()  # its own thread: at once
