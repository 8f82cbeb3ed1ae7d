"""Our messages as a third party reads them: nodemailer's mailparser (Node), not Python's email.

Issue 9 item 1: a List-Unsubscribe that Python wrote as RFC 2047 encoded-words was invisible to
mailparser (and to Gmail/Yahoo one-click).  Here real sends (the outbox) and previews, with a
120-character unsubscribe base URL, are read back by mailparser: the one-click URL,
List-Unsubscribe-Post, Message-ID, a French Subject with accents and emoji, and both bodies
equal to what we rendered (LIST-01, LIST-02, HDR-02, HDR-04, MIME-05).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import TOKEN_KEY, write_post
from mailreader import read_back
from newsletter.config import Secret, load_config
from newsletter.content import read_posts
from newsletter.render import Recipient, render_issue
from newsletter.templates import make_environment
from newsletter.tokens import UNSUBSCRIBE, verify_token

SUBSCRIBERS = ("alice@example.org", "bruno@example.org", "camille@example.org")
EMOJI_TITLE = "Fête de la Musique 🎉 : « Été » à Montréal, ça déménage ✨ — numéro spécial"
RAW_LIST_UNSUBSCRIBE = re.compile(rb"(?m)^List-Unsubscribe: (.*(?:\r\n[ \t].*)*)\r\n")


def _long_base(project: Path) -> str:
    """Give the project a 120-character unsubscribe base URL; return it."""
    prefix, suffix = "https://claudesuper.example.org/", "/unsubscribe/"
    base = prefix + "desabonnement-" + "x" * (120 - len(prefix) - len(suffix) - len("desabonnement-")) + suffix
    assert len(base) == 120
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    old = 'unsubscribe_url = "https://claudesuper.example.org/unsubscribe/"'
    assert old in text
    path.write_text(text.replace(old, f'unsubscribe_url = "{base}"'), encoding="utf-8")
    return base


def _expected(config, title: str, url: str, subscriber_id: int, email: str) -> tuple[str, str]:
    """What we render for this recipient, in process: (html, text)."""
    post = next(p for p in read_posts(config) if p.title == title)
    issue = render_issue(config, post, make_environment(config.templates_dir))
    recipient = Recipient(subscriber_id, email, url)
    return issue.personal_html(recipient), issue.personal_text(recipient)


def _raw_unsubscribe(path: Path) -> bytes:
    head = path.read_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
    (value,) = RAW_LIST_UNSUBSCRIBE.findall(head)
    return value


def _same_text(parsed: str, ours: str) -> bool:
    """Equal up to the transport's CRLF line ends (MIME text is CRLF on the wire)."""
    return parsed.replace("\r\n", "\n") == ours


def test_outbox_messages_of_a_real_send_read_back_by_mailparser(project, run):
    base = _long_base(project)
    config = load_config(project / "newsletter.toml")
    assert run("subscribers", "add", *SUBSCRIBERS).exit_code == 0
    outcome = run("send", "--yes")
    assert outcome.exit_code == 0, outcome.stderr
    files = sorted((project / "outbox" / "new").glob("*.eml"))
    assert len(files) == len(SUBSCRIBERS)
    seen = set()
    for path, parsed in zip(files, read_back(*files), strict=True):
        url = parsed["listUnsubscribeUrl"]
        assert url and url.startswith(base), parsed
        assert _raw_unsubscribe(path) == f"<{url}>".encode("ascii")  # raw, one line, not encoded
        keys = [Secret("K", TOKEN_KEY)]
        claims = verify_token(url[len(base) :], keys, purpose=UNSUBSCRIBE, list_id=config.email.list_id)
        assert parsed["listUnsubscribePost"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(rf"<[^@<>\s]+\.{claims.subscriber_id}@claudesuper\.example\.org>", parsed["messageId"])
        assert parsed["listId"] == config.email.list_id
        assert parsed["listArchiveUrl"] == config.site.base_url  # RFC 2369 List-Archive: the web archive
        (email,) = parsed["to"]
        html, text = _expected(config, parsed["subject"], url, claims.subscriber_id, email)
        assert _same_text(parsed["html"], html) and _same_text(parsed["text"], text)
        assert url in parsed["text"] and config.email.postal_address in parsed["text"]
        seen.add(email)
    assert seen == set(SUBSCRIBERS)
    assert {p["subject"] for p in read_back(*files)} == {read_posts(config)[0].title}  # the newest demo post


def test_preview_read_back_by_mailparser_equals_the_preview_files(project, run):
    base = _long_base(project)
    outcome = run("preview")
    assert outcome.exit_code == 0, outcome.stderr
    (folder,) = [p for p in (project / "preview").iterdir() if p.is_dir()]
    (parsed,) = read_back(folder / "email.eml")
    assert parsed["listUnsubscribeUrl"].startswith(base)
    assert parsed["listUnsubscribePost"] == "List-Unsubscribe=One-Click"
    assert parsed["messageId"] and parsed["messageId"].endswith("@claudesuper.example.org>")
    assert _same_text(parsed["html"], (folder / "email.html").read_text(encoding="utf-8"))
    assert _same_text(parsed["text"], (folder / "email.txt").read_text(encoding="utf-8"))
    config = load_config(project / "newsletter.toml")
    assert parsed["subject"] == read_posts(config)[0].title
    assert any(ch in parsed["subject"] for ch in "àéèçêô")  # the demo titles carry accents


@pytest.mark.parametrize("command", ["send", "preview"])
def test_subject_with_accents_and_emoji_read_back_by_mailparser(project, run, command):
    _long_base(project)
    write_post(project / "content" / "posts", "fete", title=f'"{EMOJI_TITLE}"', date='"2026-06-21T09:00:00+02:00"')
    if command == "send":
        assert run("subscribers", "add", "alice@example.org").exit_code == 0
        outcome = run("send", "--yes")
        files = sorted((project / "outbox" / "new").glob("*.eml"))
    else:
        outcome = run("preview", "fete")
        files = [project / "preview" / "fete" / "email.eml"]
    assert outcome.exit_code == 0, outcome.stderr
    (parsed,) = read_back(*files)
    assert parsed["subject"] == EMOJI_TITLE
    assert parsed["listUnsubscribeUrl"] and parsed["listUnsubscribePost"] == "List-Unsubscribe=One-Click"
