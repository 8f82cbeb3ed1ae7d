"""Suppression always wins (issue 10 item 2; LAW-07, BULK-05, BULK-09).

A bounced, complained or unsubscribed address becomes active again only through the
editor's explicit ``subscribers reactivate ADDRESS --override-…``; confirmations,
new requests, imports, additions and webhooks never lift a suppression.
"""

from __future__ import annotations

import io
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import assert_one_line_error
from conftest import FIXED_NOW, TOKEN_KEY
from newsletter.config import Secret
from newsletter.errors import SubscriberError
from newsletter.store import ACTIVE, BOUNCED, COMPLAINED, SUPPRESSED_STATUSES, UNSUBSCRIBED, Ledger
from newsletter.subscribers import (
    confirm_subscription,
    import_csv,
    request_subscription,
    suppress,
    unsubscribe_with_token,
)
from newsletter.tokens import UNSUBSCRIBE, InvalidToken, make_token  # fmt: skip

KEYS = [Secret("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)]
LIST = "lettre.claudesuper.example.org"
ADDRESSES = ["ann@example.org", "bob@example.org"]
MAX_AGE = timedelta(days=7)

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["request", "confirm", "confirm-old", "unsubscribe", "bounce", "complaint", "import",
                         "import-unsubscribed", "add"]),
        st.sampled_from(ADDRESSES),
    ),
    max_size=14,
)  # fmt: skip


def apply(ledger: Ledger, event: str, address: str, tokens: dict[str, list[str]], step: int) -> None:
    now = FIXED_NOW + timedelta(minutes=step)
    if event == "request":
        due = request_subscription(ledger, KEYS, LIST, address, now=now, source="form")
        if due:
            tokens.setdefault(address, []).append(due[1])
    elif event in ("confirm", "confirm-old"):
        issued = tokens.get(address, [])
        if issued:
            try:
                confirm_subscription(
                    ledger, KEYS, LIST, issued[-1 if event == "confirm" else 0], now=now, max_age=MAX_AGE
                )
            except InvalidToken:
                pass
    elif event == "unsubscribe":
        row = ledger.subscribers.subscriber_by_email(address)
        if row:
            token = make_token(KEYS, purpose=UNSUBSCRIBE, list_id=LIST, subscriber_id=row["id"], issued_at=now)
            unsubscribe_with_token(ledger, KEYS, LIST, token, now=now)
    elif event in ("bounce", "complaint"):
        suppress(ledger, address, BOUNCED if event == "bounce" else COMPLAINED, now=now)
    elif event == "import":
        import_csv(ledger, io.StringIO(f"email\n{address}\n"), source="import", now=now)
    elif event == "import-unsubscribed":
        import_csv(ledger, io.StringIO(f"email,status\n{address},unsubscribed\n"), source="import", now=now)
    elif event == "add":
        ledger.subscribers.add_subscriber(address, source="cli", now=now)


def leaves(event: str, ledger: Ledger, address: str) -> bool:
    """Whether the event, as applied, suppresses the address."""
    if event in ("bounce", "complaint", "import-unsubscribed"):
        return True
    return event == "unsubscribe" and ledger.subscribers.subscriber_by_email(address) is not None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_no_sequence_of_events_lifts_a_suppression(events):
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "ledger.db")
        try:
            tokens: dict[str, list[str]] = {}
            suppressed: set[str] = set()
            for step, (event, address) in enumerate(events):
                if leaves(event, ledger, address):
                    suppressed.add(address)
                apply(ledger, event, address, tokens, step)
                for someone in ADDRESSES:
                    row = ledger.subscribers.subscriber_by_email(someone)
                    if someone in suppressed:
                        assert ledger.subscribers.is_suppressed(someone), (someone, events[: step + 1])
                        assert row is None or row["status"] in SUPPRESSED_STATUSES, (someone, row, events[: step + 1])
                    if row is not None and row["status"] == ACTIVE:
                        assert not ledger.subscribers.is_suppressed(someone)
            assert ledger.subscribers.count_subscribers(ACTIVE) == len(
                [
                    a
                    for a in ADDRESSES
                    if a not in suppressed and (ledger.subscribers.subscriber_by_email(a) or {}).get("status") == ACTIVE
                ]
            )
        finally:
            ledger.close()


def test_a_complaint_then_the_confirmation_link_leaves_the_address_suppressed(tmp_path):
    """The reported case: request, complaint webhook, then the confirmation POST."""
    with _opened(tmp_path) as ledger:
        address, token = request_subscription(ledger, KEYS, LIST, "eve@example.org", now=FIXED_NOW, source="form")
        suppress(ledger, address, COMPLAINED, now=FIXED_NOW)
        confirm_subscription(ledger, KEYS, LIST, token, now=FIXED_NOW, max_age=MAX_AGE)
        assert ledger.subscribers.subscriber_by_email(address)["status"] == COMPLAINED
        assert ledger.subscribers.suppression_reason(address) == COMPLAINED


def test_an_unsubscribed_person_cannot_resubscribe_through_the_form(tmp_path):
    with _opened(tmp_path) as ledger:
        ledger.subscribers.add_subscriber("zoe@example.org", source="cli", now=FIXED_NOW)
        ledger.subscribers.unsubscribe(1, now=FIXED_NOW)
        assert request_subscription(ledger, KEYS, LIST, "zoe@example.org", now=FIXED_NOW, source="form") is None
        assert ledger.subscribers.subscriber(1)["status"] == UNSUBSCRIBED


class _opened:
    def __init__(self, folder: Path) -> None:
        self.ledger = Ledger(folder / "ledger.db")

    def __enter__(self) -> Ledger:
        return self.ledger

    def __exit__(self, *exc) -> None:
        self.ledger.close()


def test_reactivate_names_what_it_overrides(run):
    assert run("subscribers", "add", "cle@example.org").exit_code == 0
    assert run("subscribers", "remove", "cle@example.org").exit_code == 0
    refused = run("subscribers", "reactivate", "cle@example.org")
    assert_one_line_error(refused, "cle@example.org is unsubscribed", "--override-unsubscribe")
    wrong = run("subscribers", "reactivate", "cle@example.org", "--override-complaint")
    assert_one_line_error(wrong, "--override-unsubscribe")
    done = run("subscribers", "reactivate", "cle@example.org", "--override-unsubscribe")
    assert done.exit_code == 0 and "was unsubscribed" in done.stdout
    assert "cle@example.org\tactive" in run("subscribers", "list").stdout


def test_a_complaint_about_an_unknown_address_is_lifted_only_by_its_own_flag(tmp_path):
    with _opened(tmp_path) as ledger:
        suppress(ledger, "far@example.org", COMPLAINED, now=FIXED_NOW)
        assert ledger.subscribers.add_subscriber("far@example.org", source="cli", now=FIXED_NOW)[1] == "suppressed"
        try:
            ledger.subscribers.reactivate("far@example.org", overrides={UNSUBSCRIBED, BOUNCED}, now=FIXED_NOW)
        except SubscriberError as error:
            assert "--override-complaint" in error.one_line()
        else:
            raise AssertionError("a complaint was lifted without --override-complaint")
        assert ledger.subscribers.reactivate("far@example.org", overrides={COMPLAINED}, now=FIXED_NOW) == COMPLAINED
        assert ledger.subscribers.subscriber_by_email("far@example.org")["status"] == ACTIVE
        assert not ledger.subscribers.is_suppressed("far@example.org")
