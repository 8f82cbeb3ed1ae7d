"""Issue 15: ``newsletter doctor``'s "provider answers its preflight" asks the real server.

SMTP against aiosmtpd on loopback (connect, EHLO, STARTTLS, AUTH, QUIT); each HTTP API against
its local fake (tests/fakes/), which answers the documented read-only endpoint and the
documented refusal of a wrong key.  Doctor never sends mail and never touches the ledger.
"""

from __future__ import annotations

import pytest

from checks import use_provider
from fakes import FakeButtondown, FakeMailgun, FakePostmark, FakeResend
from smtp_server import PASSWORD, SmtpServer, free_port
from test_smtp import use_smtp


def provider_line(run) -> str:
    outcome = run("doctor")
    (line,) = [line for line in outcome.stdout.splitlines() if line.split()[1] == "provider"]
    return line


def test_smtp_doctor_logs_in_and_quits_sending_nothing(run, project, certificate, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert)
        line = provider_line(run)
    assert line.startswith("ok") and "provider smtp" in line and "nothing was sent" in line, line
    recorder = server.recorder
    assert recorder.logins == 1  # STARTTLS then AUTH went through (the server requires both)
    assert recorder.mail_commands == 0 and recorder.messages == []
    assert not (project / "newsletter.db").exists()


def test_smtp_doctor_with_a_wrong_password_names_the_server_and_the_variable(run, project, certificate, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "not the password")
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert)
        line = provider_line(run)
    assert line.startswith("PROBLEM"), line
    assert f"127.0.0.1:{server.port}" in line and "refused the login" in line and "NEWSLETTER_SMTP_PASSWORD" in line
    assert "not the password" not in line
    assert server.recorder.mail_commands == 0 and server.recorder.messages == []


def test_smtp_doctor_with_no_server_says_where_it_looked_and_what_to_check(run, project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    port = free_port()  # nothing listens there
    use_smtp(project, port)
    line = provider_line(run)
    assert line.startswith("PROBLEM") and f"127.0.0.1:{port}" in line, line
    assert "connect failed" in line and "check providers.smtp.host and port" in line


def test_smtp_doctor_with_an_untrusted_certificate_says_how_to_trust_it(run, project, certificate, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port)  # no ca_file: the self-signed certificate is not trusted
        line = provider_line(run)
    assert line.startswith("PROBLEM") and "not trusted" in line and "providers.smtp.ca_file" in line, line
    assert server.recorder.logins == 0


# name, fake, its good key, the key variable, extra [providers.NAME] settings, the documented read-only call
HTTP = [
    ("mailgun", lambda: FakeMailgun(), "key-test", "NEWSLETTER_MAILGUN_API_KEY", {"domain": "mg.example.org"},
     ("GET", "/v3/mg.example.org/events")),
    ("postmark", lambda: FakePostmark(), "pm-test-token", "NEWSLETTER_POSTMARK_SERVER_TOKEN", {}, ("GET", "/server")),
    ("resend", lambda: FakeResend(), "re_test_key", "NEWSLETTER_RESEND_API_KEY", {}, ("GET", "/domains")),
    ("buttondown", lambda: FakeButtondown(api_key="bd-test-key"), "bd-test-key", "NEWSLETTER_BUTTONDOWN_API_KEY", {},
     ("GET", "/v1/newsletters")),
]  # fmt: skip


@pytest.mark.parametrize("name, make, key, variable, settings, call", HTTP, ids=[h[0] for h in HTTP])
def test_http_doctor_makes_one_read_only_call_and_sends_nothing(run, project, monkeypatch, name, make, key,
                                                                 variable, settings, call):  # fmt: skip
    monkeypatch.setenv(variable, key)
    with make() as fake:
        use_provider(project, name, fake.url, provider=settings)
        line = provider_line(run)
    assert line.startswith("ok") and f"provider {name}" in line, line
    assert [(r.method, r.path) for r in fake.requests] == [call]
    assert fake.requests[0].status == 200 and fake.delivered == []
    assert not (project / "newsletter.db").exists()


@pytest.mark.parametrize("name, make, key, variable, settings, call", HTTP, ids=[h[0] for h in HTTP])
def test_http_doctor_with_a_wrong_key_is_a_problem_naming_the_variable(run, project, monkeypatch, name, make, key,
                                                                      variable, settings, call):  # fmt: skip
    monkeypatch.setenv(variable, "wrong-" + key)
    with make() as fake:
        use_provider(project, name, fake.url, provider=settings)
        line = provider_line(run)
    assert line.startswith("PROBLEM") and variable in line and "HTTP 40" in line, line
    assert "wrong-" + key not in line
    assert [(r.method, r.path) for r in fake.requests] == [call] and fake.requests[0].status in (401, 403)
    assert fake.delivered == []


def test_a_resend_key_with_sending_access_only_passes(run, project, monkeypatch):
    """Resend answers 401 ``restricted_api_key`` to such a key on ``GET /domains``: the key is
    good and can send, which is all a newsletter needs (Resend API: Errors)."""
    monkeypatch.setenv("NEWSLETTER_RESEND_API_KEY", "re_test_key")
    with FakeResend(sending_only=True) as fake:
        use_provider(project, "resend", fake.url)
        line = provider_line(run)
    assert line.startswith("ok"), line
    assert [(r.method, r.path, r.status) for r in fake.requests] == [("GET", "/domains", 401)]


def test_a_mailgun_domain_the_key_does_not_have_is_a_problem_naming_it(run, project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_MAILGUN_API_KEY", "key-test")
    with FakeMailgun() as fake:
        use_provider(project, "mailgun", fake.url, provider={"domain": "mg.typo.example"})
        line = provider_line(run)
    assert line.startswith("PROBLEM") and "mg.typo.example" in line and "HTTP 404" in line, line
