"""Property: any title, author and body either round-trips exactly or fails with a typed error.

Random titles, authors and bodies (any Unicode, control characters, markup, template syntax,
header-injection attempts, RFC 2047 look-alikes) are written as a real post file and read by
``newsletter.content.read_post``.  Then either:

- a :class:`newsletter.errors.NewsletterError` is raised, and only when the input deserves it
  (CR, LF, NUL or a Unicode line break in a header-bound field: ``HeaderInjection``; a title
  empty once XML-forbidden characters are stripped, an e-mail address as author, a NUL in
  the body: ``PostError``); or
- the Atom feed parses and gives back the exact title and author (after the documented
  stripping of XML-forbidden characters, ATOM-31, and of surrounding whitespace), and the
  MIME message of the issue parses, its ``Subject`` decodes to the exact title, and it holds
  exactly the expected headers: never a ``Bcc`` or any other injected header.

Never any other exception.  Standards: INJ-01, HDR-01, HDR-04, HDR-06, SEC-03, ATOM-31.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from newsletter.content import read_post
from newsletter.errors import HeaderInjection, NewsletterError, PostError
from newsletter.feed import build_feed
from newsletter.frontmatter import _StringDatesLoader
from newsletter.render import Recipient, render_issue
from newsletter.templates import make_environment
from newsletter.textutil import xml_safe

ATOM = "{http://www.w3.org/2005/Atom}"
# NUL and every line end of str.splitlines(), which the email package splits header values with.
HEADER_BREAKS = ("\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
EXPECTED_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
    "List-Archive", "MIME-Version", "Content-Type",
]  # fmt: skip
RECIPIENT = Recipient(7, "lectrice@example.org", "https://claudesuper.example.org/unsubscribe/jeton")
DATE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# Fragments an attacker (or a careless paste) would try; mixed with arbitrary text.
HOSTILE = [
    "\r\n", "\n", "\r", "\x00", "\r\nBcc: victime@example.org", "\nTo: x@example.org", "\x85", "\u2028", "\u2029",
    "\x1b", "\x0b", "\x0c", "\x08", "\x7f", "\x9b", "\ufffe", "\uffff", "\ud800", "\udfff", "\t", "  ", "\u00a0",
    "<script>alert(1)</script>", "<b>gras</b>", "&amp;", "&", "<", ">", '"', "'", "]]>", "<![CDATA[x]]>",
    "{{ 7*7 }}", "{% if true %}x{% endif %}", "{# note #}", "=?utf-8?q?Bcc=3A_x?=", "=?utf-8?b?QmNj?=", "?=",
    "@", "Réf. : ", "日本語", "🎉", "\u202e", "\ufeff", "---", "- ", "#", "*", "[lien](javascript:alert(1))",
    "\\", "%s", "\x1c",
]  # fmt: skip
# Bodies live in a UTF-8 file: no lone surrogates there (they cannot be encoded).
BODY_HOSTILE = [f for f in HOSTILE if not re.search("[\ud800-\udfff]", f)] + [
    "\n\n<iframe src=https://evil.example/></iframe>\n\n",
    "\n\n<img src=x onerror=alert(1)>\n\n",
    "\n\n---\n\n",
]

fields = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE)), max_size=6).map("".join)
bodies = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(BODY_HOSTILE)), max_size=8).map("".join)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """The demo config and templates, and a folder for the generated post."""
    from conftest import REPO
    from newsletter.config import load_config

    config = load_config(REPO / "newsletter.toml")
    return config, make_environment(config.templates_dir), tmp_path_factory.mktemp("properties")


def front_matter(title: str, author: str) -> str:
    meta = {
        "title": title,
        "author": author,
        "slug": "propriete",
        "id": "urn:uuid:9d6c2a1e-5b4f-4e3d-8c2b-1a0f9e8d7c6b",
        "date": "2024-05-01T10:00:00+02:00",
    }
    return yaml.safe_dump(meta, allow_unicode=True, width=float("inf"), sort_keys=False)


def expected_outcome(title: str, author: str, body: str, site_author: str) -> tuple[type | None, str, str]:
    """What read_post must do with these (already YAML-decoded) values: (error type or None, title, author).

    In read_post's order: a NUL byte makes the file binary; then the title (missing, header
    break, empty once cleaned), then the author (header break, an address).
    """
    if "\x00" in body or title == "":
        return PostError, "", ""
    if any(ch in title for ch in HEADER_BREAKS):
        return HeaderInjection, "", ""
    clean_title = xml_safe(title).strip()
    if not clean_title:
        return PostError, "", ""
    if any(ch in author for ch in HEADER_BREAKS):
        return HeaderInjection, "", ""
    clean_author = xml_safe(author).strip() or site_author
    if "@" in clean_author:
        return PostError, "", ""
    return None, clean_title, clean_author


def header_names(raw: bytes) -> list[str]:
    """Field names of the top-level header block, read from the bytes (not from a parser)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode("ascii") for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(title=fields, author=fields, body=bodies)
@example(title="Bonjour\r\nBcc: victime@example.org", author="", body="Corps.")
@example(title="Titre\x1b\x0b propre", author="Claude\ufffe", body="Début\x08 fin.")
@example(title="<b>x</b> & {{ 7*7 }} ]]>", author="O'Brien \"l'ancien\"", body="<script>alert(1)</script>")
@example(title="=?utf-8?q?Bcc=3A_victime=40example=2Eorg?=", author="", body="Corps.")
def test_titles_authors_and_bodies_round_trip_or_fail_typed(setting, title, author, body):
    config, env, folder = setting
    path = folder / "propriete.md"
    header = front_matter(title, author)
    path.write_bytes(f"---\n{header}---\n{body}\n".encode())
    meta = yaml.load(header, Loader=_StringDatesLoader)  # what the post file really says
    title, author = meta["title"], meta["author"]
    error, want_title, want_author = expected_outcome(title, author, body, config.site.author)

    try:
        post = read_post(path, config)
    except NewsletterError as raised:
        assert error is not None and isinstance(raised, error), f"refused without reason: {raised.one_line()}"
        assert "\n" not in raised.one_line() and "\r" not in raised.one_line()
        event(f"refused: {type(raised).__name__}")
        return
    assert error is None, f"accepted although it must raise {error.__name__}"
    assert post.title == want_title and post.author == want_author

    # The feed parses and gives the exact title and author back (SEC-03, ATOM-31).
    root = etree.fromstring(build_feed(config, [post]))
    (entry,) = root.iter(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == want_title
    assert entry.findtext(f"{ATOM}author/{ATOM}name") == want_author
    content = entry.findtext(f"{ATOM}content") or ""
    assert "<script" not in content.lower() and " onerror=" not in content.lower()  # sanitized (SEC-01)

    # The message parses, its Subject decodes to the exact title, no header was injected.
    issue = render_issue(config, post, env)
    raw = issue.message_bytes(RECIPIENT, date=DATE)
    assert header_names(raw) == EXPECTED_HEADERS, header_names(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.keys() == EXPECTED_HEADERS
    assert str(message["Subject"]) == want_title, (message["Subject"], want_title)
    assert message["To"].addresses[0].addr_spec == RECIPIENT.email and len(message["To"].addresses) == 1
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    for part in message.iter_parts():
        part.get_content()  # both parts decode
    event("round-trip: non-ASCII subject" if not want_title.isascii() else "round-trip: ASCII subject")
