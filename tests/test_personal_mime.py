"""Personalisation by substitution gives the very bytes of a message built from scratch."""

from __future__ import annotations

import pytest

from conftest import FIXED_NOW, write_post
from newsletter.content import read_post, read_posts
from newsletter.errors import HeaderInjection
from newsletter.render import Recipient, render_issue
from newsletter.templates import make_environment

ADDRESSES = [
    "ann@example.org",
    "first.last+tag@sub.example.co.uk",
    "o'brien@example.org",  # an atom character outside the plain set: the header registry writes it
    '"two words"@example.org',  # a quoted local part
    "x" * 64 + "@" + "long-domain-" * 5 + "example.org",  # a To line past 78 characters
    "jörg@example.org",  # non-ASCII: however the policy writes it, both paths agree
    "user@bücher.example",
    "UPPER_case-1@EXAMPLE.ORG",
]
URL_TAILS = ["a", "x" * 37, "é-ü?x=1&y=2", "z" * 150, "%20&amp;<>\"'", "t" * 73]


def _recipients(count: int) -> list[Recipient]:
    people = []
    for n in range(count):
        subscriber_id = [n + 1, 10**n % 10**9 + n, 12345678 + n][n % 3]
        tail = URL_TAILS[n % len(URL_TAILS)] * (1 + n % 2)
        people.append(Recipient(subscriber_id, ADDRESSES[n % len(ADDRESSES)],
                                f"https://claudesuper.example.org/unsubscribe/{tail}{n}"))  # fmt: skip
    return people


def _posts(config):
    long_line = "Très long paragraphe « avec » des espaces insécables et des émojis 🎉 " * 12
    write_post(config.content_dir, "zz-qp", body=f"{long_line}\n\nFin.   \n\n[lien](https://example.org/{'é' * 40})")
    return [*read_posts(config), read_post(config.content_dir / "zz-qp.md", config)]


def test_substituted_messages_equal_messages_built_from_scratch(config):
    env = make_environment(config.templates_dir)
    compared = 0
    for post in _posts(config):
        issue = render_issue(config, post, env)
        for recipient in _recipients(60):
            try:
                expected = issue.message_for(recipient, date=FIXED_NOW).as_bytes()
            except Exception as slow_error:  # the slow path refuses it: so must the fast one
                with pytest.raises(type(slow_error)):
                    issue.message_bytes(recipient, date=FIXED_NOW)
                continue
            assert issue.message_bytes(recipient, date=FIXED_NOW) == expected, (post.slug, recipient)
            compared += 1
        # The fast path was taken (a cut message per id length), not the fallback.
        cuts = issue._personal[FIXED_NOW]._cut
        assert cuts and all(cut is not None for cut in cuts.values())
    assert compared >= 60 * 5


def test_substitution_refuses_header_injection_like_the_slow_path(config):
    issue = render_issue(config, read_posts(config)[0], make_environment(config.templates_dir))
    issue.message_bytes(Recipient(1, "a@example.org", "https://x.example/u/1"), date=FIXED_NOW)
    for bad in (Recipient(2, "a@example.org\r\nBcc: b@example.org", "https://x.example/u/2"),
                Recipient(3, "a@example.org", "https://x.example/u/3\r\nBcc: b@example.org")):  # fmt: skip
        with pytest.raises(HeaderInjection):
            issue.message_bytes(bad, date=FIXED_NOW)
