"""Subscribers (add/remove/list/import/export) and signed unsubscribe tokens (SEC-09)."""

from __future__ import annotations

import csv
import hmac
import io
from datetime import UTC, datetime

import pytest

from checks import assert_one_line_error
from newsletter.config import Secret
from newsletter.errors import SubscriberError
from newsletter.subscribers import normalize_address
from newsletter.tokens import UNSUBSCRIBE, InvalidToken, make_token, verify_token

KEY = Secret("K", "current-key")
OLD = Secret("K_OLD", "retired-key")
LIST = "lettre.claudesuper.example.org"
ISSUED = datetime(2013, 3, 26, 9, 47, tzinfo=UTC)


def token(keys=(KEY,), subscriber_id=42, list_id=LIST, purpose=UNSUBSCRIBE):
    return make_token(list(keys), purpose=purpose, list_id=list_id, subscriber_id=subscriber_id, issued_at=ISSUED)


def test_token_round_trip_carries_no_address():
    """SEC-09: the payload names the subscriber id and the list, never the address."""
    value = token()
    claims = verify_token(value, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert (claims.subscriber_id, claims.list_id, claims.issued_at) == (42, LIST, int(ISSUED.timestamp()))
    assert "@" not in value and "example" not in value
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def flip(value: str, index: int) -> str:
    chars = list(value)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


@pytest.mark.parametrize("index", [0, 5, -1, -5])
def test_tampered_token_is_refused_SEC_09(index):
    """Any changed character is refused, even in the last character's spare base64 bits."""
    with pytest.raises(InvalidToken):
        verify_token(flip(token(), index), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_token_for_another_subscriber_cannot_be_forged_by_swapping_payloads():
    mine, theirs = token(subscriber_id=1), token(subscriber_id=2)
    forged = theirs[:-22] + mine[-22:]  # their claims, my signature (the last 16 bytes)
    with pytest.raises(InvalidToken):
        verify_token(forged, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_token_is_scoped_to_its_list_and_purpose_LIST_05():
    value = token()
    with pytest.raises(InvalidToken):
        verify_token(value, [KEY], purpose=UNSUBSCRIBE, list_id="other.example.org")
    with pytest.raises(InvalidToken):
        verify_token(value, [KEY], purpose="confirm", list_id=LIST)


def test_unknown_key_is_refused_and_retired_key_still_verifies_during_rotation_SEC_09():
    old_token = token(keys=(OLD,))
    with pytest.raises(InvalidToken):
        verify_token(old_token, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    claims = verify_token(old_token, [KEY, OLD], purpose=UNSUBSCRIBE, list_id=LIST)
    assert claims.subscriber_id == 42
    # New tokens are signed with the current key, the first of the list.
    assert verify_token(token(keys=(KEY, OLD)), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)


def test_signature_is_compared_with_compare_digest_SEC_09(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_token(token(), [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert len(calls) == 1


@pytest.mark.parametrize("garbage", ["", ".", "abc", "a.b.c", "!!!.???", "eyJ4Ijox.fQ"])
def test_malformed_tokens_are_refused_without_detail(garbage):
    with pytest.raises(InvalidToken) as caught:
        verify_token(garbage, [KEY], purpose=UNSUBSCRIBE, list_id=LIST)
    assert str(caught.value) == "invalid token"


@pytest.mark.parametrize(
    "raw, expected",
    [(" Alice@Example.ORG ", "alice@example.org"), ("b.c+tag@sub.example.org", "b.c+tag@sub.example.org")],
)
def test_addresses_are_normalised(raw, expected):
    assert normalize_address(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "no-at", "a@b", "a b@example.org", "a@example.org\r\nBcc: x@evil.org", "<a@b.org>"]
)
def test_invalid_addresses_are_refused(raw):
    with pytest.raises(SubscriberError):
        normalize_address(raw)


def test_add_list_remove_export_through_the_cli(run, project):
    assert run("subscribers", "add", "Alice@Example.org", "bob@example.org").exit_code == 0
    again = run("subscribers", "add", "alice@example.org")
    assert "already subscribed" in again.stdout
    assert run("subscribers", "remove", "bob@example.org").exit_code == 0
    assert "already unsubscribed" in run("subscribers", "remove", "bob@example.org").stdout
    listed = run("subscribers", "list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [
        ["alice@example.org", "active"],
        ["bob@example.org", "unsubscribed"],
    ]
    assert run("subscribers", "list", "--status", "active").stdout.count("\n") == 1
    assert "suppressed, not added" in run("subscribers", "add", "bob@example.org").stdout
    exported = list(csv.DictReader(io.StringIO(run("subscribers", "export").stdout)))
    assert all(r["consent_at"] and r["consent_source"] == "cli" for r in exported)  # LAW-04
    assert [(r["email"], r["status"], r["source"]) for r in exported] == [
        ("alice@example.org", "active", "cli"),
        ("bob@example.org", "unsubscribed", "cli"),
    ]
    assert exported[1]["unsubscribed_at"]


def test_remove_unknown_and_add_invalid_are_one_line_errors(run):
    missing = run("subscribers", "remove", "ghost@example.org")
    assert missing.exit_code == 1 and "ghost@example.org" in missing.stderr
    invalid = run("subscribers", "add", "good@example.org", "not-an-address")
    assert invalid.exit_code == 1 and "not-an-address" in invalid.stderr
    # Nothing half-done: the valid address of the failed command was not added either.
    assert run("subscribers", "list").stdout == ""


def test_import_reports_added_known_and_invalid_lines(run, project):
    run("subscribers", "add", "known@example.org")
    run("subscribers", "remove", "known@example.org")
    source = project / "people.csv"
    source.write_text(
        "name,email\nAnn,ann@example.org\nBad,not an address\nKnown,KNOWN@example.org\nAnn again,ann@example.org\n,\n",
        encoding="utf-8",
    )
    outcome = run("subscribers", "import", str(source))
    assert outcome.exit_code == 0
    assert "Imported 1, duplicates 1, suppressed 1, invalid 1;" in outcome.stdout
    assert "people.csv:3" in outcome.stderr
    statuses = dict(line.split("\t")[:2] for line in run("subscribers", "list").stdout.splitlines())
    # An unsubscribed address is never re-activated by an import.
    assert statuses == {"known@example.org": "unsubscribed", "ann@example.org": "active"}


def test_import_without_header_uses_the_first_column(run, project):
    source = project / "plain.csv"
    source.write_text("zoe@example.org\nyann@example.org\n", encoding="utf-8")
    assert "Imported 2" in run("subscribers", "import", str(source)).stdout


def test_import_of_a_non_utf8_file_is_a_clear_error(run, project):
    source = project / "latin1.csv"
    source.write_bytes("email\nzoé@example.org\n".encode("latin-1"))
    outcome = run("subscribers", "import", str(source))
    assert outcome.exit_code == 1 and "UTF-8" in outcome.stderr and "Traceback" not in outcome.stderr


def statuses_of(run) -> dict[str, str]:
    return dict(line.split("\t")[:2] for line in run("subscribers", "list").stdout.splitlines())


def test_a_buttondown_export_imports_who_left_as_suppressed(run, project):
    """Buttondown's subscriber export: ``email`` and ``subscriber_type`` (issue 9 item 8)."""
    run("subscribers", "add", "was-active@example.org")
    source = project / "buttondown.csv"
    source.write_text(
        "id,email,notes,subscriber_type,creation_date\n"
        "1,reg@example.org,,regular,2024-01-01\n"
        "2,paid@example.org,,premium,2024-01-01\n"
        "3,gone@example.org,,unsubscribed,2024-01-01\n"
        "4,was-active@example.org,,unsubscribed,2024-01-01\n"
        "5,never@example.org,,unactivated,2024-01-01\n"
        "6,robot@example.org,,spammy,2024-01-01\n"
        "7,odd@example.org,,martian,2024-01-01\n",
        encoding="utf-8",
    )
    outcome = run("subscribers", "import", str(source))
    assert outcome.exit_code == 0, outcome.stderr
    assert "Imported 2," in outcome.stdout
    assert (
        "recorded as suppressed: unsubscribed 3, bounced 0, complained 0; unconfirmed (not imported) 1."
        in outcome.stdout
    )
    assert "buttondown.csv:8: unknown status 'martian'" in outcome.stderr
    statuses = statuses_of(run)
    # Who left is never active: a known subscriber leaves, a new one is only a suppression hash.
    assert statuses == {
        "was-active@example.org": "unsubscribed",
        "reg@example.org": "active",
        "paid@example.org": "active",
    }
    assert "suppressed, not added" in run("subscribers", "add", "gone@example.org", "robot@example.org").stdout
    assert "suppressed, not added" in run("subscribers", "add", "robot@example.org").stdout


def test_mailchimp_unsubscribed_and_cleaned_files_import_as_suppressed(run, project):
    """Mailchimp exports one file per status: ``Email Address`` with ``UNSUB_TIME`` or ``CLEAN_TIME``."""
    subscribed = project / "subscribed_members_export.csv"
    subscribed.write_text("Email Address,First Name,MEMBER_RATING,OPTIN_TIME\nkeep@example.org,K,2,2024-01-01\n")
    unsubscribed = project / "unsubscribed_members_export.csv"
    unsubscribed.write_text(
        "Email Address,First Name,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE\nleft@example.org,L,2024-02-02 10:00:00,Lettre\n"
    )
    cleaned = project / "cleaned_members_export.csv"
    cleaned.write_text(
        "Email Address,First Name,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE\nkeep@example.org,K,2024-03-03,Lettre\n"
    )
    assert "Imported 1," in run("subscribers", "import", str(subscribed)).stdout
    assert "unsubscribed 1, bounced 0" in run("subscribers", "import", str(unsubscribed)).stdout
    assert "unsubscribed 0, bounced 1" in run("subscribers", "import", str(cleaned)).stdout
    assert statuses_of(run) == {"keep@example.org": "bounced"}
    # A newer audience export with a status column says the same in words.
    audience = project / "audience.csv"
    audience.write_text(
        "Email Address,Email Marketing Status\nnew@example.org,Subscribed\nleft@example.org,Subscribed\n"
        "spam@example.org,Cleaned\n"
    )
    outcome = run("subscribers", "import", str(audience))
    assert "Imported 1, duplicates 0, suppressed 1," in outcome.stdout and "bounced 1" in outcome.stdout


def test_a_substack_export_reads_email_disabled(run, project):
    source = project / "substack.csv"
    source.write_text(
        "email,active_subscription,expiry,plan,email_disabled,created_at\n"
        "on@example.org,false,,,false,2024-01-01\n"
        "off@example.org,false,,,true,2024-01-01\n"
    )
    outcome = run("subscribers", "import", str(source))
    assert "Imported 1," in outcome.stdout and "unsubscribed 1," in outcome.stdout
    assert statuses_of(run) == {"on@example.org": "active"}


def test_an_import_with_a_field_over_the_csv_limit_changes_nothing(run, project):
    source = project / "long.csv"
    source.write_text("email,note\nann@example.org,ok\nbob@example.org," + "x" * 200_000 + "\n")
    outcome = run("subscribers", "import", str(source))
    assert_one_line_error(outcome, "long.csv", "line 3", "field larger than field limit")
    assert run("subscribers", "list").stdout == ""
