"""The subscription service over real WSGI requests (Flask's test client): consent, double opt-in,
one-click unsubscribe, the archive's media types and validators, signed webhooks."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import itertools
import json
import sqlite3
from datetime import timedelta

import pytest

from checks import SERVICE_ENV, Clock
from conftest import FIXED_NOW, TOKEN_KEY
from newsletter.config import Secret
from newsletter.outgoing import flush_outgoing
from newsletter.store import Ledger
from newsletter.tokens import CONFIRM, UNSUBSCRIBE, make_token
from newsletter.web import create_app

KEY = [Secret("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)]
ENV = SERVICE_ENV


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(config, clock):
    app = create_app(config, clock=clock, environ=ENV)
    return app.test_client()


def flush(config, now=FIXED_NOW):
    """What the service's background worker does: send the queued confirmation mails."""
    return flush_outgoing(config, environ=ENV, clock=lambda: now)


def status_of(config, email: str) -> str | None:
    with sqlite3.connect(config.database_path) as db:
        row = db.execute("SELECT status FROM subscribers WHERE email = ?", [email]).fetchone()
    return row[0] if row else None


def confirmation_links(config) -> list[str]:
    import email
    import email.policy

    links = []
    for path in sorted((config.root / "outbox" / "new").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        links += [line for line in text.splitlines() if "/confirm/" in line]
    return links


def add_active(config, email: str) -> int:
    ledger = Ledger(config.database_path)
    try:
        return ledger.subscribers.add_subscriber(email, source="test", now=FIXED_NOW)[0]
    finally:
        ledger.close()


# -- subscribe and confirm ----------------------------------------------------------------------


def test_subscribe_creates_pending_with_consent_and_sends_a_confirmation_LAW_04(client, config):
    response = client.post("/subscribe", data={"email": "Zoe@Example.org"}, headers={"User-Agent": "Test/1"})
    flush(config)
    assert response.status_code == 200
    assert status_of(config, "zoe@example.org") == "pending"
    with sqlite3.connect(config.database_path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM subscribers").fetchone()
    assert row["consent_source"] == "form" and row["consent_text_version"] and row["consent_at"]
    assert row["consent_user_agent"] == "Test/1" and row["confirmed_at"] is None
    (link,) = confirmation_links(config)
    assert link.startswith(config.site.base_url + "confirm/")


def test_the_answer_never_reveals_whether_an_address_was_known(client, config):
    add_active(config, "known@example.org")
    new = client.post("/subscribe", data={"email": "new@example.org"})
    known = client.post("/subscribe", data={"email": "known@example.org"})
    flush(config)
    assert new.status_code == known.status_code == 200
    assert new.data == known.data
    assert status_of(config, "known@example.org") == "active"
    assert len(confirmation_links(config)) == 1  # the active address got no email


def test_subscribe_is_rate_limited_per_address(client):
    codes = [client.post("/subscribe", data={"email": f"r{n}@example.org"}).status_code for n in range(7)]
    assert codes == [200] * 5 + [429] * 2
    other = client.post("/subscribe", data={"email": "x@example.org"}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert other.status_code == 200


def test_invalid_address_and_honeypot(client, config):
    assert client.post("/subscribe", data={"email": "not an address"}).status_code == 400
    assert client.post("/subscribe", data={"email": "bot@example.org", "website": "x"}).status_code == 200
    flush(config)
    assert status_of(config, "bot@example.org") is None


def test_confirm_get_changes_nothing_and_post_confirms_once(client, config):
    client.post("/subscribe", data={"email": "zoe@example.org"})
    flush(config)
    path = confirmation_links(config)[0].removeprefix(config.site.base_url.rstrip("/"))
    for _ in range(3):  # link scanners prefetch
        page = client.get(path)
        assert page.status_code == 200 and b'<form method="post"' in page.data
    assert status_of(config, "zoe@example.org") == "pending"
    assert client.post(path).status_code == 200
    assert status_of(config, "zoe@example.org") == "active"
    again = client.post(path)
    assert again.status_code == 400  # single use


def test_confirmation_tokens_expire(client, config, clock):
    client.post("/subscribe", data={"email": "zoe@example.org"})
    flush(config)
    path = confirmation_links(config)[0].removeprefix(config.site.base_url.rstrip("/"))
    clock.now = FIXED_NOW + timedelta(days=4)
    assert client.post(path).status_code == 400
    assert status_of(config, "zoe@example.org") == "pending"


def test_unconfirmed_subscribers_receive_no_issue_LAW_06(client, config, run):
    client.post("/subscribe", data={"email": "zoe@example.org"})
    flush(config)
    add_active(config, "ann@example.org")
    assert run("send", "--yes").exit_code == 0
    issues = [p for p in (config.root / "outbox" / "new").glob("*.eml") if not p.name.startswith("confirm-")]
    assert len(issues) == 1


# -- unsubscribe ----------------------------------------------------------------------------------


def unsubscribe_path(subscriber_id: int, config, issued=FIXED_NOW) -> str:
    token = make_token(KEY, purpose=UNSUBSCRIBE, list_id=config.email.list_id, subscriber_id=subscriber_id,
                       issued_at=issued)  # fmt: skip
    return f"/unsubscribe/{token}"


def test_unsubscribe_get_shows_a_button_and_changes_nothing_LIST_04(client, config):
    path = unsubscribe_path(add_active(config, "ann@example.org"), config)
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200 and b'id="unsubscribe"' in page.data
    assert status_of(config, "ann@example.org") == "active"


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_one_click_post_is_200_without_redirect_or_cookie_RFC_8058(client, config, encoding):
    """LIST-04, SEC-10: both body encodings, no redirect, no cookie, repeated POSTs harmless."""
    path = unsubscribe_path(add_active(config, "ann@example.org"), config)
    body = {"List-Unsubscribe": "One-Click"}
    for _ in range(2):
        if encoding == "form":
            response = client.post(path, data=body)
        else:
            response = client.post(path, data=body, content_type="multipart/form-data")
        assert response.status_code == 200
        assert "Location" not in response.headers and "Set-Cookie" not in response.headers
    assert status_of(config, "ann@example.org") == "unsubscribed"


def test_tokens_from_issues_months_old_still_unsubscribe_LAW_02(client, config, clock):
    path = unsubscribe_path(add_active(config, "ann@example.org"), config, issued=FIXED_NOW - timedelta(days=200))
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert status_of(config, "ann@example.org") == "unsubscribed"


@pytest.mark.parametrize("kind", ["tampered", "foreign-key", "confirm-token", "garbage"])
def test_bad_tokens_are_refused_without_detail(client, config, kind):
    subscriber = add_active(config, "ann@example.org")
    good = unsubscribe_path(subscriber, config).rsplit("/", 1)[1]
    token = {
        "tampered": good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB"),
        "foreign-key": make_token([Secret("x", "another-key")], purpose=UNSUBSCRIBE, list_id=config.email.list_id,
                                  subscriber_id=subscriber, issued_at=FIXED_NOW),
        "confirm-token": make_token(KEY, purpose=CONFIRM, list_id=config.email.list_id, subscriber_id=subscriber,
                                    issued_at=FIXED_NOW),
        "garbage": "../../etc/passwd",
    }[kind]  # fmt: skip
    for method in (client.get, client.post):
        response = method(f"/unsubscribe/{token}")
        assert response.status_code in (400, 404, 405)  # a path-like token never reaches a handler
        assert b"signature" not in response.data.lower() and b"Traceback" not in response.data
    assert status_of(config, "ann@example.org") == "active"


def test_an_unsubscribe_is_effective_for_the_very_next_send_BULK_04(client, config, run):
    ann = add_active(config, "ann@example.org")
    add_active(config, "bob@example.org")
    client.post(unsubscribe_path(ann, config), data={"List-Unsubscribe": "One-Click"})
    assert run("send", "--yes").exit_code == 0
    import email
    import email.policy

    recipients = [str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"])
                  for p in (config.root / "outbox" / "new").glob("*.eml")]  # fmt: skip
    assert recipients == ["bob@example.org"]


# -- the archive ----------------------------------------------------------------------------------


def test_archive_media_types_and_conditional_requests_HTTP_01_HTTP_02(client, run):
    assert run("build").exit_code == 0
    feed = client.get("/feed.xml")
    assert feed.status_code == 200 and feed.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    etag, modified = feed.headers["ETag"], feed.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert client.get("/feed.xml", headers={"If-None-Match": etag}).status_code == 304
    not_modified = client.get("/feed.xml", headers={"If-Modified-Since": modified})
    assert not_modified.status_code == 304 and not_modified.data == b""
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
    both = client.get("/feed.xml", headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert both.status_code == 200
    page = client.get("/e20-petite-entreprise/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert client.get("/").status_code == 200
    assert client.get("/../newsletter.toml").status_code == 404


# -- webhooks -------------------------------------------------------------------------------------


SIGNED_AT = int(FIXED_NOW.timestamp())  # the service's clock is the test clock
_calls = itertools.count()


def mailgun_body(
    event: dict, key: str = "mg-signing-key", timestamp: str | None = None, token: str | None = None
) -> bytes:
    timestamp = timestamp or str(SIGNED_AT)
    token = token or f"token{next(_calls):045d}"  # Mailgun's tokens are one-time values
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                       "event-data": event}).encode()  # fmt: skip


def svix_headers(
    body: bytes,
    secret: str = ENV["NEWSLETTER_RESEND_WEBHOOK_SECRET"],
    timestamp: int | None = None,
    message_id: str = "msg_1",
):
    timestamp = timestamp or SIGNED_AT
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return {"svix-id": message_id, "svix-timestamp": str(timestamp), "svix-signature": f"v1,{signature.decode()}"}


def test_mailgun_permanent_failure_suppresses_and_bad_signature_changes_nothing(client, config):
    add_active(config, "ann@example.org")
    event = {"event": "failed", "severity": "permanent", "recipient": "ann@example.org"}
    assert client.post("/webhooks/mailgun", data=mailgun_body(event, key="wrong")).status_code == 401
    stale = mailgun_body(event, timestamp=str(SIGNED_AT - 3600))
    assert client.post("/webhooks/mailgun", data=stale).status_code == 401
    assert status_of(config, "ann@example.org") == "active"
    assert client.post("/webhooks/mailgun", data=mailgun_body(event)).status_code == 200
    assert status_of(config, "ann@example.org") == "bounced"


def test_postmark_credentials_and_complaint(client, config):
    add_active(config, "ann@example.org")
    body = json.dumps(
        {"RecordType": "SpamComplaint", "ID": 42, "MessageID": "m-1", "Email": "ann@example.org"}
    ).encode()
    good = "Basic " + base64.b64encode(b"newsletter:pm-hook-password").decode()
    bad = "Basic " + base64.b64encode(b"newsletter:guess").decode()
    assert client.post("/webhooks/postmark", data=body, headers={"Authorization": bad}).status_code == 401
    assert client.post("/webhooks/postmark", data=body).status_code == 401
    assert status_of(config, "ann@example.org") == "active"
    assert client.post("/webhooks/postmark", data=body, headers={"Authorization": good}).status_code == 200
    assert status_of(config, "ann@example.org") == "complained"


def test_resend_svix_signature_and_bounce(client, config):
    add_active(config, "ann@example.org")
    body = json.dumps(
        {"type": "email.bounced", "data": {"to": ["ann@example.org"], "bounce": {"type": "Permanent"}}}
    ).encode()
    forged = svix_headers(body, secret="whsec_" + base64.b64encode(b"not-the-secret").decode())
    assert client.post("/webhooks/resend", data=body, headers=forged).status_code == 401
    tampered = svix_headers(body)
    assert client.post("/webhooks/resend", data=body.replace(b"ann", b"bob"), headers=tampered).status_code == 401
    assert status_of(config, "ann@example.org") == "active"
    assert client.post("/webhooks/resend", data=body, headers=svix_headers(body)).status_code == 200
    assert status_of(config, "ann@example.org") == "bounced"


def test_a_suppressed_address_receives_nothing_and_is_never_reimported(client, config, run):
    add_active(config, "ann@example.org")
    add_active(config, "bob@example.org")
    event = {"event": "complained", "recipient": "ann@example.org"}
    assert client.post("/webhooks/mailgun", data=mailgun_body(event)).status_code == 200
    # Unknown addresses are suppressed too, before they ever subscribe.
    client.post("/webhooks/mailgun", data=mailgun_body({"event": "complained", "recipient": "eve@example.org"}))
    source = config.root / "again.csv"
    source.write_text("email\nann@example.org\neve@example.org\n")
    assert "suppressed 2" in run("subscribers", "import", str(source)).stdout
    client.post("/subscribe", data={"email": "eve@example.org"})
    flush(config)
    assert status_of(config, "eve@example.org") is None
    assert run("send", "--yes").exit_code == 0
    names = [p.name for p in (config.root / "outbox" / "new").glob("*.eml") if not p.name.startswith("confirm-")]
    assert len(names) == 1


def test_webhooks_without_a_configured_secret_are_refused(config):
    app = create_app(config, environ={"NEWSLETTER_TOKEN_KEY": TOKEN_KEY})
    response = app.test_client().post("/webhooks/mailgun", data=b"{}")
    assert response.status_code == 404


# -- import at scale --------------------------------------------------------------------------------


def test_import_of_10000_addresses_reports_exact_counts_per_kind(run, project, config):
    """10% bad: 400 invalid, 300 duplicates, 300 suppressed (unsubscribed, bounced or complained)."""
    ledger = Ledger(config.database_path)
    suppressed = [f"gone{n}@example.org" for n in range(300)]
    for n, address in enumerate(suppressed):
        subscriber_id, _ = ledger.subscribers.add_subscriber(address, source="old", now=FIXED_NOW)
        ledger.subscribers.set_status(subscriber_id, ("unsubscribed", "bounced", "complained")[n % 3], now=FIXED_NOW)
    ledger.close()
    rows = [f"reader{n}@example.org" for n in range(9000)]
    rows += [f"not-an-address-{n}" for n in range(400)]
    rows += [f"reader{n}@example.org" for n in range(300)]  # duplicates within the file
    rows += suppressed
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email"])
    writer.writerows([r] for r in rows)
    (project / "big.csv").write_text(buffer.getvalue())
    outcome = run("subscribers", "import", str(project / "big.csv"))
    assert "Imported 9000, duplicates 300, suppressed 300, invalid 400;" in outcome.stdout
    assert outcome.stderr.count("\n") == 400
    with sqlite3.connect(config.database_path) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM subscribers GROUP BY status").fetchall())
    assert counts == {"active": 9000, "unsubscribed": 100, "bounced": 100, "complained": 100}


# -- bounded, malformed and hostile requests (never a 500) ------------------------------------------


def test_bodies_over_the_limit_are_413_for_forms_and_webhooks(client):
    from newsletter.web import MAX_BODY_BYTES

    big = b"email=" + b"a" * MAX_BODY_BYTES
    response = client.post("/subscribe", data=big, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and response.data == b"413 Request Entity Too Large\n"
    assert client.post("/webhooks/mailgun", data=b"{" + b" " * MAX_BODY_BYTES + b"}").status_code == 413
    # Routes that never read their body (unsubscribe) are bounded by waitress itself: test_service.py.


HOSTILE = [
    ("POST", "/subscribe", b"email=%ZZ%&x=%", "application/x-www-form-urlencoded"),
    ("POST", "/subscribe", b"email=\xff\xfe\x00@example.org", "application/x-www-form-urlencoded"),
    ("POST", "/subscribe", b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\na@b.c", "multipart/form-data"),
    ("POST", "/subscribe", b"--b\r\n" * 5000, "multipart/form-data; boundary=b"),
    ("POST", "/subscribe", b"a=1&" * 5000, "application/x-www-form-urlencoded"),
    ("POST", "/subscribe", b"email=" + b"a" * 100_000 + b"@example.org", "application/x-www-form-urlencoded"),
    ("POST", "/subscribe", b'{"email": "a@b.c"}', "application/json"),
    ("POST", "/subscribe", b"email=a@b.c", "application/x-www-form-urlencoded; charset=no-such-charset"),
    ("POST", "/confirm/" + "A" * 5000, b"", None),
    ("POST", "/confirm/..%2F..%2F", b"", None),
    ("GET", "/unsubscribe/%00%ff", b"", None),
    ("POST", "/unsubscribe/" + "x." * 2000, b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
    ("GET", "/..%2f..%2fetc/passwd", b"", None),
    ("GET", "/%00", b"", None),
    ("PUT", "/subscribe", b"email=a@b.c", "application/x-www-form-urlencoded"),
    ("DELETE", "/unsubscribe/abc", b"", None),
    ("POST", "/webhooks/" + "n" * 3000, b"{}", "application/json"),
    ("POST", "/webhooks/postmark", b"\xff" * 1000, "application/json"),
    ("POST", "/webhooks/mailgun", b"[" * 50_000 + b"]" * 50_000, "application/json"),
    ("POST", "/webhooks/postmark", b'{"a":' * 30_000 + b"1" + b"}" * 30_000, "application/json"),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type"), HOSTILE)
def test_hostile_requests_get_a_4xx_never_a_500_or_internals(client, method, path, body, content_type):
    response = client.open(path, method=method, data=body, content_type=content_type)
    assert 200 <= response.status_code < 500, (response.status_code, response.data[:200])
    assert b"Traceback" not in response.data and b"werkzeug" not in response.data.lower()
