"""The subscribe form records the request and nothing else; the confirmation (or the audience
provider's own subscribe call) goes out later, from the worker, ``newsletter outgoing`` or ``send``.

So the form's work — and hence its answer and its timing — cannot depend on the address's
state or on the provider being up.  Checked by the SQL each request runs (not by wall-clock
thresholds, which flake), by the provider's own record, and through the real CLI.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3

import pytest

from checks import use_provider
from conftest import FIXED_NOW, TOKEN_KEY
from fakes import FakeButtondown, FakePostmark, Fault
from newsletter.config import Secret, load_config
from newsletter.outgoing import flush_outgoing
from newsletter.store import Ledger
from newsletter.subscribers import request_subscription
from newsletter.web import create_app

KEYS = [Secret("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)]
POSTMARK_TOKEN = "pm-test-token"
BUTTONDOWN_KEY = "bd-test-key"
ENV = {"NEWSLETTER_TOKEN_KEY": TOKEN_KEY, "NEWSLETTER_POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN,
       "NEWSLETTER_BUTTONDOWN_API_KEY": BUTTONDOWN_KEY}  # fmt: skip


def flush(config, **options):
    return flush_outgoing(config, environ=ENV, clock=lambda: FIXED_NOW, **options)


def outgoing(config) -> list[tuple]:
    with sqlite3.connect(config.database_path) as db:
        return db.execute("SELECT email, state, client_ip, attempts FROM outgoing_messages ORDER BY id").fetchall()


def outbox_confirmations(config) -> list[email.message.EmailMessage]:
    folder = config.root / "outbox" / "new"
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sorted(folder.glob("*.eml"))]


def snapshot(config) -> dict[str, list]:
    """Every table but the queue itself, row by row."""
    with sqlite3.connect(config.database_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: db.execute(f"SELECT * FROM [{t}]").fetchall() for t in tables if t != "outgoing_messages"}


ADDRESSES = {
    "new": "new@example.org",
    "pending": "pending@example.org",
    "active": "active@example.org",
    "unsubscribed": "gone@example.org",
    "bounced": "bounced@example.org",
    "complained": "complained@example.org",
}


def prepare_states(config) -> None:
    ledger = Ledger(config.database_path)
    try:
        request_subscription(ledger, KEYS, config.email.list_id, ADDRESSES["pending"], now=FIXED_NOW, source="form")
        ledger.subscribers.add_subscriber(ADDRESSES["active"], source="test", now=FIXED_NOW)
        gone, _ = ledger.subscribers.add_subscriber(ADDRESSES["unsubscribed"], source="test", now=FIXED_NOW)
        ledger.subscribers.set_status(gone, "unsubscribed", now=FIXED_NOW)
        ledger.subscribers.add_suppression(ADDRESSES["bounced"], "bounced", now=FIXED_NOW)
        complained, _ = ledger.subscribers.add_subscriber(ADDRESSES["complained"], source="test", now=FIXED_NOW)
        ledger.subscribers.set_status(complained, "complained", now=FIXED_NOW)
    finally:
        ledger.close()


def test_the_form_runs_the_same_sql_whatever_the_address_state(config, monkeypatch):
    """New, pending, active, unsubscribed, bounced, complained: the same statements, one INSERT,
    no other table touched, no mail sent, the same bytes answered."""
    app = create_app(config, environ=ENV, clock=lambda: FIXED_NOW)
    prepare_states(config)
    client = app.test_client()
    statements: list[str] = []
    original_init = Ledger.__init__

    def traced_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.db.conn.set_trace_callback(statements.append)

    monkeypatch.setattr(Ledger, "__init__", traced_init)  # observes the SQL; changes nothing it does
    traces, bodies = {}, {}
    for state, address in ADDRESSES.items():
        before = snapshot(config)
        statements.clear()
        peer = {"REMOTE_ADDR": f"10.0.0.{len(traces)}"}
        response = client.post("/subscribe", data={"email": address.upper()}, environ_base=peer)
        assert response.status_code == 200, state
        traces[state] = [s.replace(address, "ADDRESS").replace(f"10.0.0.{len(traces)}", "IP") for s in statements]
        bodies[state] = response.data
        assert snapshot(config) == before, f"{state}: the request changed more than the queue"
    assert len(set(map(tuple, traces.values()))) == 1, traces
    assert sum(s.lstrip().upper().startswith("INSERT") for s in traces["new"]) == 1
    assert not any(s.lstrip().upper().startswith(("UPDATE", "DELETE")) for s in traces["new"])
    assert len(set(bodies.values())) == 1
    assert outbox_confirmations(config) == []  # nothing was sent inside a request
    assert [row[1] for row in outgoing(config)] == ["queued"] * len(ADDRESSES)


def test_the_worker_sends_only_what_each_state_calls_for(config):
    app = create_app(config, environ=ENV, clock=lambda: FIXED_NOW, rate_limit=(100, 600.0))
    prepare_states(config)
    client = app.test_client()
    for address in ADDRESSES.values():
        client.post("/subscribe", data={"email": address})
    report = flush(config)
    # new and pending get a confirmation; active and suppressed ones nothing (suppression wins).
    assert (report.sent, report.skipped, report.deferred, report.failed) == (2, 4, 0, 0)
    sent_to = sorted(str(m["To"]) for m in outbox_confirmations(config))
    assert sent_to == sorted([ADDRESSES["new"], ADDRESSES["pending"]])
    with sqlite3.connect(config.database_path) as db:
        statuses = dict(db.execute("SELECT email, status FROM subscribers").fetchall())
    assert statuses[ADDRESSES["active"]] == "active" and statuses[ADDRESSES["complained"]] == "complained"
    assert ADDRESSES["bounced"] not in statuses
    assert flush(config).sent == 0  # handled once: a second pass sends nothing again


def test_with_the_provider_down_the_form_answers_the_same_and_the_mail_goes_out_when_it_is_back(project):
    with FakePostmark(server_token=POSTMARK_TOKEN) as fake:
        use_provider(project, "postmark", fake.url)
        config = load_config(project / "newsletter.toml")
        client = create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client()
        reference = client.post("/subscribe", data={"email": "known@example.org"})
        fake.inject(Fault.http(503, times=None))  # the provider is down
        down = client.post("/subscribe", data={"email": "zoe@example.org"})
        assert down.status_code == reference.status_code == 200 and down.data == reference.data
        report = flush(config)
        assert report.deferred == 1 and report.sent == 0
        assert [row[1] for row in outgoing(config)] == ["queued", "queued"]
        fake.clear_faults()  # back up
        report = flush(config, ignore_backoff=True)
        assert report.sent == 2
        assert sorted(d.address for d in fake.delivered) == ["known@example.org", "zoe@example.org"]
        assert all("/confirm/" in (d.text or "") for d in fake.delivered)
        assert [row[1] for row in outgoing(config)] == ["sent", "sent"]


def test_a_deferred_message_waits_for_its_backoff_unless_flushed_explicitly(project):
    with FakePostmark(server_token=POSTMARK_TOKEN) as fake:
        use_provider(project, "postmark", fake.url, send={"retry_base_delay": 30, "retry_max_delay": 60})
        config = load_config(project / "newsletter.toml")
        create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client().post(
            "/subscribe", data={"email": "zoe@example.org"})
        fake.inject(Fault.http(503))
        assert flush(config).deferred == 1
        fake.inject(Fault.http(503))  # would fail again, but the row is not due yet: not even tried
        requests_before = len(fake.requests)
        assert flush(config).deferred == 0 and len(fake.requests) == requests_before
        fake.clear_faults()
        report = flush(config, ignore_backoff=True)  # what `newsletter outgoing` does
        assert report.sent == 1 and len(fake.messages) == 1


def test_newsletter_outgoing_and_send_flush_the_queue(config, run, monkeypatch):
    client = create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client()
    client.post("/subscribe", data={"email": "a@example.org"})
    outcome = run("outgoing")
    assert outcome.exit_code == 0 and "1 sent" in outcome.stdout
    assert [str(m["To"]) for m in outbox_confirmations(config)] == ["a@example.org"]
    client.post("/subscribe", data={"email": "b@example.org"})
    Ledger(config.database_path).subscribers.add_subscriber("reader@example.org", source="test", now=FIXED_NOW)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Outgoing messages: 1 sent" in outcome.stdout
    assert "b@example.org" in [str(m["To"]) for m in outbox_confirmations(config)]


# -- an audience provider (Buttondown keeps the list) -----------------------------------------------------


@pytest.fixture
def buttondown(project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_BUTTONDOWN_API_KEY", BUTTONDOWN_KEY)
    with FakeButtondown(api_key=BUTTONDOWN_KEY, subscribers=["old.reader@example.org"]) as fake:
        use_provider(project, "buttondown", fake.url)
        yield fake, load_config(project / "newsletter.toml")


def test_with_buttondown_subscribing_goes_to_its_subscribe_api(buttondown):
    """Issue 9 item 9: the form answered 500 (no transactional send at Buttondown)."""
    fake, config = buttondown
    client = create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client()
    new = client.post("/subscribe", data={"email": "Zoe@Example.org"}, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    known = client.post("/subscribe", data={"email": "old.reader@example.org"})
    assert new.status_code == known.status_code == 200 and new.data == known.data
    assert fake.requests == []  # nothing reached Buttondown inside the requests
    report = flush(config)
    assert (report.sent, report.skipped, report.failed) == (1, 1, 0)
    record = fake.subscriber_records["zoe@example.org"]
    assert record["type"] == "unactivated" and record["ip_address"] == "192.0.2.9"
    assert fake.confirmations == ["zoe@example.org"]  # Buttondown's own double opt-in mail
    calls = [r for r in fake.requests if r.path == "/v1/subscribers"]
    assert all(r.headers.get("X-Buttondown-Collision-Behavior") == "no_op" for r in calls)
    assert fake.subscriber_records["old.reader@example.org"]["type"] == "regular"  # left as it was
    with sqlite3.connect(config.database_path) as db:
        assert db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 0  # Buttondown keeps the list


def test_with_buttondown_down_the_request_waits_in_the_queue(buttondown):
    fake, config = buttondown
    client = create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client()
    fake.inject(Fault.http(503, times=None))
    assert client.post("/subscribe", data={"email": "zoe@example.org"}).status_code == 200
    assert flush(config).deferred == 1 and fake.subscriber_records == {}
    fake.clear_faults()
    assert flush(config, ignore_backoff=True).sent == 1
    assert fake.confirmations == ["zoe@example.org"]


def test_buttondowns_daily_cap_is_a_deferral_not_a_loss(buttondown, monkeypatch):
    _, config = buttondown
    monkeypatch.setattr("fakes.buttondown.SUBSCRIBERS_PER_DAY", 1)
    client = create_app(config, environ=ENV, clock=lambda: FIXED_NOW).test_client()
    for address in ("a@example.org", "b@example.org"):
        client.post("/subscribe", data={"email": address})
    report = flush(config)
    assert (report.sent, report.deferred, report.failed) == (1, 1, 0)
    assert [row[:2] for row in outgoing(config)] == [("a@example.org", "sent"), ("b@example.org", "queued")]


def test_the_fake_subscriber_endpoint_follows_the_documented_contract(buttondown):
    import requests

    fake, _ = buttondown
    auth = {"Authorization": f"Token {BUTTONDOWN_KEY}"}
    url = fake.url + "/v1/subscribers"
    assert requests.post(url, json={"email_address": "x@example.org"}).status_code == 401
    extra = requests.post(url, json={"email_address": "x@example.org", "colour": "red"}, headers=auth)
    assert extra.status_code == 422 and extra.json()["detail"][0]["type"] == "extra_forbidden"
    assert requests.post(url, json={}, headers=auth).json()["detail"][0]["type"] == "missing"
    assert requests.post(url, json={"email_address": "nope"}, headers=auth).json()["code"] == "email_invalid"
    created = requests.post(url, json={"email_address": "x@example.org", "tags": ["a"]}, headers=auth)
    assert created.status_code == 201 and created.json()["id"].startswith("sub_")
    again = requests.post(url, json={"email_address": "x@example.org"},
                          headers={**auth, "X-Buttondown-Collision-Behavior": "no_op"})  # fmt: skip
    assert again.status_code == 400 and again.json()["code"] == "email_already_exists"
    added = requests.post(url, json={"email_address": "x@example.org", "tags": ["b"]},
                          headers={**auth, "X-Buttondown-Collision-Behavior": "add"})  # fmt: skip
    assert added.status_code == 200 and added.json()["tags"] == ["a", "b"]
