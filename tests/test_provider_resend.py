"""The Resend provider (batch family) end to end: real CLI, real HTTP, a local fake Resend.

Each test drives ``newsletter send`` against :class:`fakes.FakeResend` and then checks
three records that must agree: what the fake delivered, what it was sent (headers and
bodies), and the ledger.  Contract facts come from Resend's public API documentation;
the standards ids (SEC-07/08/09/12, LIST-01/02/06, HDR-06) are listed in docs/requirements.md.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import pytest

from checks import (
    SUBSCRIBERS,
    assert_one_line_error,
    import_subscribers,
    ledger_rows,
    subscribe,
    use_provider,
)
from conftest import TOKEN_KEY
from fakes import FakeResend, Fault
from newsletter.config import Secret, load_config
from newsletter.providers import load_provider
from newsletter.providers.resend import ResendProvider
from newsletter.tokens import UNSUBSCRIBE, verify_token

API_KEY = "re_test_key"
TITLE = "Social Business : un parcours singulier à conjuguer au pluriel\u00a0!"  # newest post, French no-break space
LIST_ID = "lettre.claudesuper.example.org"
UNSUBSCRIBE_BASE = "https://claudesuper.example.org/unsubscribe/"


# -- helpers --------------------------------------------------------------------------------------


def configure(project: Path, url: str, *, timeout: float | None = None, **send: object) -> None:
    """Point the project at ``url`` through the resend provider, with fast retries (overridable)."""
    use_provider(project, "resend", url, send=send, provider={"timeout": timeout} if timeout else None)


def rows(project: Path, sql: str, *params) -> list[tuple]:
    return ledger_rows(project, sql, *params)


@pytest.fixture(autouse=True)
def resend_key(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", API_KEY)
    return API_KEY


@pytest.fixture
def fake():
    with FakeResend() as server:
        yield server


def small_batches(monkeypatch, size: int) -> None:
    """Resend's real cap is 100 per call; a smaller one keeps multi-chunk tests fast."""
    monkeypatch.setattr(
        ResendProvider, "capabilities", dataclasses.replace(ResendProvider.capabilities, max_batch=size)
    )


def batch_posts(fake) -> list:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/emails/batch"]


def ledger_deliveries(project: Path) -> dict[str, tuple[str, str | None]]:
    return {
        email: (state, mid)
        for email, state, mid in rows(project, "SELECT email, state, provider_message_id FROM deliveries")
    }


def assert_each_delivered_once(fake, addresses) -> None:
    counts = fake.count_by_recipient()
    assert set(counts) == {a.lower() for a in addresses}
    assert set(counts.values()) == {1}, {a: n for a, n in counts.items() if n != 1}


def assert_sent_and_matching(project: Path, fake, addresses) -> None:
    """The ledger says sent and its message ids are exactly the fake's ids, address by address."""
    assert rows(project, "SELECT status FROM issues") == [("sent",)]
    assert_each_delivered_once(fake, addresses)
    ledger = ledger_deliveries(project)
    assert {state for state, _ in ledger.values()} == {"accepted"}
    by_address = {d.address: d.message_id for d in fake.delivered}
    assert {email: mid for email, (_, mid) in ledger.items()} == by_address


# -- 1. the happy path -----------------------------------------------------------------------------


def test_happy_path_each_subscriber_gets_one_personal_email(run, project, fake):
    """HDR-06, LIST-01/02/06, SEC-09, SEC-12: one `to` per email, its own signed one-click URL,
    the chunk's ledger key in ``Idempotency-Key``, Resend's mandatory ``User-Agent``."""
    configure(project, fake.url)
    subscribe(run)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert "through resend" in outcome.stdout and "3 accepted" in outcome.stdout

    assert_sent_and_matching(project, fake, SUBSCRIBERS)
    [request] = batch_posts(fake)
    assert len(fake.requests) == 1
    [(chunk_key,)] = rows(project, "SELECT idempotency_key FROM chunks")
    assert request.headers["Idempotency-Key"] == chunk_key
    assert request.headers["User-Agent"].startswith("newsletter/")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"

    keys = [Secret("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)]
    subscriber_ids = dict(rows(project, "SELECT email, id FROM subscribers"))
    seen_urls = set()
    for item in request.json():
        [address] = item["to"]  # exactly one recipient per email, no cc/bcc
        assert "cc" not in item and "bcc" not in item
        assert item["subject"] == TITLE
        assert item["from"] == "Claude Super <lettre@claudesuper.example.org>"
        headers = item["headers"]
        match = re.fullmatch(r"<(https://[^>]+)>(, <mailto:[^>]+>)?", headers["List-Unsubscribe"])
        assert match, headers["List-Unsubscribe"]
        url = match.group(1)
        assert url.startswith(UNSUBSCRIBE_BASE)
        claims = verify_token(url[len(UNSUBSCRIBE_BASE) :], keys, purpose=UNSUBSCRIBE, list_id=LIST_ID)
        assert claims.subscriber_id == subscriber_ids[address]
        assert url in item["html"] and url in item["text"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["List-Id"].endswith(f"<{LIST_ID}>")
        assert all(t["name"] and re.fullmatch(r"[A-Za-z0-9_-]+", t["value"]) for t in item["tags"])
        seen_urls.add(url)
    assert len(seen_urls) == 3  # nobody can unsubscribe someone else

    # What Resend stored under each id is the email for that address.
    for email, (_, mid) in ledger_deliveries(project).items():
        assert fake.emails[mid]["payload"]["to"] == [email]
        assert fake.emails[mid]["idempotency_key"] == chunk_key


def test_second_send_is_nothing_to_send_and_calls_nobody(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    assert run("send", "--yes").exit_code == 0
    again = run("send", "--yes")
    assert again.exit_code == 3, again.stdout + again.stderr
    assert len(fake.requests) == 1


# -- 2. chunking -------------------------------------------------------------------------------------


def test_real_cap_of_100_emails_per_call(run, project, fake):
    """Resend's batch takes at most 100 emails (the fake refuses 101 with 422)."""
    addresses = import_subscribers(run, project, 201)
    configure(project, fake.url)
    assert run("send", "--yes").exit_code == 0
    # Chunks go out several at once, so they may arrive in any order.
    assert sorted((len(r.json()) for r in batch_posts(fake)), reverse=True) == [100, 100, 1]
    assert_sent_and_matching(project, fake, addresses)


def test_each_chunk_carries_its_own_ledger_key(run, project, fake, monkeypatch):
    small_batches(monkeypatch, 2)
    addresses = [f"reader{n}@example.org" for n in range(5)]
    subscribe(run, *addresses)
    configure(project, fake.url)
    assert run("send", "--yes").exit_code == 0
    chunks = rows(project, "SELECT number, state, idempotency_key FROM chunks ORDER BY number")
    assert [(n, s) for n, s, _ in chunks] == [(0, "accepted"), (1, "accepted"), (2, "accepted")]
    # Chunks go out several at a time, so the requests may arrive in any order: pair them by key.
    posts = batch_posts(fake)
    sent = {r.headers["Idempotency-Key"]: len(r.json()) for r in posts}
    assert len(posts) == 3 and len(sent) == 3
    assert sent == {key: size for (_, _, key), size in zip(chunks, [2, 2, 1], strict=True)}
    assert_sent_and_matching(project, fake, addresses)


# -- 3. errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, code",
    [
        (Fault.http(401), "missing_api_key"),
        (Fault.http(403), "invalid_api_key"),
        (Fault.http(422), "validation_error"),
        (
            Fault.http(422, body={"statusCode": 422, "name": "missing_required_field", "message": "Missing `to`."}),
            "missing_required_field",
        ),
    ],
    ids=["401", "403", "422-validation", "422-missing-field"],
)
def test_permanent_errors_are_one_line_and_not_retried(run, project, fake, fault, code):
    """SEC-12: retries only on 429/5xx.  Nothing was delivered, so the chunk goes back to planned."""
    configure(project, fake.url)
    subscribe(run)
    fake.inject(fault)
    line = assert_one_line_error(run("send", "--yes"))
    assert f"HTTP {fault.status}" in line and code in line
    assert len(fake.requests) == 1 and not fake.delivered
    assert rows(project, "SELECT state FROM chunks") == [("planned",)]
    # The editor fixes the cause and runs again: the send resumes and completes.
    again = run("send", "--yes")
    assert again.exit_code == 0, again.stderr
    assert "Resuming" in again.stdout
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_wrong_key_is_refused_with_403_once(run, project, fake, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", "re_wrong_key")
    configure(project, fake.url)
    subscribe(run)
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 403" in line and "invalid_api_key" in line and "API key" in line
    assert len(fake.requests) == 1 and not fake.delivered


def test_429_waits_for_retry_after_then_succeeds_once(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(Fault.http(429))  # Resend sends retry-after: 1 (the fake's default)
    started = time.monotonic()
    assert run("send", "--yes").exit_code == 0
    assert time.monotonic() - started >= 0.9, "retried before Retry-After"
    assert [r.status for r in fake.requests] == [429, 200]
    assert fake.requests[0].headers["Idempotency-Key"] == fake.requests[1].headers["Idempotency-Key"]
    assert_sent_and_matching(project, fake, SUBSCRIBERS)
    assert rows(project, "SELECT attempts FROM chunks") == [(1,)]


@pytest.mark.parametrize("statuses", [(500, 500, 500), (503, 503), (500, 503, 500, 503)])
def test_5xx_bursts_are_retried_to_success(run, project, fake, statuses):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(*[Fault.http(s) for s in statuses])
    assert run("send", "--yes").exit_code == 0
    assert [r.status for r in fake.requests] == [*statuses, 200]
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_5xx_beyond_the_attempts_stops_with_one_line_and_resumes_later(run, project, fake):
    configure(project, fake.url, retry_attempts=3)
    subscribe(run)
    fake.inject(Fault.http(503, times=3))
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 503" in line and "service_unavailable" in line
    assert len(fake.requests) == 3 and not fake.delivered
    assert rows(project, "SELECT state FROM chunks") == [("planned",)]
    assert run("send", "--yes").exit_code == 0
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_answer_slower_than_the_timeout_is_replayed_with_the_same_key(run, project, fake):
    """The first request lands but its answer comes after the client's timeout: the replay
    (409 concurrent while the first runs, then the stored answer) delivers nothing twice."""
    configure(project, fake.url, timeout=0.5, retry_attempts=60, retry_base_delay=0.05, retry_max_delay=0.1)
    subscribe(run)
    fake.inject(Fault.slow(1.5, process=True))
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert len(fake.emails) == 3
    assert_sent_and_matching(project, fake, SUBSCRIBERS)
    keys = {r.headers["Idempotency-Key"] for r in fake.requests}
    assert len(keys) == 1 and len(fake.requests) >= 2
    assert fake.requests[0].fault == "slow" and fake.requests[-1].status == 200
    assert 409 in [r.status for r in fake.requests]  # the replay met the first request still running
    # The ledger keeps the ids of the first (and only) delivery, returned by the replay.
    assert {mid for _, mid in ledger_deliveries(project).values()} == set(fake.emails)


def test_accept_then_drop_is_replayed_with_the_same_key(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(Fault.accept_then_drop())
    assert run("send", "--yes").exit_code == 0
    assert [r.fault for r in fake.requests] == ["accept_then_drop", None]
    assert fake.requests[0].headers["Idempotency-Key"] == fake.requests[1].headers["Idempotency-Key"]
    assert fake.requests[0].body == fake.requests[1].body  # the identical request, byte for byte
    assert len(fake.emails) == 3
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_drop_before_processing_is_retried(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(Fault.drop())
    assert run("send", "--yes").exit_code == 0
    assert [r.fault for r in fake.requests] == ["drop", None]
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_409_concurrent_idempotent_request_is_retried(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(Fault.http(409))  # name: concurrent_idempotent_requests
    assert run("send", "--yes").exit_code == 0
    assert [r.status for r in fake.requests] == [409, 200]
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_409_concurrent_past_the_attempts_leaves_the_chunk_unknown(run, project, fake):
    """Another request under our key is still running at Resend: it may deliver, so giving up
    must not record the chunk as proven undelivered ("planned"); the next run replays it."""
    configure(project, fake.url, retry_attempts=3)
    subscribe(run)
    fake.inject(Fault.http(409, times=3))
    line = assert_one_line_error(run("send", "--yes"), hint=False)  # the missing hint: see the 5xx test
    assert "concurrent_idempotent_requests" in line
    assert len(fake.requests) == 3
    assert rows(project, "SELECT state FROM chunks") == [("unknown",)]
    assert run("send", "--yes").exit_code == 0
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_409_invalid_idempotent_request_is_one_line_and_not_retried(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(
        Fault.http(
            409,
            body={"statusCode": 409, "name": "invalid_idempotent_request", "message": "The request body was modified."},
        )
    )
    line = assert_one_line_error(run("send", "--yes"))
    assert "invalid_idempotent_request" in line
    assert len(fake.requests) == 1 and not fake.delivered


def test_resume_with_a_different_body_under_the_same_key_stops_without_sending(run, project, fake, monkeypatch):
    """The real way to hit 409 invalid_idempotent_request: a chunk went out, the process died
    before recording it, and the body changed (the signing key was rotated) before the resume.
    Resend refuses; nothing is sent twice, and the chunk is not claimed undelivered."""
    configure(project, fake.url)
    subscribe(run)
    crash_after_the_provider_call(monkeypatch)
    assert run("send", "--yes").exit_code == 130
    assert len(fake.emails) == 3
    monkeypatch.undo()
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", API_KEY)
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", "a-rotated-signing-key-0123456789-ABCDEFGHIJ")
    line = assert_one_line_error(run("send", "--yes"))
    assert "invalid_idempotent_request" in line
    assert [r.status for r in fake.requests] == [200, 409]
    assert_each_delivered_once(fake, SUBSCRIBERS)
    # Resend has this chunk: the ledger must not say "planned" (= proven undelivered)...
    assert rows(project, "SELECT state FROM chunks") == [("unknown",)]
    assert "newsletter resolve" in line
    # ...so the editor can settle it after checking the dashboard, and nothing goes out again.
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)
    resolved = run("resolve", "social-business-parcours-singulier", "--assume-sent")
    assert resolved.exit_code == 0, resolved.stderr
    assert "3 uncertain deliveries" in resolved.stdout
    finished = run("send", "--yes")
    assert finished.exit_code == 0, finished.stderr
    assert len(fake.requests) == 2 and len(fake.emails) == 3
    assert rows(project, "SELECT status FROM issues") == [("sent",)]


def test_200_with_a_body_that_is_not_json_stops_then_replays_safely(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    fake.inject(Fault.http(200, body="<html>upstream hiccup</html>"))
    line = assert_one_line_error(run("send", "--yes"))
    assert "not JSON" in line and "upstream hiccup" in line
    assert len(fake.requests) == 1
    assert rows(project, "SELECT state FROM chunks") == [("unknown",)]
    assert {s for s, _ in ledger_deliveries(project).values()} == {"unknown"}
    again = run("send", "--yes")
    assert again.exit_code == 0, again.stderr
    assert "Resuming" in again.stdout
    first, second = fake.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


def test_200_not_json_after_the_email_landed_replays_without_duplicate(run, project, fake, monkeypatch):
    """Same, when Resend did act on the first request (its answer was garbled on the way)."""
    configure(project, fake.url)
    subscribe(run)
    from newsletter.providers import http

    real_json = http.requests.Response.json
    calls = {"n": 0}

    def garbled_once(self, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("garbled")
        return real_json(self, **kw)

    monkeypatch.setattr(http.requests.Response, "json", garbled_once)
    assert run("send", "--yes").exit_code == 1
    assert len(fake.emails) == 3
    assert rows(project, "SELECT state FROM chunks") == [("unknown",)]
    assert run("send", "--yes").exit_code == 0
    assert calls["n"] == 2
    assert len(fake.emails) == 3  # the replay got the stored answer
    assert_sent_and_matching(project, fake, SUBSCRIBERS)


# -- 4. rate limits ---------------------------------------------------------------------------------


class TimedResend(FakeResend):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.arrivals: list[float] = []

    def handle(self, req):
        self.arrivals.append(time.monotonic())
        return super().handle(req)


def test_ratelimit_headers_are_obeyed_so_no_429_is_ever_answered(run, project, monkeypatch):
    """At 2 requests/s the fake says ``ratelimit-remaining: 0, ratelimit-reset: 1`` after the
    second call: the client waits instead of collecting 429s."""
    small_batches(monkeypatch, 2)
    addresses = [f"reader{n}@example.org" for n in range(9)]
    subscribe(run, *addresses)
    with TimedResend(rate_limit=2) as fake:
        configure(project, fake.url)
        assert run("send", "--yes").exit_code == 0
        assert [r.status for r in fake.requests] == [200] * 5, "a 429 was answered"
        assert rows(project, "SELECT count(*) FROM chunks WHERE state = 'accepted'") == [(5,)]
        # Never three requests inside one second.
        gaps = [b - a for a, b in zip(fake.arrivals, fake.arrivals[2:], strict=False)]
        assert min(gaps) >= 0.99, gaps
        assert_sent_and_matching(project, fake, addresses)


# -- 5. a crash mid-send ---------------------------------------------------------------------------


def crash_after_the_provider_call(monkeypatch) -> None:
    from newsletter import send_ledger

    real_settle = send_ledger.SendLedger.settle_chunk
    calls = {"n": 0}

    def crash_once(self, issue_id, chunk, outcomes, *, now):
        if outcomes and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt  # the process dies between the delivery and its record
        return real_settle(self, issue_id, chunk, outcomes, now=now)

    monkeypatch.setattr(send_ledger.SendLedger, "settle_chunk", crash_once)


def test_crash_after_delivery_resumes_with_the_same_key_and_no_duplicate(run, project, fake, monkeypatch):
    """SEC-12: kill mid-batch, resume, no recipient gets two sends."""
    small_batches(monkeypatch, 2)
    addresses = [f"reader{n}@example.org" for n in range(5)]
    subscribe(run, *addresses)
    configure(project, fake.url)
    crash_after_the_provider_call(monkeypatch)
    first = run("send", "--yes")
    assert first.exit_code == 130
    assert "Interrupted" in first.stderr
    # Chunks go out several at once: every chunk whose request went out is in_flight, none settled.
    states = rows(project, "SELECT number, state FROM chunks ORDER BY number")
    started = [number for number, state in states if state == "in_flight"]
    assert started and {state for _, state in states} <= {"in_flight", "planned"}
    assert len(batch_posts(fake)) == len(started) and len(fake.emails) == sum(min(2, 5 - 2 * n) for n in started)
    first_keys = [post.headers["Idempotency-Key"] for post in batch_posts(fake)]
    second = run("send", "--yes")
    assert second.exit_code == 0, second.stderr
    assert "Resuming" in second.stdout
    posts = batch_posts(fake)
    assert len(posts) == len(started) + 3  # each started chunk replayed once, then each chunk once
    replays = {post.headers["Idempotency-Key"]: post for post in posts[len(started) :]}
    for first_post in posts[: len(started)]:
        replay = replays[first_post.headers["Idempotency-Key"]]
        assert replay.body == first_post.body  # byte-identical replay
        assert replay.response == first_post.response  # Resend's stored answer: same ids
    assert sorted(first_keys) == sorted(p.headers["Idempotency-Key"] for p in posts[: len(started)])
    assert len(fake.emails) == 5
    assert_sent_and_matching(project, fake, addresses)


# -- 6. soak ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_5000_subscribers_through_30_percent_transient_faults(run, project, capsys):
    """The issue's "done when": 5,000 recipients, 30 % of requests failing with 429, 500, 503,
    dropped connections and accepted-then-dropped answers; every address gets exactly one email."""
    addresses = import_subscribers(run, project, 5000)
    with FakeResend() as fake:
        configure(project, fake.url, retry_base_delay=0, retry_max_delay=0, retry_attempts=20)
        fake.fault_rate(0.3, seed=20261126)
        started = time.monotonic()
        runs = []
        for _ in range(10):
            outcome = run("send", "--yes")
            runs.append(outcome.exit_code)
            if outcome.exit_code != 1:
                break
        elapsed = time.monotonic() - started
        assert runs[-1] == 0, runs
        counts = fake.count_by_recipient()
        assert len(counts) == 5000 and set(counts.values()) == {1}
        assert rows(project, "SELECT state, count(*) FROM deliveries GROUP BY state") == [("accepted", 5000)]
        assert rows(project, "SELECT status FROM issues") == [("sent",)]
        assert_sent_and_matching(project, fake, addresses)
        faults = [f"HTTP {r.status}" if r.fault == "http" else r.fault for r in fake.requests]
        with capsys.disabled():
            print(
                f"\nresend soak: {len(fake.requests)} requests, {sum(f is not None for f in faults)} faulted "
                f"({ {k: faults.count(k) for k in set(faults) if k} }), runs {runs}, {elapsed:.1f} s"
            )
        assert sum(f is not None for f in faults) >= 10  # the faults really happened
        assert elapsed < 60


# -- 7. secrets ------------------------------------------------------------------------------------------


def test_sec07_key_variable_name_comes_from_the_config(run, project, fake, monkeypatch):
    configure(project, fake.url)
    with open(project / "newsletter.toml", "a", encoding="utf-8") as handle:
        handle.write('api_key_env = "MY_RESEND_KEY"\n')
    monkeypatch.delenv("MY_RESEND_KEY", raising=False)
    subscribe(run)
    line = assert_one_line_error(run("send", "--yes"))
    assert "MY_RESEND_KEY" in line
    monkeypatch.setenv("MY_RESEND_KEY", API_KEY)
    assert run("send", "--yes").exit_code == 0
    assert_each_delivered_once(fake, SUBSCRIBERS)


SECRET_VALUE = "re_SuperSecret_0123456789abcdef"


def test_sec08_key_never_shown_after_failing_sends(run, project, monkeypatch, caplog):
    """SEC-08: a 403 (wrong key), a 500 burst past the attempts and a dropped connection,
    with DEBUG logging: the key is in no output, log record, ledger byte or repr."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", SECRET_VALUE)
    subscribe(run)
    outputs = []
    with FakeResend() as fake:  # its key is re_test_key: ours gets 403
        configure(project, fake.url, retry_attempts=2)
        outputs.append(run("send", "--yes"))
        assert "403" in outputs[-1].stderr
    with FakeResend(api_key=SECRET_VALUE) as fake:
        configure_again(project, fake.url)
        fake.inject(Fault.http(500, times=2))
        outputs.append(run("send", "--yes"))
        assert "HTTP 500" in outputs[-1].stderr
        fake.inject(Fault.drop(times=2))
        outputs.append(run("send", "--yes"))
        outputs.append(run("--debug", "status", "--json"))
        provider = load_provider(load_config(project / "newsletter.toml"))
        try:
            texts = [repr(provider), repr(vars(provider)), repr(vars(provider.client)), str(provider)]
        finally:
            provider.close()
        # The key did reach the wire, where it belongs.
        assert fake.requests[0].headers["Authorization"] == f"Bearer {SECRET_VALUE}"
    assert all(o.exit_code in (0, 1) for o in outputs)
    texts += [o.stdout for o in outputs] + [o.stderr for o in outputs]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in texts:
        assert SECRET_VALUE not in text
    for path in project.glob("newsletter.db*"):
        assert SECRET_VALUE.encode() not in path.read_bytes()


def configure_again(project: Path, url: str) -> None:
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'(\[providers\.resend\]\nbase_url = )"[^"]*"', rf'\1"{url}"', text)
    path.write_text(text, encoding="utf-8")


def test_sec08_debug_traceback_does_not_show_the_key(run, project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", SECRET_VALUE)
    subscribe(run)
    with FakeResend() as fake:
        configure(project, fake.url)
        from newsletter.errors import ProviderAuthError

        with pytest.raises(ProviderAuthError) as raised:
            run("--debug", "send", "--yes")
    import traceback

    text = "".join(traceback.format_exception(raised.value))
    assert SECRET_VALUE not in text and SECRET_VALUE not in repr(raised.value.__dict__)


# -- 8. test copies ---------------------------------------------------------------------------------------


def test_test_to_sends_one_tagged_copy_and_records_nothing(run, project, fake):
    configure(project, fake.url)
    subscribe(run)
    outcome = run("send", "--test-to", "x@example.org")
    assert outcome.exit_code == 0, outcome.stderr
    assert "nothing recorded" in outcome.stdout
    assert [d.address for d in fake.delivered] == ["x@example.org"]
    [email] = fake.emails.values()
    assert email["payload"]["subject"] == f"[TEST] {TITLE}"
    assert email["payload"]["to"] == ["x@example.org"]
    assert email["payload"]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert rows(project, "SELECT count(*) FROM issues") == [(0,)]
    assert rows(project, "SELECT count(*) FROM chunks") == [(0,)]
    # The real send afterwards is not confused with the test copy.
    real = run("send", "--yes")
    assert real.exit_code == 0, real.stderr
    counts = fake.count_by_recipient()
    assert counts == {"x@example.org": 1, **{a: 1 for a in SUBSCRIBERS}}
    test_key = fake.requests[0].headers["Idempotency-Key"]
    real_key = fake.requests[1].headers["Idempotency-Key"]
    assert test_key != real_key
    assert {e["payload"]["subject"] for e in fake.emails.values()} == {f"[TEST] {TITLE}", TITLE}
    assert rows(project, "SELECT status FROM issues") == [("sent",)]


def test_test_to_auth_error_is_one_line(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.http(401))
    line = assert_one_line_error(run("send", "--test-to", "x@example.org"))
    assert "missing_api_key" in line
    assert len(fake.requests) == 1 and not fake.delivered


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.resend.example", "ftp://127.0.0.1/", "api.resend.com", "https://"])
def test_sec12_base_url_must_be_https(run, project, url):
    """SEC-12: the key travels in a header, so never over plain http (except to this machine)."""
    configure(project, url)
    subscribe(run)
    line = assert_one_line_error(run("send", "--yes"))
    assert "providers.resend.base_url" in line and "https" in line
    assert rows(project, "SELECT count(*) FROM issues") == [(0,)]


@pytest.mark.parametrize("value", ['"soon"', "0", "-1", "true"])
def test_a_bad_timeout_is_a_one_line_config_error(run, project, fake, value):
    configure(project, fake.url)
    subscribe(run)  # first: the config is checked whole at load, for every command
    with open(project / "newsletter.toml", "a", encoding="utf-8") as handle:
        handle.write(f"timeout = {value}\n")
    line = assert_one_line_error(run("send", "--yes"))
    assert "providers.resend.timeout" in line
    assert not fake.requests
