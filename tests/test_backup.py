"""``newsletter backup`` (issue 10 item 8): a consistent copy taken while a send runs, restored
after a crash and resumed without sending anyone a second copy.

The send goes through SMTP to a real aiosmtpd server on loopback, which records every message
it accepts, so a duplicate would show.  The sender runs in its own process.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from checks import assert_one_line_error
from conftest import TOKEN_KEY
from smtp_server import PASSWORD, SmtpServer
from test_smtp import use_smtp

COMMAND = str(Path(sys.executable).with_name("newsletter"))
AUDIENCE = 400


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"}
    return {**env, "NEWSLETTER_TOKEN_KEY": TOKEN_KEY, "NEWSLETTER_SMTP_PASSWORD": PASSWORD}


def newsletter(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([COMMAND, *args], cwd=project, env=cli_env(), capture_output=True, text=True, timeout=300)


def wait_until(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def counts(database: Path) -> dict[str, int]:
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
        return dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())


@pytest.mark.slow
def test_a_backup_taken_during_a_send_is_restored_and_resumed_without_duplicates(project, certificate):
    cert, key = certificate
    (project / "people.csv").write_text("email\n" + "".join(f"r{n}@example.org\n" for n in range(AUDIENCE)))
    assert newsletter(project, "subscribers", "import", "people.csv").returncode == 0
    database = project / "newsletter.db"
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert)
        received = server.recorder.messages
        sender = subprocess.Popen([COMMAND, "send", "--yes"], cwd=project, env=cli_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)  # fmt: skip
        try:
            wait_until(lambda: len(received) >= 40, timeout=120, what="the send to be under way")
            # While the send runs: a valid copy, whatever moment it caught.
            running = newsletter(project, "backup", "during.db")
            assert running.returncode == 0, running.stderr
            caught = counts(project / "during.db")
            assert caught.get("accepted", 0) >= 40 and sum(caught.values()) == AUDIENCE
            # The crash: the sender stops dead; the backup taken now holds what the ledger held.
            wait_until(lambda: len(received) >= 120, timeout=120, what="more of the send")
            os.kill(sender.pid, signal.SIGSTOP)
            frozen = newsletter(project, "backup", "crash.db")
            assert frozen.returncode == 0, frozen.stderr
            os.kill(sender.pid, signal.SIGKILL)
            sender.wait(timeout=60)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        in_backup = counts(project / "crash.db")
        assert 0 < in_backup.get("accepted", 0) < AUDIENCE
        # The ledger is lost; the backup is restored as the README says.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        (project / "crash.db").rename(database)
        with closing(sqlite3.connect(database)) as db:
            accepted_in_backup = {row[0] for row in db.execute("SELECT email FROM deliveries WHERE state = 'accepted'")}
            uncertain = {row[0] for row in db.execute("SELECT email FROM deliveries WHERE state = 'in_flight'")}
        before_resume = len(received)
        resumed = newsletter(project, "send", "--yes")
        if resumed.returncode != 0:
            # SMTP cannot be asked what it took: the send stops for the editor, who decides
            # from the server's own log whether the message being handed over arrived (of the
            # chunk's in_flight deliveries, the others were never handed over and went now).
            assert uncertain and resumed.returncode == 1, resumed.stderr
            assert "may or may not have been delivered" in resumed.stderr, resumed.stderr
            with closing(sqlite3.connect(database)) as db:
                in_doubt = db.execute("SELECT email, chunk FROM deliveries WHERE state = 'unknown'").fetchall()
            assert in_doubt and {email for email, _ in in_doubt} <= uncertain
            chunks = [chunk for _, chunk in in_doubt]
            assert len(set(chunks)) == len(chunks)  # one message in doubt per connection, each named by its chunk
            assert all(f"chunk {chunk} (1 recipients)" in resumed.stderr for chunk in chunks), resumed.stderr
            arrived = {rcpt for _, rcpts, _ in received for rcpt in rcpts}
            for email, chunk in in_doubt:  # the editor reads the server's log, one chunk at a time
                decision = "--assume-sent" if email in arrived else "--resend"
                decided = newsletter(project, "resolve", "social-business-parcours-singulier", decision,
                                     "--chunk", str(chunk))  # fmt: skip
                assert decided.returncode == 0, decided.stderr
            resumed = newsletter(project, "send", "--yes")
        assert resumed.returncode == 0, resumed.stderr
    per_recipient = collections.Counter(rcpt for _, rcpts, _ in received for rcpt in rcpts)
    assert set(per_recipient) == {f"r{n}@example.org" for n in range(AUDIENCE)}
    assert {n for n in per_recipient.values()} == {1}, [a for a, n in per_recipient.items() if n > 1][:5]
    resent = {rcpt for _, rcpts, _ in received[before_resume:] for rcpt in rcpts}
    assert not resent & accepted_in_backup
    assert counts(database) == {"accepted": AUDIENCE}


def test_backup_refuses_to_overwrite_and_reports_an_unwritable_place(run, project):
    assert run("subscribers", "add", "ann@example.org").exit_code == 0
    first = run("backup", str(project / "copy.db"))
    assert first.exit_code == 0 and "copy.db" in first.stdout
    with closing(sqlite3.connect(project / "copy.db")) as db:
        assert db.execute("SELECT email FROM subscribers").fetchall() == [("ann@example.org",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # stands alone, no -wal needed
    assert_one_line_error(run("backup", str(project / "copy.db")), "copy.db", "already exists", code=2)
    assert_one_line_error(run("backup", str(project / "missing" / "copy.db")), "cannot write the backup")
    assert not list((project).glob(".*.partial")) and not (project / "missing").exists()
    default = run("backup")
    assert default.exit_code == 0
    assert len(list(project.glob("newsletter-*.db"))) == 1
