"""The Buttondown provider (audience family) end to end: real CLI, real HTTP, a local fake.

Buttondown keeps the list, so an issue is one create-as-draft then one send.  The tests
check the two facts of Buttondown's API docs that make that safe: the create says
``"status": "draft"`` explicitly (the API's default, ``about_to_send``, sends at once),
and both calls carry an ``X-Idempotency-Key`` derived from the issue, so a replay after a
timeout or a crash reuses the same draft and sends it once.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from checks import assert_one_line_error, ledger_rows, use_provider
from fakes import FakeButtondown, Fault
from newsletter.config import load_config
from newsletter.providers import load_provider
from newsletter.providers.buttondown import ButtondownProvider

API_KEY = "bd-test-key"
API_VERSION = "2026-04-01"
AUDIENCE = ["ann@example.org", "bob@example.org", "cy@example.org"]
TITLE = "Social Business : un parcours singulier à conjuguer au pluriel\u00a0!"  # newest post, French no-break space
SLUG = "social-business-parcours-singulier"
FANCY = "<!-- buttondown-editor-mode: fancy -->"


# -- helpers --------------------------------------------------------------------------------------


def configure(project: Path, url: str, *, timeout: float | None = None, **send: object) -> None:
    """Point the project at ``url`` through the buttondown provider, with fast retries (overridable)."""
    use_provider(project, "buttondown", url, send=send, provider={"timeout": timeout} if timeout else None)


def rows(project: Path, sql: str, *params) -> list[tuple]:
    return ledger_rows(project, sql, *params)


@pytest.fixture(autouse=True)
def buttondown_key(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_BUTTONDOWN_API_KEY", API_KEY)
    return API_KEY


@pytest.fixture
def fake():
    with FakeButtondown(subscribers=AUDIENCE) as server:
        yield server


def creates(fake) -> list:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/emails"]


def patches(fake) -> list:
    return [r for r in fake.requests if r.method == "PATCH"]


def assert_sent_once(project: Path, fake) -> str:
    """One email at Buttondown, sent once to the audience; the ledger says sent with its id."""
    assert len(fake.emails) == 1, list(fake.emails)
    [(email_id, email)] = fake.emails.items()
    assert email["status_defaulted"] is False
    assert email["status_history"] == ["draft", "about_to_send"]
    assert [s["kind"] for s in fake.sends] == ["send"]
    counts = fake.count_by_recipient()
    assert set(counts) == set(AUDIENCE) and set(counts.values()) == {1}
    assert rows(project, "SELECT status, provider FROM issues") == [("sent", "buttondown")]
    assert rows(project, "SELECT number, state, provider_reference FROM chunks") == [(0, "accepted", email_id)]
    return email_id


# -- 1. the happy path -----------------------------------------------------------------------------


def test_happy_path_draft_then_send_once(run, project, fake):
    configure(project, fake.url)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Recipients: the buttondown audience" in outcome.stdout
    assert "through buttondown" in outcome.stdout
    email_id = assert_sent_once(project, fake)

    create, patch = fake.requests
    assert (create.method, create.path, create.status) == ("POST", "/v1/emails", 201)
    assert (patch.method, patch.path, patch.status) == ("PATCH", f"/v1/emails/{email_id}", 200)
    payload = create.json()
    assert payload["status"] == "draft"  # explicit: never the default about_to_send
    assert patch.json() == {"status": "about_to_send"}
    assert payload["subject"] == TITLE
    body = payload["body"]
    assert body.startswith(FANCY + "\n") and not body.lstrip().startswith("---")
    assert f"slug: {SLUG}" not in body and "title:" not in body  # no front matter anywhere
    assert "<p>" in body and "E20 Summit" in body
    assert payload["canonical_url"] == f"https://claudesuper.example.org/{SLUG}/"
    assert set(payload) <= {"subject", "body", "status", "description", "canonical_url", "metadata"}

    for request in (create, patch):
        assert request.headers["X-API-Version"] == API_VERSION
        assert request.headers["Authorization"] == f"Token {API_KEY}"
        assert request.headers["User-Agent"].startswith("newsletter/")
        assert "X-Buttondown-Live-Dangerously" not in request.headers
    [(chunk_key,)] = rows(project, "SELECT idempotency_key FROM chunks")
    [(issue_key,)] = rows(project, "SELECT key FROM issues")
    assert chunk_key.startswith(issue_key)
    assert create.headers["X-Idempotency-Key"] == f"{chunk_key}:draft"
    assert patch.headers["X-Idempotency-Key"] == f"{chunk_key}:send"  # distinct: keys are per account

    [send] = fake.sends
    assert send["email_id"] == email_id and send["recipients"] == AUDIENCE
    assert {d.meta["metadata"]["newsletter_issue"] for d in fake.delivered} == {issue_key}


def test_status_json_shows_the_issue_sent_via_buttondown_and_second_send_is_exit_3(run, project, fake):
    configure(project, fake.url)
    assert run("send", "--yes").exit_code == 0
    status = run("status", "--json")
    assert status.exit_code == 0
    post = next(p for p in json.loads(status.stdout)["posts"] if p["slug"] == SLUG)
    assert post["state"] == "sent"
    [issue] = post["issues"]
    assert issue["status"] == "sent" and issue["provider"] == "buttondown"
    assert issue["deliveries"] == []  # Buttondown keeps the list: nothing per address here
    requests_before = len(fake.requests)
    again = run("send", "--yes")
    assert again.exit_code == 3, again.stdout + again.stderr
    assert "already sent" in again.stdout
    assert len(fake.requests) == requests_before and [s["kind"] for s in fake.sends] == ["send"]


def test_audience_send_messages_do_not_print_none_for_the_recipient_count(run, project, fake):
    """The ledger does not know how many Buttondown subscribers got the issue: say so, not "None"."""
    configure(project, fake.url)
    assert run("send", "--yes").exit_code == 0
    status = run("status")
    line = next(row for row in status.stdout.splitlines() if SLUG in row)
    assert "via buttondown" in line
    again = run("send", "--yes")
    assert again.exit_code == 3
    shown = [text for text in (line, again.stdout.strip()) if "None" in text]
    assert not shown, shown


def test_the_same_issue_gets_the_same_keys_in_another_project(run, project, fake, tmp_path):
    """The keys derive from the issue (post id + content), not from time or chance."""
    configure(project, fake.url)
    assert run("send", "--yes").exit_code == 0
    first = [r.headers["X-Idempotency-Key"] for r in fake.requests]
    with FakeButtondown(subscribers=AUDIENCE) as other:
        import shutil

        clone = tmp_path / "clone"
        shutil.copytree(project, clone, ignore=shutil.ignore_patterns("newsletter.db*"))
        text = (clone / "newsletter.toml").read_text(encoding="utf-8").replace(fake.url, other.url)
        (clone / "newsletter.toml").write_text(text, encoding="utf-8")
        assert run("send", "--yes", root=clone).exit_code == 0
        assert [r.headers["X-Idempotency-Key"] for r in other.requests] == first


# -- 2. errors -------------------------------------------------------------------------------------


def test_401_is_one_line_and_not_retried(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.http(401))
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 401" in line and "authentication_invalid" in line
    assert len(fake.requests) == 1 and not fake.emails and not fake.sends
    assert rows(project, "SELECT state FROM chunks") == [("planned",)]
    assert run("send", "--yes").exit_code == 0  # fixed: the resume sends it once
    assert_sent_once(project, fake)


def test_wrong_key_is_refused_once(run, project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_BUTTONDOWN_API_KEY", "bd-wrong-key")
    with FakeButtondown(subscribers=AUDIENCE) as fake:
        configure(project, fake.url)
        line = assert_one_line_error(run("send", "--yes"))
        assert "HTTP 401" in line and "API key" in line
        assert len(fake.requests) == 1 and not fake.emails


@pytest.mark.parametrize(
    "status, body, code",
    [
        (
            422,
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "payload", "colour"],
                        "msg": "Extra inputs are not permitted",
                    }
                ]
            },
            "extra_forbidden",
        ),
        (
            400,
            {"code": "body_contains_frontmatter", "detail": "The body starts with front matter.", "metadata": {}},
            "body_contains_frontmatter",
        ),
        (
            400,
            {"code": "sending_requires_confirmation", "detail": "Sending needs confirmation.", "metadata": {}},
            "sending_requires_confirmation",
        ),
        (
            400,
            {"code": "email_duplicate", "detail": "An email with the same identifiers exists.", "metadata": {}},
            "email_duplicate",
        ),
        (400, {"code": "slug_invalid", "detail": "The slug is invalid.", "metadata": {}}, "slug_invalid"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_validation_errors_name_the_code_and_are_not_retried(run, project, fake, status, body, code):
    configure(project, fake.url)
    fake.inject(Fault.http(status, body=body))
    line = assert_one_line_error(run("send", "--yes"))
    assert f"HTTP {status}" in line and code in line
    assert len(fake.requests) == 1 and not fake.emails and not fake.sends


def test_422_on_the_send_step_after_the_draft_exists(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.http(422, method="PATCH"))
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 422" in line
    assert len(fake.requests) == 2 and not fake.sends
    [email] = fake.emails.values()
    assert email["status"] == "draft"  # created, never sent


def test_429_waits_for_retry_after_then_succeeds_once(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.http(429))  # Retry-After: 1 (Buttondown documents the header on 429)
    started = time.monotonic()
    assert run("send", "--yes").exit_code == 0
    elapsed = time.monotonic() - started
    assert elapsed >= 0.9, "retried before Retry-After"
    assert elapsed < 5, f"waited {elapsed:.1f} s for a Retry-After of 1 s"
    assert [r.status for r in fake.requests] == [429, 201, 200]
    assert_sent_once(project, fake)


def test_429_on_the_send_step_then_success(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.http(429, retry_after=0, method="PATCH"))
    started = time.monotonic()
    assert run("send", "--yes").exit_code == 0
    assert time.monotonic() - started < 5
    assert [(r.method, r.status) for r in fake.requests] == [
        ("POST", 201),
        ("PATCH", 429),
        ("POST", 201),
        ("PATCH", 200),
    ]
    assert_sent_once(project, fake)


@pytest.mark.parametrize("statuses", [(500, 500, 500), (503, 500)])
def test_5xx_burst_then_success(run, project, fake, statuses):
    configure(project, fake.url)
    fake.inject(*[Fault.http(s) for s in statuses])
    assert run("send", "--yes").exit_code == 0
    assert [r.status for r in fake.requests] == [*statuses, 201, 200]
    assert_sent_once(project, fake)


def test_5xx_beyond_the_attempts_is_one_line_and_resumes_later(run, project, fake):
    configure(project, fake.url, retry_attempts=2)
    fake.inject(Fault.http(500, times=2))
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 500" in line
    assert not fake.emails
    assert run("send", "--yes").exit_code == 0
    assert_sent_once(project, fake)


def test_accept_then_drop_on_the_send_step_is_replayed_and_sent_once(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.accept_then_drop(method="PATCH"))
    assert run("send", "--yes").exit_code == 0
    assert [(r.method, r.fault) for r in fake.requests] == [
        ("POST", None),
        ("PATCH", "accept_then_drop"),
        ("POST", None),
        ("PATCH", None),
    ]
    first_create, first_patch, second_create, second_patch = fake.requests
    assert first_create.headers["X-Idempotency-Key"] == second_create.headers["X-Idempotency-Key"]
    assert first_patch.headers["X-Idempotency-Key"] == second_patch.headers["X-Idempotency-Key"]
    assert second_create.response == first_create.response  # the stored answer: the same draft
    assert_sent_once(project, fake)


def test_accept_then_drop_on_the_create_step_reuses_the_draft(run, project, fake):
    configure(project, fake.url)
    fake.inject(Fault.accept_then_drop(method="POST"))
    assert run("send", "--yes").exit_code == 0
    assert [(r.method, r.fault) for r in fake.requests] == [
        ("POST", "accept_then_drop"),
        ("POST", None),
        ("PATCH", None),
    ]
    assert_sent_once(project, fake)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_answer_slower_than_the_timeout_is_replayed_and_sent_once(run, project, fake, method):
    """The call lands, its answer comes after our timeout; the replay meets the first request
    still running (409), then its stored answer.  One draft, one send."""
    configure(project, fake.url, timeout=0.5, retry_attempts=60, retry_base_delay=0.05, retry_max_delay=0.1)
    fake.inject(Fault.slow(1.5, process=True, method=method))
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert_sent_once(project, fake)
    same_step = [r for r in fake.requests if r.method == method]
    assert len(same_step) >= 2 and len({r.headers["X-Idempotency-Key"] for r in same_step}) == 1
    assert 409 in [r.status for r in same_step]  # the replay met the first request still running
    assert same_step[-1].status in (200, 201)


def test_409_past_the_attempts_leaves_the_chunk_unknown_then_resumes(run, project, fake):
    """409 = a request under our key is still running: it may send, so giving up must not
    record the issue as proven unsent; the next run replays the same keys and sends once."""
    configure(project, fake.url, retry_attempts=3)
    fake.inject(Fault.http(409, times=3, method="PATCH"))
    line = assert_one_line_error(run("send", "--yes"))
    assert "HTTP 409" in line
    assert [(r.method, r.status) for r in fake.requests] == [("POST", 201), ("PATCH", 409)] * 3
    assert rows(project, "SELECT state FROM chunks") == [("unknown",)]
    assert run("send", "--yes").exit_code == 0
    assert_sent_once(project, fake)


# -- 3. a crash between create and send --------------------------------------------------------------


def test_crash_between_create_and_send_reuses_the_same_draft(run, project, fake, monkeypatch):
    configure(project, fake.url)

    def create_then_die(self, issue, *, idempotency_key):
        self._draft(issue, idempotency_key)
        raise KeyboardInterrupt  # the process dies with the draft at Buttondown

    real_publish = ButtondownProvider.publish
    monkeypatch.setattr(ButtondownProvider, "publish", create_then_die)
    first = run("send", "--yes")
    assert first.exit_code == 130
    assert len(fake.emails) == 1 and not fake.sends
    assert rows(project, "SELECT state FROM chunks") == [("in_flight",)]
    monkeypatch.setattr(ButtondownProvider, "publish", real_publish)
    second = run("send", "--yes")
    assert second.exit_code == 0, second.stderr
    assert "Resuming" in second.stdout
    email_id = assert_sent_once(project, fake)  # one email at Buttondown: the first draft
    first_create, second_create = creates(fake)
    assert first_create.headers["X-Idempotency-Key"] == second_create.headers["X-Idempotency-Key"]
    assert json.loads(second_create.response)["id"] == email_id


def test_crash_after_the_send_before_the_record_sends_nothing_more(run, project, fake, monkeypatch):
    configure(project, fake.url)
    from newsletter import send_ledger

    def die(self, *args, **kwargs):
        raise KeyboardInterrupt  # Buttondown sent it; the ledger never heard

    real_accept = send_ledger.SendLedger.accept_chunk
    monkeypatch.setattr(send_ledger.SendLedger, "accept_chunk", die)
    assert run("send", "--yes").exit_code == 130
    assert [s["kind"] for s in fake.sends] == ["send"]
    assert rows(project, "SELECT state FROM chunks") == [("in_flight",)]
    monkeypatch.setattr(send_ledger.SendLedger, "accept_chunk", real_accept)
    assert run("send", "--yes").exit_code == 0
    assert_sent_once(project, fake)
    assert [r.status for r in patches(fake)] == [200, 200]
    assert patches(fake)[0].headers["X-Idempotency-Key"] == patches(fake)[1].headers["X-Idempotency-Key"]


# -- 4. secrets ------------------------------------------------------------------------------------------

SECRET_VALUE = "bd-SuperSecret-0123456789abcdef"


def test_sec08_key_never_shown_after_failing_sends(run, project, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("NEWSLETTER_BUTTONDOWN_API_KEY", SECRET_VALUE)
    outputs = []
    with FakeButtondown(subscribers=AUDIENCE) as fake:  # its key is bd-test-key: ours gets 401
        configure(project, fake.url, retry_attempts=2)
        outputs.append(run("send", "--yes"))
        assert "401" in outputs[-1].stderr
    with FakeButtondown(api_key=SECRET_VALUE, subscribers=AUDIENCE) as fake:
        path = project / "newsletter.toml"
        path.write_text(
            re.sub(r'base_url = "http://[^"]*"', f'base_url = "{fake.url}"', path.read_text(encoding="utf-8")),
            encoding="utf-8",
        )
        fake.inject(Fault.http(500, times=2))
        outputs.append(run("send", "--yes"))
        fake.inject(Fault.drop(times=2))
        outputs.append(run("send", "--yes"))
        outputs.append(run("send", "--yes"))
        outputs.append(run("--debug", "status", "--json"))
        provider = load_provider(load_config(path))
        try:
            texts = [repr(provider), repr(vars(provider)), repr(vars(provider.client)), str(provider)]
        finally:
            provider.close()
        assert fake.requests[-1].headers["Authorization"] == f"Token {SECRET_VALUE}"
        assert [s["kind"] for s in fake.sends] == ["send"]
    assert [o.exit_code for o in outputs] == [1, 1, 1, 0, 0]
    texts += [o.stdout for o in outputs] + [o.stderr for o in outputs]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in texts:
        assert SECRET_VALUE not in text
    for file in project.glob("newsletter.db*"):
        assert SECRET_VALUE.encode() not in file.read_bytes()


# -- 5. test copies ---------------------------------------------------------------------------------------


def ledger_snapshot(project: Path) -> list:
    return [rows(project, f"SELECT * FROM {table}") for table in ("issues", "chunks", "deliveries", "subscribers")]


def test_test_to_uses_send_draft_to_that_address_only(run, project, fake):
    configure(project, fake.url)
    assert run("status").exit_code == 0  # the ledger exists before the test copy
    before = ledger_snapshot(project)
    outcome = run("send", "--test-to", "a@example.org")
    assert outcome.exit_code == 0, outcome.stderr
    assert "nothing recorded" in outcome.stdout
    assert [(r.method, r.status) for r in fake.requests] == [("POST", 201), ("POST", 200)]
    create, send_draft = fake.requests
    assert create.json()["status"] == "draft" and create.json()["subject"] == f"[TEST] {TITLE}"
    [(email_id, email)] = fake.emails.items()
    assert send_draft.path == f"/v1/emails/{email_id}/send-draft"
    assert send_draft.json() == {"recipients": ["a@example.org"]}
    assert email["status_history"] == ["draft"] and email["status_defaulted"] is False
    assert [(s["kind"], s["recipients"]) for s in fake.sends] == [("send-draft", ["a@example.org"])]
    assert not fake.delivered  # the audience received nothing
    assert ledger_snapshot(project) == before
    # The real send afterwards creates its own email and sends it once.
    real = run("send", "--yes")
    assert real.exit_code == 0, real.stderr
    assert len(fake.emails) == 2
    assert [s["kind"] for s in fake.sends] == ["send-draft", "send"]
    real_id = rows(project, "SELECT provider_reference FROM chunks")[0][0]
    assert real_id != email_id and fake.emails[real_id]["subject"] == TITLE
    assert fake.emails[email_id]["status_history"] == ["draft"]  # the test draft was never sent
    counts = fake.count_by_recipient()
    assert set(counts) == set(AUDIENCE) and set(counts.values()) == {1}


def test_test_to_retries_a_transient_failure(run, project, fake):
    """A test copy goes through the same retry policy as a real send (503 then success)."""
    configure(project, fake.url)
    fake.inject(Fault.http(503))
    outcome = run("send", "--test-to", "a@example.org")
    assert outcome.exit_code == 0, outcome.stderr
    assert [s["kind"] for s in fake.sends] == ["send-draft"]


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.buttondown.example", "api.buttondown.com"])
def test_sec12_base_url_must_be_https(run, project, url):
    """SEC-12: the key travels in a header, so never over plain http (except to this machine)."""
    configure(project, url)
    line = assert_one_line_error(run("send", "--yes"))
    assert "providers.buttondown.base_url" in line and "https" in line
    assert rows(project, "SELECT count(*) FROM issues") == [(0,)]


@pytest.mark.parametrize("value", ['"soon"', "0"])
def test_a_bad_timeout_is_a_one_line_config_error(run, project, fake, value):
    configure(project, fake.url)
    with open(project / "newsletter.toml", "a", encoding="utf-8") as handle:
        handle.write(f"timeout = {value}\n")
    line = assert_one_line_error(run("send", "--yes"))
    assert "providers.buttondown.timeout" in line
    assert not fake.requests


def test_the_pinned_api_version_can_be_overridden(run, project, fake):
    configure(project, fake.url)
    with open(project / "newsletter.toml", "a", encoding="utf-8") as handle:
        handle.write('api_version = "2026-06-01"\n')
    assert run("send", "--yes").exit_code == 0
    assert {r.headers["X-API-Version"] for r in fake.requests} == {"2026-06-01"}
    assert_sent_once(project, fake)
