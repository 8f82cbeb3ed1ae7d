"""SMTP against a real aiosmtpd server on loopback: TLS verified, login, faults, exactly once."""

from __future__ import annotations

import email
import email.policy
import smtplib
import sqlite3
import ssl

import pytest

from newsletter.providers.smtp import SmtpProvider, tls_context
from smtp_server import PASSWORD, USER, SmtpServer, make_certificate

SUBSCRIBERS = ["alice@example.org", "bruno@example.org", "camille@example.org"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def use_smtp(project, port: int, *, security: str = "starttls", ca_file=None, extra: str = "") -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace('provider = "outbox"', 'provider = "smtp"')
    text = text.replace("[providers.outbox]", "retry_base_delay = 0.01\nretry_max_delay = 0.05\n\n[providers.outbox]")
    text += (
        f'\n[providers.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\nusername = "{USER}"\n'
        + (f'ca_file = "{ca_file}"\n' if ca_file else "")
        + extra
    )
    config.write_text(text, encoding="utf-8")


@pytest.fixture
def smtp_password(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def states(project) -> list[tuple]:
    with sqlite3.connect(project / "newsletter.db") as db:
        return db.execute("SELECT email, state FROM deliveries ORDER BY email").fetchall()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_issue_delivered_over_verified_tls_and_recorded(run, project, certificate, smtp_password, security):
    cert, key = certificate
    with SmtpServer(cert, key, implicit_tls=security == "tls") as server:
        use_smtp(project, server.port, security=security, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 0, outcome.stderr
    messages = server.recorder.messages
    assert sorted(rcpt[0] for _, rcpt, _ in messages) == SUBSCRIBERS
    assert {sender for sender, _, _ in messages} == {"lettre@claudesuper.example.org"}
    assert server.recorder.logins == 1  # one connection reused for every message
    assert states(project) == [(a, "accepted") for a in SUBSCRIBERS]


def test_smtp_messages_parse_identically_to_the_outbox(run, project, certificate, smtp_password, tmp_path):
    """Same parts, headers and bodies whichever provider carried them."""
    run("subscribers", "add", *SUBSCRIBERS)
    assert run("send", "--yes").exit_code == 0
    outbox = {}
    for path in (project / "outbox" / "new").glob("*.eml"):
        message = parsed(path.read_bytes())
        outbox[str(message["To"])] = message
    # Same project, same plan time: replay the issue through SMTP into a fresh ledger.
    (project / "newsletter.db").rename(tmp_path / "outbox.db")
    for suffix in ("-wal", "-shm"):
        (project / f"newsletter.db{suffix}").unlink(missing_ok=True)
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        assert run("send", "--yes").exit_code == 0
    assert len(server.recorder.messages) == 3
    for _, (rcpt,), raw in server.recorder.messages:
        via_smtp, via_outbox = parsed(raw), outbox[rcpt]
        skip = {"Date", "List-Unsubscribe"}  # the plan time and the signed token's timestamp differ
        assert [(k, str(v)) for k, v in via_smtp.items() if k not in skip] == [
            (k, str(v)) for k, v in via_outbox.items() if k not in skip
        ]
        for part in ("plain", "html"):
            smtp_body = via_smtp.get_body((part,)).get_content()
            outbox_body = via_outbox.get_body((part,)).get_content()
            token = str(via_smtp["List-Unsubscribe"]).strip("<>")
            other = str(via_outbox["List-Unsubscribe"]).strip("<>")
            assert smtp_body.replace(token, "URL") == outbox_body.replace(other, "URL")


def test_bad_login_is_not_retried_and_changes_nothing(run, project, certificate, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong")
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        outcome = run("send", "--yes")
    assert outcome.exit_code == 1
    assert "refused the login" in outcome.stderr and outcome.stderr.count("\n") == 1
    assert "wrong" not in outcome.stderr  # SEC-08
    # smtplib tries PLAIN, then LOGIN, once each; a retry would double that.
    assert server.recorder.logins == 2 and server.recorder.messages == []
    assert {s for _, s in states(project)} == {"planned"}


def test_temporary_451_is_retried_and_delivered_once(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.rcpt_451 = {"bruno@example.org"}
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        assert run("send", "--yes").exit_code == 0
    received = sorted(rcpt[0] for _, rcpt, _ in server.recorder.messages)
    assert received == SUBSCRIBERS  # bruno once, after the retry
    assert states(project) == [(a, "accepted") for a in SUBSCRIBERS]


def test_permanent_550_is_recorded_as_rejected_for_that_recipient_only(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.rcpt_550 = {"bruno@example.org"}
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        outcome = run("send", "--yes")
    assert outcome.exit_code == 0 and "1 rejected" in outcome.stdout
    assert dict(states(project)) == {
        "alice@example.org": "accepted", "bruno@example.org": "rejected", "camille@example.org": "accepted",
    }  # fmt: skip


def test_dropped_connection_mid_batch_reconnects_and_delivers_each_once(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.drop_at_mail = [2]  # the server hangs up before the second message
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        assert run("send", "--yes").exit_code == 0
    assert sorted(rcpt[0] for _, rcpt, _ in server.recorder.messages) == SUBSCRIBERS
    assert server.recorder.logins == 2  # one reconnection


def test_connection_lost_during_data_is_never_resent_blindly(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        server.recorder.faults.drop_after_data = [2]
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 1
        assert "may or may not have been delivered" in outcome.stderr
        assert dict(states(project))["bruno@example.org"] == "unknown"
        again = run("send", "--yes")
        assert again.exit_code == 1  # still refuses: nothing can tell whether bruno got it
    received = [rcpt[0] for _, rcpt, _ in server.recorder.messages]
    assert received.count("bruno@example.org") == 1 and "camille@example.org" not in received


def test_untrusted_certificate_is_refused_without_retry(run, project, certificate, smtp_password):
    """SEC-11: without our CA the self-signed server certificate fails verification."""
    cert, key = certificate
    with SmtpServer(cert, key) as server:
        use_smtp(project, server.port)
        run("subscribers", "add", *SUBSCRIBERS)
        outcome = run("send", "--yes")
    assert outcome.exit_code == 1 and "not trusted" in outcome.stderr
    assert server.recorder.messages == []


def test_tls_context_verifies_certificate_and_host_SEC_11(monkeypatch):
    context = tls_context()
    assert context.check_hostname is True and context.verify_mode == ssl.CERT_REQUIRED
    seen = {}

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            pass

        def ehlo(self):
            return 250, b"ok"

        def starttls(self, context=None):
            seen["context"] = context
            return 220, b"ready"

        def login(self, user, password):
            return 235, b"ok"

    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    provider = SmtpProvider(host="mail.example.org", port=587, security="starttls", envelope_from="a@example.org")
    provider._connect()
    assert seen["context"].check_hostname and seen["context"].verify_mode == ssl.CERT_REQUIRED


def test_missing_password_variable_is_one_line(run, project, certificate, monkeypatch):
    """SEC-07: the variable is named, no value is shown."""
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD", raising=False)
    use_smtp(project, 2525)
    run("subscribers", "add", *SUBSCRIBERS)
    outcome = run("send", "--yes")
    assert outcome.exit_code == 1 and "NEWSLETTER_SMTP_PASSWORD" in outcome.stderr


def test_password_never_in_repr_SEC_08(monkeypatch, config):
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    provider = SmtpProvider.from_config({"host": "mail.example.org", "username": USER}, config=config, environ={
        "NEWSLETTER_SMTP_PASSWORD": PASSWORD})  # fmt: skip
    assert PASSWORD not in repr(provider) and PASSWORD not in repr(vars(provider))
