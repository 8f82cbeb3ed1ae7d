"""Webhooks that cannot be replayed or abused, over real HTTP to the production server (waitress).

Mailgun signs only ``timestamp + token``: a captured signature must not carry other event data.
Resend (Svix) and Postmark get the same rules: one-time ids remembered, stale timestamps refused,
and nothing an unauthenticated client sends answers 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
from datetime import timedelta

import pytest
import requests

from checks import MAILGUN_KEY, RESEND_SECRET, SERVICE_ENV, Clock
from conftest import FIXED_NOW
from newsletter.store import Ledger
from newsletter.web import create_app, make_server
from newsletter.webhooks import MAX_WEBHOOK_BYTES, BadPayload, nesting_depth, read_json

POSTMARK_AUTH = "Basic " + base64.b64encode(b"newsletter:pm-hook-password").decode()
ENV = SERVICE_ENV


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(config, clock):
    """The real WSGI server on a free loopback port; yields its base URL."""
    server = make_server(create_app(config, clock=clock, environ=ENV), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    host, port = server.socket.getsockname()[:2]
    yield f"http://{host}:{port}"
    server.close()  # from inside the server's own loop, and waits for it to end
    thread.join(timeout=10)
    assert not thread.is_alive()


def add_active(config, email: str) -> None:
    ledger = Ledger(config.database_path)
    try:
        ledger.subscribers.add_subscriber(email, source="test", now=FIXED_NOW)
    finally:
        ledger.close()


def status_of(config, email: str) -> str | None:
    with sqlite3.connect(config.database_path) as db:
        row = db.execute("SELECT status FROM subscribers WHERE email = ?", [email]).fetchone()
    return row[0] if row else None


def mailgun_body(event: dict, *, token: str, timestamp: int | None = None, key: str = MAILGUN_KEY) -> bytes:
    timestamp = int(FIXED_NOW.timestamp()) if timestamp is None else timestamp
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
                       "event-data": event}).encode()  # fmt: skip


def svix_headers(body: bytes, *, message_id: str, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(FIXED_NOW.timestamp()) if timestamp is None else timestamp
    key = base64.b64decode(RESEND_SECRET.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return {"svix-id": message_id, "svix-timestamp": str(timestamp), "svix-signature": f"v1,{signature.decode()}"}


def resend_bounce(address: str) -> bytes:
    return json.dumps({"type": "email.bounced", "data": {"to": [address], "bounce": {"type": "Permanent"}}}).encode()


def test_a_captured_mailgun_signature_replayed_with_other_event_data_is_refused(service, config):
    add_active(config, "ann@example.org")
    add_active(config, "bob@example.org")
    token = "a" * 50
    first = mailgun_body({"event": "failed", "severity": "temporary", "recipient": "ann@example.org"}, token=token)
    assert requests.post(f"{service}/webhooks/mailgun", data=first, timeout=10).status_code == 200
    # The attacker keeps the signature block and swaps the event: same token, other body.
    forged = json.loads(first)
    forged["event-data"] = {"event": "complained", "recipient": "bob@example.org"}
    answer = requests.post(f"{service}/webhooks/mailgun", data=json.dumps(forged).encode(), timeout=10)
    assert answer.status_code == 401
    assert status_of(config, "bob@example.org") == "active"
    # The provider retrying the very same call (its answer was lost) changes nothing and is not an error.
    assert requests.post(f"{service}/webhooks/mailgun", data=first, timeout=10).status_code == 200
    assert status_of(config, "ann@example.org") == "active"


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_mailgun_timestamps_outside_five_minutes_of_the_service_clock_are_refused(service, config, skew):
    add_active(config, "ann@example.org")
    event = {"event": "complained", "recipient": "ann@example.org"}
    stale = mailgun_body(event, token=f"stale{skew}", timestamp=int(FIXED_NOW.timestamp()) + skew)
    assert requests.post(f"{service}/webhooks/mailgun", data=stale, timeout=10).status_code == 401
    assert status_of(config, "ann@example.org") == "active"


def test_the_window_follows_the_injected_clock(service, config, clock):
    add_active(config, "ann@example.org")
    body = mailgun_body({"event": "complained", "recipient": "ann@example.org"}, token="b" * 50)
    clock.now = FIXED_NOW + timedelta(minutes=6)
    assert requests.post(f"{service}/webhooks/mailgun", data=body, timeout=10).status_code == 401
    clock.now = FIXED_NOW + timedelta(minutes=4)
    assert requests.post(f"{service}/webhooks/mailgun", data=body, timeout=10).status_code == 200
    assert status_of(config, "ann@example.org") == "complained"


def test_a_svix_id_cannot_be_used_twice_with_another_body_and_stale_ones_are_refused(service, config):
    add_active(config, "ann@example.org")
    add_active(config, "bob@example.org")
    url = f"{service}/webhooks/resend"
    body = resend_bounce("ann@example.org")
    assert requests.post(url, data=body, headers=svix_headers(body, message_id="msg_A"), timeout=10).status_code == 200
    other = resend_bounce("bob@example.org")
    # Validly signed (Svix signs the body), but a second use of msg_A: only a replay can do that.
    replay = requests.post(url, data=other, headers=svix_headers(other, message_id="msg_A"), timeout=10)
    assert replay.status_code == 401
    assert status_of(config, "bob@example.org") == "active"
    old = svix_headers(other, message_id="msg_B", timestamp=int(FIXED_NOW.timestamp()) - 600)
    assert requests.post(url, data=other, headers=old, timeout=10).status_code == 401
    assert status_of(config, "bob@example.org") == "active"
    assert status_of(config, "ann@example.org") == "bounced"


def test_postmark_events_are_deduplicated_by_their_own_id(service, config):
    add_active(config, "ann@example.org")
    add_active(config, "bob@example.org")
    url = f"{service}/webhooks/postmark"
    first = {"RecordType": "SpamComplaint", "ID": 7, "MessageID": "m-1", "Email": "ann@example.org"}
    headers = {"Authorization": POSTMARK_AUTH}
    assert requests.post(url, data=json.dumps(first), headers=headers, timeout=10).status_code == 200
    again = {**first, "Email": "bob@example.org"}
    assert requests.post(url, data=json.dumps(again), headers=headers, timeout=10).status_code == 401
    assert status_of(config, "bob@example.org") == "active"
    without_id = {"RecordType": "Bounce", "Type": "HardBounce", "Email": "bob@example.org"}
    assert requests.post(url, data=json.dumps(without_id), headers=headers, timeout=10).status_code == 400
    by_message = {"RecordType": "Bounce", "Type": "HardBounce", "MessageID": "m-2", "BouncedAt": "2026-11-26T12:00:00Z",
                  "Email": "bob@example.org"}  # fmt: skip
    assert requests.post(url, data=json.dumps(by_message), headers=headers, timeout=10).status_code == 200
    assert status_of(config, "bob@example.org") == "bounced"


@pytest.mark.parametrize("provider", ["mailgun", "postmark", "resend"])
@pytest.mark.parametrize("depth", [5000, 40_000])
def test_json_nested_thousands_deep_answers_400_never_500(service, config, provider, depth):
    body = b"[" * depth + b"]" * depth
    if provider == "mailgun":
        body = b'{"signature": ' + b"{\"a\":" * depth + b"1" + b"}" * depth + b"}"
    headers = {"Authorization": POSTMARK_AUTH}
    if provider == "resend":
        headers = svix_headers(body, message_id=f"deep{depth}")
    answer = requests.post(f"{service}/webhooks/{provider}", data=body, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text


@pytest.mark.parametrize("provider", ["mailgun", "postmark", "resend"])
def test_malformed_and_oversized_bodies_are_refused_without_an_internal_error(service, provider):
    url = f"{service}/webhooks/{provider}"
    headers = {"Authorization": POSTMARK_AUTH}
    for body in (b"", b"\xff\xfe", b"null", b"[1, 2]", b'{"a": ', b'"text"', b"{" * 33 + b"}" * 33):
        signed = {**headers, **svix_headers(body, message_id="m")} if provider == "resend" else headers
        answer = requests.post(url, data=body, headers=signed, timeout=10)
        assert answer.status_code == 400, (body, answer.status_code)
    huge = b"{" + b" " * (MAX_WEBHOOK_BYTES + 10) + b"}"
    assert requests.post(url, data=huge, headers=headers, timeout=30).status_code == 413


def test_unknown_and_webhookless_providers_are_not_found(service):
    for name in ("nobody", "outbox", "smtp", "buttondown"):
        assert requests.post(f"{service}/webhooks/{name}", data=b"{}", timeout=10).status_code == 404


def test_the_depth_check_ignores_brackets_inside_strings():
    assert nesting_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}') == 1
    assert read_json(b'{"a": "' + b"[" * 1000 + b'"}') == {"a": "[" * 1000}
    with pytest.raises(BadPayload):
        read_json(b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}")
