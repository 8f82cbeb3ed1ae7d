"""Self-tests of the fake provider servers (tests/fakes), over real HTTP with ``requests``.

Each test names the provider fact it checks; the facts come from
each provider's public API documentation.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from urllib3.util import SKIP_HEADER

from fakes import FakeButtondown, FakeMailgun, FakePostmark, FakeResend, Fault

SUBSCRIBERS = ["ann@example.org", "bob@example.org", "cy@example.org"]


# -- helpers: one well-formed request per provider ---------------------------------------------

def bd(fake, method, path, *, headers=None, **kw):
    head = {"Authorization": f"Token {fake.api_key}", **(headers or {})}
    return requests.request(method, fake.url + "/v1" + path, headers=head, timeout=kw.pop("timeout", 5), **kw)


def mg_fields(to=("ann@example.org",), rvars=None, tags=("issue-1",), html="<p>Hi %recipient.name%</p>", **extra):
    fields = [("from", "News <news@mg.example.org>"), ("subject", "Issue 1"), ("html", html), ("text", "Hi")]
    fields += [("to", address) for address in to] + [("o:tag", tag) for tag in tags]
    if rvars is not None:
        fields.append(("recipient-variables", json.dumps(rvars)))
    fields += list(extra.items())
    return [(name, (None, value)) for name, value in fields]


def mg_send(fake, files, *, auth=None, **kw):
    return requests.post(f"{fake.url}/v3/{fake.domain}/messages", auth=auth or ("api", fake.api_key),
                         files=files, timeout=kw.pop("timeout", 5), **kw)


def pm_message(to="ann@example.org", **extra):
    return {"From": "news@example.org", "To": to, "Subject": "Issue 1", "HtmlBody": "<p>Hi</p>",
            "TextBody": "Hi", "MessageStream": "broadcast", "Metadata": {"issue_id": "i1", "chunk": "0"},
            "Headers": [{"Name": "List-Unsubscribe", "Value": f"<https://example.org/u/{to}>"}], **extra}


def pm(fake, method, path, *, headers=None, **kw):
    head = {"X-Postmark-Server-Token": fake.server_token, "Accept": "application/json",
            "Content-Type": "application/json", **(headers or {})}
    return requests.request(method, fake.url + path, headers=head, timeout=kw.pop("timeout", 5), **kw)


def rs_email(to="ann@example.org", **extra):
    return {"from": "News <news@example.org>", "to": [to], "subject": "Issue 1", "html": "<p>Hi</p>",
            "text": "Hi", "headers": {"List-Unsubscribe": f"<https://example.org/u/{to}>"},
            "tags": [{"name": "issue", "value": "i1"}], **extra}


def rs(fake, json_body, *, path="/emails/batch", headers=None, **kw):
    head = {"Authorization": f"Bearer {fake.api_key}", "User-Agent": "newsletter-tests/1", **(headers or {})}
    return requests.post(fake.url + path, json=json_body, headers=head, timeout=kw.pop("timeout", 5), **kw)


def send_ok(fake):
    """One request that the fake accepts, whatever the provider."""
    if isinstance(fake, FakeMailgun):
        return mg_send(fake, mg_fields())
    if isinstance(fake, FakePostmark):
        return pm(fake, "POST", "/email/batch", json=[pm_message()])
    if isinstance(fake, FakeResend):
        return rs(fake, [rs_email()])
    return bd(fake, "POST", "/emails", json={"subject": "Hi", "body": "Hello", "status": "draft"})


ALL = [FakeButtondown, FakeMailgun, FakePostmark, FakeResend]


# -- base machinery ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL)
def test_fake_serves_loopback_and_stops(cls):
    """Every fake listens on 127.0.0.1 with an OS-chosen port and is gone after the ``with``."""
    session = requests.Session()
    with cls() as fake:
        url = fake.url
        assert url.startswith("http://127.0.0.1:")
        assert send_ok(fake).status_code in (200, 201)
        assert len(fake.requests) == 1 and fake.requests[0].processed
        assert session.get(url + "/nothing-here", timeout=1).status_code >= 400  # a kept-alive connection
    for client in (requests, session):
        with pytest.raises(requests.ConnectionError):
            client.get(url, timeout=1)


@pytest.mark.parametrize("cls", ALL)
def test_drop_closes_without_processing(cls):
    """Fault.drop: the client sees a dropped connection and nothing is recorded as accepted."""
    with cls() as fake:
        fake.inject(Fault.drop())
        with pytest.raises(requests.ConnectionError):
            send_ok(fake)
        assert fake.requests[0].fault == "drop" and not fake.requests[0].processed
        assert fake.delivered == [] and send_ok(fake).ok  # only the next request was dropped


def test_accept_then_drop_records_then_a_retry_without_key_sends_twice():
    """Mailgun has no idempotency (Mailgun API docs): a blind retry after a lost answer delivers twice."""
    with FakeMailgun() as fake:
        fake.inject(Fault.accept_then_drop())
        with pytest.raises(requests.ConnectionError):
            mg_send(fake, mg_fields())
        assert fake.count_by_recipient()["ann@example.org"] == 1
        assert mg_send(fake, mg_fields()).status_code == 200
        assert fake.count_by_recipient()["ann@example.org"] == 2


def test_slow_answer_times_out_but_the_message_lands():
    """Fault.slow(process=True): the client's timeout fires, yet the provider accepted the message."""
    with FakePostmark() as fake:
        fake.inject(Fault.slow(2.0))
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            pm(fake, "POST", "/email/batch", json=[pm_message()], timeout=0.2)
        assert time.monotonic() - started < 1.5
        assert [d.address for d in fake.delivered] == ["ann@example.org"]


def test_slow_without_processing_lands_nothing():
    """Fault.slow(process=False): a timeout where the provider did nothing."""
    with FakeResend() as fake:
        fake.inject(Fault.slow(2.0, process=False))
        with pytest.raises(requests.Timeout):
            rs(fake, [rs_email()], timeout=0.2)
        assert fake.delivered == [] and fake.emails == {}


def test_fault_times_and_path_filter():
    """Faults apply to the next N matching requests only; other paths are untouched."""
    with FakeMailgun() as fake:
        fake.inject(Fault.http(503, times=2, path="/messages$"))
        events = requests.get(f"{fake.url}/v3/{fake.domain}/events", auth=("api", fake.api_key), timeout=5)
        assert events.status_code == 200
        assert [mg_send(fake, mg_fields()).status_code for _ in range(3)] == [503, 503, 200]


def test_fault_rate_is_seeded_and_mixed():
    """fault_rate(p, seed): the same seed gives the same faults; accepted counts stay exact."""

    def outcomes(seed):
        with FakeResend() as fake:
            fake.fault_rate(0.5, seed=seed)
            seen = []
            for n in range(30):
                try:
                    seen.append(rs(fake, [rs_email(f"r{n}@example.org")]).status_code)
                except requests.ConnectionError:
                    seen.append("dropped")
            kinds = [r.fault for r in fake.requests]
            accepted = sum(1 for r in fake.requests if r.processed)
            assert sum(fake.count_by_recipient().values()) == accepted
            return seen, kinds

    first, kinds = outcomes(7)
    assert first == outcomes(7)[0]
    assert {429, 500, 503, "dropped", 200} <= set(first)
    assert "accept_then_drop" in kinds and "drop" in kinds


def test_fault_rate_with_idempotency_keys_delivers_exactly_once():
    """Soak pattern: random transient faults + retries with the same Idempotency-Key (Resend, §5)."""
    recipients = [f"r{n}@example.org" for n in range(200)]
    with FakeResend() as fake:
        fake.fault_rate(0.4, seed=3)
        for chunk_no in range(0, len(recipients), 20):
            head = {"Idempotency-Key": f"issue-1/{chunk_no}"}
            for _attempt in range(20):
                try:
                    if rs(fake, [rs_email(a) for a in recipients[chunk_no:chunk_no + 20]], headers=head).ok:
                        break
                except requests.ConnectionError:
                    pass
        assert {r.fault for r in fake.requests} >= {None, "http", "drop", "accept_then_drop"}
        assert fake.count_by_recipient() == {a: 1 for a in recipients}


@pytest.mark.parametrize("cls", [FakeButtondown, FakeMailgun])
def test_partial_fault_refused_where_the_provider_has_none(cls):
    """Only Postmark and Resend batches can partly fail."""
    with pytest.raises(ValueError):
        cls().inject(Fault.partial(indexes=[0]))


ERROR_SHAPES = {
    FakeButtondown: lambda r: "detail" in r.json(),
    FakeMailgun: lambda r: r.text == "Forbidden" if r.status_code == 401 else "message" in r.json(),
    FakePostmark: lambda r: set(r.json()) == {"ErrorCode", "Message"},
    FakeResend: lambda r: set(r.json()) == {"statusCode", "name", "message"}
    and r.json()["statusCode"] == r.status_code,
}


@pytest.mark.parametrize("status", [401, 413, 422, 429, 500, 503])
@pytest.mark.parametrize("cls", ALL)
def test_injected_status_uses_the_provider_error_shape(cls, status):
    """Fault.http(status): the provider's documented error body, nothing processed."""
    with cls() as fake:
        fake.inject(Fault.http(status))
        r = send_ok(fake)
        assert r.status_code == status and ERROR_SHAPES[cls](r)
        assert fake.delivered == [] and not fake.requests[0].processed


@pytest.mark.parametrize("cls,header", [(FakeButtondown, "1"), (FakeResend, "1"), (FakeMailgun, None),
                                        (FakePostmark, None)])
def test_429_retry_after_default_override_and_absent(cls, header):
    """Retry-After on 429: Buttondown and Resend document it, Mailgun and Postmark do not."""
    with cls() as fake:
        fake.inject(Fault.http(429), Fault.http(429, retry_after=7), Fault.http(429, retry_after=None))
        assert [send_ok(fake).headers.get("Retry-After") for _ in range(3)] == [header, "7", None]


def test_injected_body_and_headers_override():
    """Fault.http(body=..., headers=...) replaces the default error body."""
    with FakeResend() as fake:
        fake.inject(Fault.http(409, body={"statusCode": 409, "name": "resource_locked", "message": "x"},
                               headers={"X-Test": "1"}))
        r = rs(fake, [rs_email()])
        assert r.json()["name"] == "resource_locked" and r.headers["X-Test"] == "1"


# -- Buttondown ----------------------------------------------------------------------------------

def test_buttondown_refuses_bad_auth():
    """`Authorization: Token <key>`; otherwise 401 authentication_invalid (§2)."""
    with FakeButtondown() as fake:
        for value in (None, "Token nope", f"Bearer {fake.api_key}"):
            r = requests.post(fake.url + "/v1/emails", json={"subject": "x", "status": "draft"},
                              headers={"Authorization": value} if value else {}, timeout=5)
            assert r.status_code == 401 and r.json()["code"] == "authentication_invalid"
        assert fake.emails == {}


def test_buttondown_draft_then_send_reaches_each_subscriber_once():
    """Safe two-step flow: create with status draft, then PATCH status about_to_send (§2)."""
    with FakeButtondown(subscribers=SUBSCRIBERS) as fake:
        body = "Hi {{ subscriber.email }} <a href='{{ unsubscribe_url }}'>bye</a>"
        r = bd(fake, "POST", "/emails", json={"subject": "Issue 1", "body": body, "status": "draft"})
        assert r.status_code == 201 and r.json()["status"] == "draft" and r.json()["id"].startswith("em_")
        assert fake.delivered == []
        email_id = r.json()["id"]
        assert bd(fake, "PATCH", f"/emails/{email_id}", json={"status": "about_to_send"}).status_code == 200
        assert bd(fake, "POST", f"/emails/{email_id}/publish").status_code == 200  # already sending: no-op
        assert fake.count_by_recipient() == {a: 1 for a in SUBSCRIBERS}
        assert "Hi bob@example.org" in [d for d in fake.delivered if d.address == "bob@example.org"][0].html
        assert fake.emails[email_id]["status_history"] == ["draft", "about_to_send"]
        assert bd(fake, "GET", f"/emails/{email_id}").json()["status"] == "about_to_send"
        listed = bd(fake, "GET", "/emails", params={"subject": "Issue 1"}).json()
        assert listed["count"] == 1 and listed["results"][0]["id"] == email_id
        assert bd(fake, "GET", "/emails", params={"subject": "Other"}).json()["count"] == 0


def test_buttondown_publish_sends_a_draft():
    """POST /emails/{id}/publish sends a draft (api-emails-publish)."""
    with FakeButtondown(subscribers=SUBSCRIBERS) as fake:
        email_id = bd(fake, "POST", "/emails", json={"subject": "S", "status": "draft"}).json()["id"]
        r = bd(fake, "POST", f"/emails/{email_id}/publish", json={})
        assert r.status_code == 200 and r.json()["status"] == "about_to_send"
        assert sum(fake.count_by_recipient().values()) == 3


def test_buttondown_bare_create_sends_and_needs_confirmation():
    """status defaults to about_to_send; on 2026-04-01+ that needs X-Buttondown-Live-Dangerously (§2)."""
    with FakeButtondown(subscribers=SUBSCRIBERS) as fake:
        r = bd(fake, "POST", "/emails", json={"subject": "S", "body": "B"})
        assert r.status_code == 400 and r.json()["code"] == "sending_requires_confirmation"
        assert fake.emails == {} and fake.delivered == []
        r = bd(fake, "POST", "/emails", json={"subject": "S", "body": "B"},
               headers={"X-Buttondown-Live-Dangerously": "true"})
        assert r.status_code == 201 and r.json()["status"] == "about_to_send"
        assert fake.emails[r.json()["id"]]["status_defaulted"] is True
        assert len(fake.sends) == 1 and sum(fake.count_by_recipient().values()) == 3
    with FakeButtondown(subscribers=SUBSCRIBERS) as fake:
        r = bd(fake, "POST", "/emails", json={"subject": "S"}, headers={"X-API-Version": "2025-06-01"})
        assert r.status_code == 201 and len(fake.delivered) == 3


def test_buttondown_rejects_unknown_fields_and_front_matter():
    """422 extra_forbidden for unknown fields; 400 body_contains_frontmatter (§2)."""
    with FakeButtondown() as fake:
        r = bd(fake, "POST", "/emails", json={"subject": "S", "status": "draft", "from": "me@x.org"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "extra_forbidden" and r.json()["detail"][0]["loc"][-1] == "from"
        r = bd(fake, "POST", "/emails", json={"subject": "S", "status": "draft", "body": "---\ntitle: x\n---\nHi"})
        assert r.status_code == 400 and r.json()["code"] == "body_contains_frontmatter"
        assert set(r.json()) == {"code", "detail", "metadata"}
        assert bd(fake, "POST", "/emails", json={"status": "draft"}).json()["detail"][0]["type"] == "missing"
        assert fake.emails == {}


def test_buttondown_idempotency_key_replays_after_a_lost_answer():
    """X-Idempotency-Key: a replay returns the original answer and creates nothing (§2)."""
    with FakeButtondown(subscribers=SUBSCRIBERS) as fake:
        fake.inject(Fault.accept_then_drop())
        payload = {"subject": "S", "body": "B"}
        head = {"X-Idempotency-Key": "issue-1", "X-Buttondown-Live-Dangerously": "true"}
        with pytest.raises(requests.ConnectionError):
            bd(fake, "POST", "/emails", json=payload, headers=head)
        r = bd(fake, "POST", "/emails", json=payload, headers=head)
        assert r.status_code == 201 and list(fake.emails) == [r.json()["id"]]
        assert fake.count_by_recipient() == {a: 1 for a in SUBSCRIBERS}
        assert bd(fake, "POST", "/emails", json=payload, headers={**head, "X-Idempotency-Key": "k" * 201}
                  ).status_code == 400


def test_buttondown_send_draft_and_rate_limit_headers():
    """send-draft sends a preview only; X-RateLimit-* on every answer, 429 + Retry-After past the limit."""
    with FakeButtondown(subscribers=SUBSCRIBERS, rate_limit=3) as fake:
        email_id = bd(fake, "POST", "/emails", json={"subject": "S", "status": "draft"}).json()["id"]
        r = bd(fake, "POST", f"/emails/{email_id}/send-draft", json={"recipients": ["me@example.org"]})
        assert r.status_code == 200 and fake.sends[-1]["subject"] == "[PREVIEW] S" and fake.delivered == []
        assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "1"
        bd(fake, "GET", f"/emails/{email_id}")
        r = bd(fake, "GET", f"/emails/{email_id}")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.headers["X-RateLimit-Remaining"] == "0" and int(r.headers["X-RateLimit-Reset"]) > time.time()


# -- Mailgun -------------------------------------------------------------------------------------

def test_mailgun_refuses_bad_auth_and_urlencoded():
    """Basic api:<key> else 401 Forbidden; only multipart/form-data (§3 error table)."""
    with FakeMailgun() as fake:
        for auth in (("api", "wrong"), ("user", fake.api_key)):
            r = mg_send(fake, mg_fields(), auth=auth)
            assert r.status_code == 401 and r.text == "Forbidden"
        r = requests.post(f"{fake.url}/v3/{fake.domain}/messages", auth=("api", fake.api_key),
                          data={"from": "a@example.org", "to": "b@example.org", "subject": "s", "text": "t"}, timeout=5)
        assert r.status_code == 400 and r.json()["message"] == (
            "Invalid request content type. Expecting 'multipart/form-data' but got 'application/x-www-form-urlencoded'")
        assert mg_send(fake, mg_fields(), timeout=5).status_code == 200
        assert requests.post(f"{fake.url}/v3/other.org/messages", auth=("api", fake.api_key), files=mg_fields(),
                             timeout=5).status_code == 404


def test_mailgun_recipient_variables_give_each_recipient_their_own_message():
    """%recipient.KEY% is expanded per recipient, in html, text, h: headers and v: vars (§3)."""
    rvars = {a: {"name": a[0].upper(), "unsub": f"https://example.org/u/{a}"} for a in SUBSCRIBERS}
    with FakeMailgun() as fake:
        files = mg_fields(SUBSCRIBERS, rvars, html="<p>Hi %recipient.name%</p> %recipient.unsub%",
                          **{"h:List-Unsubscribe": "<%recipient.unsub%>", "v:recipient-id": "%recipient.name%"})
        r = mg_send(fake, files)
        assert r.status_code == 200 and r.json()["message"] == "Queued. Thank you."
        assert r.json()["id"].startswith("<") and r.json()["id"].endswith(f"@{fake.domain}>")
        assert fake.count_by_recipient() == {a: 1 for a in SUBSCRIBERS}
        for d in fake.delivered:
            assert d.headers["List-Unsubscribe"] == f"<https://example.org/u/{d.address}>"
            assert d.headers["To"] == d.address and f"/u/{d.address}" in d.html
            assert d.meta["user-variables"] == {"recipient-id": d.address[0].upper()}


def test_mailgun_validations():
    """Several `to` need recipient-variables (fake strictness); ≤3 o:tag; missing fields (§3)."""
    with FakeMailgun() as fake:
        assert mg_send(fake, mg_fields(SUBSCRIBERS)).status_code == 400
        assert mg_send(fake, mg_fields(tags=("a", "b", "c", "d"))).status_code == 400
        r = mg_send(fake, [f for f in mg_fields() if f[0] != "to"])
        assert r.status_code == 400 and r.json()["message"] == "to parameter is missing"
        r = mg_send(fake, mg_fields(SUBSCRIBERS[:2]) + [("recipient-variables", (None, "{bad"))])
        assert r.status_code == 400 and r.json()["message"] == "'recipient-variables' parameter is not a valid JSON"
        assert fake.delivered == []
        assert mg_send(fake, mg_fields(SUBSCRIBERS[:2], {SUBSCRIBERS[0]: {"name": "A"}})).status_code == 200
        assert [d.html for d in fake.delivered] == ["<p>Hi A</p>", "<p>Hi %recipient.name%</p>"]  # left as is


def test_mailgun_1000_recipient_cap():
    """At most 1,000 recipients per call: "Too many recipients, max is 1000" (§3)."""
    many = [f"r{n}@example.org" for n in range(1001)]
    with FakeMailgun() as fake:
        r = mg_send(fake, mg_fields(many, {a: {"name": "x"} for a in many}))
        assert r.status_code == 400 and r.json()["message"] == "Too many recipients, max is 1000"
        assert mg_send(fake, mg_fields(many[:1000], {a: {"name": "x"} for a in many[:1000]})).status_code == 200
        assert len(fake.count_by_recipient()) == 1000


def test_mailgun_events_by_tag_find_an_accepted_but_unanswered_batch():
    """GET /v3/<domain>/events?tags=… returns the accepted events of that tag (§3 reconciliation)."""
    with FakeMailgun() as fake:
        fake.inject(Fault.accept_then_drop())
        with pytest.raises(requests.ConnectionError):
            mg_send(fake, mg_fields(SUBSCRIBERS[:2], {a: {"name": "n"} for a in SUBSCRIBERS[:2]}, tags=["i1-c0"]))
        mg_send(fake, mg_fields(["zed@example.org"], tags=["i1-c1"]))
        url, auth = f"{fake.url}/v3/{fake.domain}/events", ("api", fake.api_key)
        page = requests.get(url, params={"event": "accepted", "tags": "i1-c0", "limit": 1}, auth=auth, timeout=5).json()
        found = [item["recipient"] for item in page["items"]]
        while page["items"]:
            page = requests.get(page["paging"]["next"], auth=auth, timeout=5).json()
            found += [item["recipient"] for item in page["items"]]
        assert sorted(found) == SUBSCRIBERS[:2]
        one = requests.get(url, params={"tag": "I1-C1"}, auth=auth, timeout=5).json()["items"]
        assert [e["recipient"] for e in one] == ["zed@example.org"] and one[0]["tags"] == ["i1-c1"]


def test_mailgun_413_and_429_body():
    """413 above the size limit; 429 says "try again after <date>" with no Retry-After (§3)."""
    with FakeMailgun(max_request_bytes=2000) as fake:
        r = mg_send(fake, mg_fields(html="x" * 3000))
        assert r.status_code == 413 and "message" in r.json()
        fake.inject(Fault.http(429))
        r = mg_send(fake, mg_fields())
        assert "try again after" in r.json()["message"] and "Retry-After" not in r.headers


# -- Postmark ------------------------------------------------------------------------------------

def test_postmark_refuses_bad_token_and_non_json():
    """401 ErrorCode 10 without a valid X-Postmark-Server-Token; JSON Accept/Content-Type required (§4)."""
    with FakePostmark() as fake:
        for token in ("wrong", None):
            r = pm(fake, "POST", "/email/batch", json=[pm_message()], headers={"X-Postmark-Server-Token": token})
            assert r.status_code == 401 and r.json()["ErrorCode"] == 10
        r = pm(fake, "POST", "/email/batch", json=[pm_message()], headers={"Accept": "*/*"})
        assert r.status_code == 422 and r.json()["ErrorCode"] == 409
        assert fake.delivered == []


def test_postmark_batch_happy_path():
    """POST /email/batch answers 200 with one item per message, in order (§4)."""
    with FakePostmark() as fake:
        r = pm(fake, "POST", "/email/batch", json=[pm_message(a) for a in SUBSCRIBERS])
        assert r.status_code == 200
        items = r.json()
        assert [i["To"] for i in items] == SUBSCRIBERS and all(i["ErrorCode"] == 0 for i in items)
        assert all(i["Message"] == "OK" and i["MessageID"] and i["SubmittedAt"] for i in items)
        assert fake.count_by_recipient() == {a: 1 for a in SUBSCRIBERS}
        assert fake.delivered[0].headers["List-Unsubscribe"] == "<https://example.org/u/ann@example.org>"


def test_postmark_partial_failure_shape():
    """Batch returns 200 even when messages fail: ErrorCode 406/300 items, only the rest delivered (§4)."""
    with FakePostmark(inactive=["cy@example.org"]) as fake:
        fake.inject(Fault.partial(indexes=[0]), Fault.partial(addresses=["bob@example.org"], error_code=300))
        items = pm(fake, "POST", "/email/batch", json=[pm_message(a) for a in SUBSCRIBERS]).json()
        assert [i["ErrorCode"] for i in items] == [406, 0, 406]
        assert "MessageID" not in items[0] and "inactive" in items[0]["Message"]
        assert fake.count_by_recipient() == {"bob@example.org": 1}
        items = pm(fake, "POST", "/email/batch", json=[pm_message(a) for a in SUBSCRIBERS[:2]]).json()
        assert [i["ErrorCode"] for i in items] == [0, 300]
        assert fake.count_by_recipient() == {"bob@example.org": 1, "ann@example.org": 1}


def test_postmark_batch_limits():
    """≤500 messages per batch (422 ErrorCode 410); invalid messages fail alone with ErrorCode 300 (§4)."""
    with FakePostmark() as fake:
        r = pm(fake, "POST", "/email/batch", json=[pm_message(f"r{n}@example.org") for n in range(501)])
        assert r.status_code == 422 and r.json()["ErrorCode"] == 410
        items = pm(fake, "POST", "/email/batch", json=[pm_message(HtmlBody="", TextBody=""), pm_message()]).json()
        assert [i["ErrorCode"] for i in items] == [300, 0]


def test_postmark_outbound_search_by_metadata():
    """GET /messages/outbound?metadata_<key>=<value>&count&offset (one metadata filter; §4)."""
    with FakePostmark() as fake:
        pm(fake, "POST", "/email/batch", json=[pm_message(a) for a in SUBSCRIBERS[:2]]
           + [pm_message("zed@example.org", Metadata={"issue_id": "i2"})])
        query = {"metadata_issue_id": "i1", "count": 50, "offset": 0, "messagestream": "broadcast"}
        found = pm(fake, "GET", "/messages/outbound", params=query).json()
        assert found["TotalCount"] == 2
        assert sorted(r for m in found["Messages"] for r in m["Recipients"]) == SUBSCRIBERS[:2]
        assert found["Messages"][0]["Metadata"]["issue_id"] == "i1" and "MessageID" in found["Messages"][0]
        del query["messagestream"]
        assert pm(fake, "GET", "/messages/outbound", params=query).json()["TotalCount"] == 0  # outbound stream only
        assert pm(fake, "GET", "/messages/outbound", params={"offset": 0}).status_code == 422


# -- Resend --------------------------------------------------------------------------------------

def test_resend_refuses_missing_user_agent_and_bad_keys():
    """User-Agent is mandatory (403, error 1010); missing key 401, wrong key 403 (§5)."""
    with FakeResend() as fake:
        r = rs(fake, [rs_email()], headers={"User-Agent": SKIP_HEADER})  # urllib3 would add its own
        assert r.status_code == 403 and "1010" in r.text
        r = rs(fake, [rs_email()], headers={"Authorization": None})
        assert r.status_code == 401 and r.json()["name"] == "missing_api_key"
        r = rs(fake, [rs_email()], headers={"Authorization": "Bearer re_wrong"})
        assert r.status_code == 403 and r.json()["name"] == "invalid_api_key"
        assert fake.delivered == []


def test_resend_batch_happy_path_and_limits():
    """POST /emails/batch: ≤100 emails, ≤50 `to` each → 200 {"data": [{"id"}]} in order (§5)."""
    with FakeResend() as fake:
        r = rs(fake, [rs_email(a) for a in SUBSCRIBERS])
        assert r.status_code == 200 and len(r.json()["data"]) == 3
        assert [fake.emails[d["id"]]["payload"]["to"] for d in r.json()["data"]] == [[a] for a in SUBSCRIBERS]
        assert fake.delivered[1].headers["List-Unsubscribe"] == "<https://example.org/u/bob@example.org>"
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(r.headers)
        assert rs(fake, [rs_email(f"r{n}@example.org") for n in range(101)]).status_code == 422
        too_many_to = rs_email(to="x@example.org") | {"to": [f"r{n}@example.org" for n in range(51)]}
        assert rs(fake, [too_many_to]).json()["name"] == "validation_error"
        r = rs(fake, [{k: v for k, v in rs_email().items() if k != "subject"}])
        assert r.status_code == 422 and r.json()["name"] == "missing_required_field"
        assert sum(fake.count_by_recipient().values()) == 3


def test_resend_idempotency_replay_and_conflicts():
    """Idempotency-Key: same body → original answer, nothing resent; other body → 409 (§5)."""
    with FakeResend() as fake:
        batch, head = [rs_email(a) for a in SUBSCRIBERS], {"Idempotency-Key": "issue-1/chunk-0"}
        fake.inject(Fault.accept_then_drop())
        with pytest.raises(requests.ConnectionError):
            rs(fake, batch, headers=head)
        first = rs(fake, batch, headers=head)
        assert first.status_code == 200 and rs(fake, batch, headers=head).json() == first.json()
        assert fake.count_by_recipient() == {a: 1 for a in SUBSCRIBERS}
        r = rs(fake, batch[:2], headers=head)
        assert r.status_code == 409 and r.json()["name"] == "invalid_idempotent_request"
        r = rs(fake, batch, headers={"Idempotency-Key": "k" * 257})
        assert r.status_code == 400 and r.json()["name"] == "invalid_idempotency_key"
        fake.inject(Fault.http(409))
        assert rs(fake, batch, headers=head).json()["name"] == "concurrent_idempotent_requests"
        assert len(fake.emails) == 3


def test_resend_concurrent_same_key_is_409():
    """A second request with a key still in flight gets 409 concurrent_idempotent_requests (§5)."""
    with FakeResend() as fake:
        fake.inject(Fault.slow(0.4))
        head, answers = {"Idempotency-Key": "k1"}, []
        worker = threading.Thread(target=lambda: answers.append(rs(fake, [rs_email()], headers=head)))
        worker.start()
        deadline = time.monotonic() + 2
        while not fake.emails and time.monotonic() < deadline:
            time.sleep(0.01)
        r = rs(fake, [rs_email()], headers=head)
        assert r.status_code == 409 and r.json()["name"] == "concurrent_idempotent_requests"
        worker.join(5)
        assert answers[0].status_code == 200 and rs(fake, [rs_email()], headers=head).json() == answers[0].json()
        assert len(fake.delivered) == 1


def test_resend_partial_strict_and_permissive():
    """Strict batch (default) fails whole with 422; permissive returns data + errors[{index}] (§5)."""
    with FakeResend() as fake:
        batch = [rs_email(a) for a in SUBSCRIBERS]
        fake.inject(Fault.partial(indexes=[1]))
        assert rs(fake, batch).status_code == 422 and fake.delivered == []
        fake.inject(Fault.partial(addresses=["bob@example.org"]))
        r = rs(fake, batch, headers={"x-batch-validation": "permissive"})
        assert r.status_code == 200 and len(r.json()["data"]) == 2 and r.json()["errors"][0]["index"] == 1
        assert fake.count_by_recipient() == {"ann@example.org": 1, "cy@example.org": 1}


def test_resend_rate_limit_enforced():
    """rate_limit (requests/second) → 429 rate_limit_exceeded with retry-after and ratelimit-* (§5)."""
    with FakeResend(rate_limit=2) as fake:
        codes = [rs(fake, [rs_email()]) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        last = codes[-1]
        assert last.json()["name"] == "rate_limit_exceeded" and last.headers["retry-after"] == "1"
        assert last.headers["ratelimit-remaining"] == "0" and last.headers["ratelimit-limit"] == "2"
