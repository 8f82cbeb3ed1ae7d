"""International addresses (issue 15, RFC 6530-6532): accepted, stored in one spelling, sent with
SMTPUTF8 where the server offers it and refused per recipient, with a reason, where it does not."""

from __future__ import annotations

import email
import email.policy
import sqlite3

import pytest

from newsletter.errors import SubscriberError
from newsletter.subscribers import ascii_address, normalize_address
from smtp_server import SmtpServer
from test_smtp import SUBSCRIBERS, use_smtp

JOSE, CAFE = "josé@exemple.fr", "user@café.fr"


@pytest.mark.parametrize(
    "raw, stored",
    [(JOSE, JOSE), ("JOSE\u0301@Exemple.FR", JOSE), (CAFE, CAFE), ("User@XN--CAF-DMA.fr", CAFE),
     ("  Ünïcödé@Bücher.example ", "ünïcödé@bücher.example"), ("用户@例子.广告", "用户@例子.广告")],
)  # fmt: skip
def test_international_addresses_are_stored_nfc_lowercase_with_a_unicode_domain(raw, stored):
    assert normalize_address(raw) == stored


@pytest.mark.parametrize("raw", ["josé@exemple", "jo sé@exemple.fr", "josé@exemple.fr\u2028Bcc: x@evil.org",
                                 "josé@-bad-.fr", '"josé"@exemple.fr', "josé@[192.0.2.1]", "a@xn--zz.fr"])  # fmt: skip
def test_malformed_international_addresses_are_refused(raw):
    with pytest.raises(SubscriberError):
        normalize_address(raw)


def test_an_idn_domain_has_an_ascii_form_and_a_unicode_local_part_has_none():
    assert ascii_address(CAFE) == "user@xn--caf-dma.fr"
    assert ascii_address(JOSE) is None


def test_subscribers_add_accepts_them_once_in_one_spelling(run):
    outcome = run("subscribers", "add", JOSE, CAFE)
    assert outcome.exit_code == 0, outcome.stderr
    again = run("subscribers", "add", "USER@xn--caf-dma.fr", "Jose\u0301@exemple.fr")
    assert again.exit_code == 0
    listed = run("subscribers", "list").stdout
    assert listed.count(JOSE) == 1 and listed.count(CAFE) == 1 and "xn--" not in listed


def deliveries(project) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(project / "newsletter.db") as db:
        return {a: (s, e or "") for a, s, e in db.execute("SELECT email, state, error FROM deliveries")}


def test_smtputf8_server_receives_both_with_utf8_headers(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key, smtputf8=True) as server:
        use_smtp(project, server.port, ca_file=cert)
        run("subscribers", "add", *SUBSCRIBERS, JOSE, CAFE)
        outcome = run("send", "--yes")
        assert outcome.exit_code == 0, outcome.stderr
    received = {rcpt[0]: raw for _, rcpt, raw in server.recorder.messages}
    assert sorted(received) == sorted([*SUBSCRIBERS, JOSE, CAFE])
    for address in (JOSE, CAFE):
        message = email.message_from_bytes(received[address], policy=email.policy.default)
        assert str(message["To"]) == address  # raw UTF-8 (RFC 6532), not an encoded-word
        assert f"To: {address}".encode() in received[address]
    # Only the messages that need it carry UTF-8 headers; the others stay 7-bit.
    assert all(raw.isascii() for address, raw in received.items() if address in SUBSCRIBERS)
    assert {state for state, _ in deliveries(project).values()} == {"accepted"}


def status_json(run) -> dict:
    import json

    outcome = run("status", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    return json.loads(outcome.stdout)


def test_server_without_smtputf8_refuses_both_and_nothing_else(run, project, certificate, smtp_password):
    """Issue 15's done-when: a server without SMTPUTF8 gets neither josé@ nor user@café.fr (the
    address the subscriber gave cannot travel there), each refused with its reason; the others
    are sent as usual, and ``status`` shows the refusals."""
    cert, key = certificate
    with SmtpServer(cert, key, smtputf8=False) as server:
        use_smtp(project, server.port, ca_file=cert)
        assert run("subscribers", "add", *SUBSCRIBERS, JOSE, CAFE).exit_code == 0
        outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    received = {rcpt[0]: raw for _, rcpt, raw in server.recorder.messages}
    assert sorted(received) == sorted(SUBSCRIBERS)
    assert all(raw.isascii() for raw in received.values())
    states = deliveries(project)
    for address in (JOSE, CAFE):
        state, reason = states[address]
        assert state == "rejected"
        assert address in reason and "does not offer SMTPUTF8 (RFC 6531)" in reason and "127.0.0.1" in reason
    assert 'idn_domains = "a-label"' in states[CAFE][1]  # the opt-in helps the IDN domain only
    assert "idn_domains" not in states[JOSE][1]
    assert all(states[a] == ("accepted", "") for a in SUBSCRIBERS)
    # status: the issue is sent, with the two refusals counted and each reason listed.
    (issue,) = [i for post in status_json(run)["posts"] for i in post["issues"]]
    assert issue["status"] == "sent" and issue["counts"] == {"accepted": 3, "rejected": 2}
    listed = {d["email"]: d for d in issue["deliveries"]}
    assert {a for a, d in listed.items() if d["state"] == "rejected"} == {JOSE, CAFE}
    assert "SMTPUTF8" in listed[CAFE]["error"] and "SMTPUTF8" in listed[JOSE]["error"]
    line = next(line for line in run("status").stdout.splitlines() if "sent " in line)
    assert "delivered 3, rejected 2" in line


def test_a_label_opt_in_sends_the_idn_domain_as_xn_and_still_refuses_a_unicode_local_part(
    run, project, certificate, smtp_password
):
    """``idn_domains = "a-label"``: for a relay without SMTPUTF8, user@café.fr goes to
    user@xn--caf-dma.fr (the same mailbox, in DNS's spelling); josé@ still cannot travel."""
    cert, key = certificate
    with SmtpServer(cert, key, smtputf8=False) as server:
        use_smtp(project, server.port, ca_file=cert, extra='idn_domains = "a-label"\n')
        assert run("subscribers", "add", *SUBSCRIBERS, JOSE, CAFE).exit_code == 0
        outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    received = {rcpt[0]: raw for _, rcpt, raw in server.recorder.messages}
    assert sorted(received) == sorted([*SUBSCRIBERS, "user@xn--caf-dma.fr"])
    assert b"To: user@xn--caf-dma.fr" in received["user@xn--caf-dma.fr"]
    states = deliveries(project)
    assert states[JOSE][0] == "rejected" and JOSE in states[JOSE][1] and "SMTPUTF8" in states[JOSE][1]
    assert all(states[a][0] == "accepted" for a in [*SUBSCRIBERS, CAFE])


def test_the_a_label_opt_in_changes_nothing_on_a_server_with_smtputf8(run, project, certificate, smtp_password):
    cert, key = certificate
    with SmtpServer(cert, key, smtputf8=True) as server:
        use_smtp(project, server.port, ca_file=cert, extra='idn_domains = "a-label"\n')
        assert run("subscribers", "add", JOSE, CAFE).exit_code == 0
        assert run("send", "--yes").exit_code == 0
    assert sorted(rcpt[0] for _, rcpt, _ in server.recorder.messages) == sorted([JOSE, CAFE])


@pytest.mark.parametrize("written, hint", [('"a_label"', "did you mean 'a-label'?"),
                                           ('"alabel"', "did you mean 'a-label'?"), ("true", "known: a-label, refuse")])
def test_a_misspelt_idn_domains_is_one_line_naming_the_setting(run, project, smtp_password, written, hint):
    """Refused at the send's start, before the ledger records anything."""
    use_smtp(project, 2525, extra=f"idn_domains = {written}\n")
    assert run("subscribers", "add", JOSE).exit_code == 0
    outcome = run("send", "--yes")
    assert outcome.exit_code != 0
    (line,) = outcome.stderr.strip().splitlines()
    assert "providers.smtp.idn_domains" in line and hint in line and "Traceback" not in line
    assert not any(p["issues"] for p in status_json(run)["posts"])


def test_a_misspelt_setting_name_gets_its_did_you_mean(run, project):
    use_smtp(project, 2525, extra='idn_domain = "a-label"\n')
    outcome = run("send", "--yes")
    assert outcome.exit_code != 0
    assert "providers.smtp.idn_domain" in outcome.stderr and "did you mean 'idn_domains'?" in outcome.stderr


def test_utf8_messages_read_back_by_mailparser(run, project, tmp_path):
    """A mail client's parser (nodemailer's, not Python's) reads the raw UTF-8 To and the body."""
    from mailreader import read_back

    assert run("subscribers", "add", JOSE, CAFE).exit_code == 0
    assert run("send", "--yes").exit_code == 0
    files = sorted((project / "outbox" / "new").glob("*.eml"))
    parsed = read_back(*files)
    assert sorted(address for message in parsed for address in message["to"]) == sorted([JOSE, CAFE])
    assert all(message["subject"] and message["text"] for message in parsed)


def test_http_provider_gets_the_a_label_and_refuses_a_unicode_local_part_alone(run, project, monkeypatch):
    """Postmark's API (its local fake, real HTTP) documents no UTF-8 addresses: the IDN domain goes
    as its A-label, josé@ is refused with the reason, the others are sent as usual."""
    from fakes import FakePostmark
    from test_provider_postmark import TOKEN, TOKEN_VAR, use_postmark

    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    with FakePostmark() as fake:
        run("subscribers", "add", *SUBSCRIBERS, JOSE, CAFE)
        use_postmark(project, fake.url)
        outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    assert sorted(d.address for d in fake.delivered) == sorted([*SUBSCRIBERS, "user@xn--caf-dma.fr"])
    states = deliveries(project)
    assert states[JOSE][0] == "rejected" and "non-ASCII" in states[JOSE][1]
    assert all(states[a][0] == "accepted" for a in [*SUBSCRIBERS, CAFE])
