"""The ledger under concurrency (issue 10 item 1), with real processes and the real service.

A send to a few thousand people (``newsletter send --yes`` in its own process, to the outbox,
in chunks of 50), an import of 100,000 lines (``newsletter subscribers import``, another
process) and 200 one-click unsubscribes (RFC 8058 POSTs to the production WSGI server,
waitress, from 8 client threads) all run at once against one ledger.

Every unsubscribe must answer 200 and be recorded, the send and the import must both finish,
and nobody may be mailed after their unsubscribe was recorded.  The order of events comes from
the ledger itself: triggers (installed by the test, a real SQLite feature) number each
unsubscribe and each delivery's move to ``in_flight`` in commit order, which the write lock
makes a total order.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import TOKEN_KEY
from newsletter.config import Secret, load_config
from newsletter.store import Ledger
from newsletter.tokens import UNSUBSCRIBE, make_token
from newsletter.web import create_app, make_server

COMMAND = str(Path(sys.executable).with_name("newsletter"))
AUDIENCE = 3000
IMPORTED = 100_000
UNSUBSCRIBES = 200
KEY = [Secret("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)]

AUDIT = """
CREATE TABLE audit (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, subscriber_id INTEGER NOT NULL);
CREATE TRIGGER audit_unsubscribe AFTER UPDATE OF status ON subscribers
  WHEN new.status = 'unsubscribed' AND old.status != 'unsubscribed'
  BEGIN INSERT INTO audit (kind, subscriber_id) VALUES ('unsubscribed', new.id); END;
CREATE TRIGGER audit_in_flight AFTER UPDATE OF state ON deliveries
  WHEN new.state = 'in_flight' AND old.state != 'in_flight'
  BEGIN INSERT INTO audit (kind, subscriber_id) VALUES ('in_flight', new.subscriber_id); END;
"""


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"}
    return {**env, "NEWSLETTER_TOKEN_KEY": TOKEN_KEY}


def wait_until(condition, *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def rows(database: Path, sql: str, *params) -> list[tuple]:
    with closing(sqlite3.connect(database, timeout=30)) as db:
        return db.execute(sql, params).fetchall()


@pytest.mark.slow
def test_send_import_and_unsubscribes_at_once_lose_nothing(project):
    settings = project / "newsletter.toml"
    text = settings.read_text(encoding="utf-8")
    assert 'path = "outbox"\n' in text
    settings.write_text(
        text.replace('path = "outbox"\n', 'path = "outbox"\nbatch_size = 50\n'), encoding="utf-8"
    )  # 60 chunks
    config = load_config(project / "newsletter.toml")
    database = config.database_path
    (project / "audience.csv").write_text("email\n" + "".join(f"reader{n}@example.org\n" for n in range(AUDIENCE)))
    (project / "more.csv").write_text("email\n" + "".join(f"new{n}@example.net\n" for n in range(IMPORTED)))
    setup = subprocess.run([COMMAND, "subscribers", "import", "audience.csv"], cwd=project, env=cli_env(),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    with closing(sqlite3.connect(database)) as db:
        db.executescript(AUDIT)
    # Spread over the whole audience: most leave before their chunk, some after it went out.
    leaving = list(range(AUDIENCE, 0, -(AUDIENCE // UNSUBSCRIBES)))[:UNSUBSCRIBES]
    issued = datetime.now(UTC)
    tokens = {i: make_token(KEY, purpose=UNSUBSCRIBE, list_id=config.email.list_id, subscriber_id=i, issued_at=issued)
              for i in leaving}  # fmt: skip

    app = create_app(config, clock=lambda: datetime.now(UTC), environ={"NEWSLETTER_TOKEN_KEY": TOKEN_KEY})
    server = make_server(app, host="127.0.0.1", port=0, threads=8)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.effective_port}"

    def unsubscribe(subscriber_id: int) -> int:
        request = urllib.request.Request(
            f"{base}/unsubscribe/{tokens[subscriber_id]}", data=b"List-Unsubscribe=One-Click", method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    sender = subprocess.Popen([COMMAND, "send", "--yes"], cwd=project, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    importer = None
    try:
        # Start the rest once the send is really under way (its first chunk went out).
        wait_until(lambda: database.exists() and bool(rows(database, "SELECT 1 FROM audit WHERE kind = 'in_flight'")),
                   timeout=120, what="the send's first chunk")  # fmt: skip
        importer = subprocess.Popen([COMMAND, "subscribers", "import", "more.csv"], cwd=project, env=cli_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(unsubscribe, leaving))
        _, send_errors = sender.communicate(timeout=300)
        imported_out, import_errors = importer.communicate(timeout=300)
    finally:
        for process in (sender, importer):
            if process is not None and process.poll() is None:
                process.kill()
        server.close()

    assert answers == [200] * UNSUBSCRIBES
    assert sender.returncode == 0, send_errors
    assert importer.returncode == 0, import_errors
    assert f"Imported {IMPORTED}," in imported_out
    statuses = dict(rows(database, "SELECT id, status FROM subscribers WHERE id <= ?", AUDIENCE))
    assert {statuses[i] for i in leaving} == {"unsubscribed"}
    assert rows(database, "SELECT count(*) FROM subscribers")[0][0] == AUDIENCE + IMPORTED
    assert rows(database, "SELECT status FROM issues") == [("sent",)]
    # Nobody went in flight after their unsubscribe was committed; whoever left before their
    # chunk went out was skipped, and everyone else on the list was mailed exactly once.
    order = {(kind, who): seq for seq, kind, who in rows(database, "SELECT seq, kind, subscriber_id FROM audit")}
    states = dict(rows(database, "SELECT subscriber_id, state FROM deliveries"))
    skipped = mailed_before_leaving = 0
    for who in leaving:
        left_at = order[("unsubscribed", who)]
        went_at = order.get(("in_flight", who))
        if went_at is None:
            assert states[who] == "skipped", who
            skipped += 1
        else:
            assert went_at < left_at and states[who] == "accepted", who
            mailed_before_leaving += 1
    assert skipped > UNSUBSCRIBES // 4  # the unsubscribes really raced the send
    assert {states[i] for i in range(1, AUDIENCE + 1) if i not in tokens} == {"accepted"}
    outbox_recipients = [path for path in (project / "outbox").rglob("*.eml")]
    assert len(outbox_recipients) == AUDIENCE - skipped
    with closing(Ledger(database)) as ledger:
        assert ledger.subscribers.count_subscribers("unsubscribed") == UNSUBSCRIBES
