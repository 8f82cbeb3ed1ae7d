"""Email rendering: MIME structure, headers, list headers, inlining, HTML design, safety.

Each test names the requirement id(s) of docs/requirements.md it covers.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html as html_escaping
import json
import re
import socket
from datetime import datetime
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import lxml.html
import pytest

from conftest import FIXED_NOW, seed_posts, write_post
from newsletter.config import load_config
from newsletter.content import read_post, read_posts
from newsletter.errors import ConfigError, HeaderInjection, IssueTooLarge, PostError, TemplateFailure
from newsletter.render import UNSUBSCRIBE_PLACEHOLDER, Recipient, render_issue
from newsletter.templates import PACKAGED_TEMPLATES, make_environment

ANN = Recipient(7, "ann@example.org", "https://claudesuper.example.org/unsubscribe/TOKEN7")
BOB = Recipient(8, "bob@example.net", "https://claudesuper.example.org/unsubscribe/TOKEN8")
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _issue(config, post=None):
    post = post or read_posts(config)[0]
    return render_issue(config, post, make_environment(config.templates_dir))


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def _message(issue, recipient=ANN):
    raw = issue.message_bytes(recipient, date=FIXED_NOW)
    return raw, _parse(raw)


def _parts(msg) -> tuple[str, str]:
    """Decoded text and HTML parts, transport CRLF line ends turned back into LF."""
    return tuple(msg.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


def _head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def _post(config, slug="zz-test", **fields):
    return read_post(write_post(config.content_dir, slug, **fields), config)


def _visible(fragment: str) -> str:
    """Text of an HTML string: tags stripped, entities unescaped."""
    return html_escaping.unescape(re.sub(r"<[^>]+>", "", fragment))


def _reload(project, old: str, new: str):
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_config(path)


def test_mime01_mime02_alternative_plain_first_html_last_utf8(config):
    raw, msg = _message(_issue(config))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_all("MIME-Version") == ["1.0"]
    assert [p.get_content_charset() for p in msg.iter_parts()] == ["utf-8", "utf-8"]
    assert raw.count(b'charset="utf-8"') == 2


def test_mime03_lines_at_most_998_octets_and_quoted_printable_demo(config):
    for post in read_posts(config):
        raw, msg = _message(_issue(config, post))
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998, post.slug
        assert max(len(line) for line in _head(raw).split(b"\r\n")) <= 78, post.slug
        assert [p["Content-Transfer-Encoding"] for p in msg.iter_parts()] == ["quoted-printable"] * 2


def test_mime03_single_5000_character_paragraph(config):
    words = "Une très longue phrase, sans retour à la ligne, avec des espaces\u00a0insécables ! "
    paragraph = (words * 80)[:4999] + "."  # exactly 5,000 characters, one paragraph
    post = _post(config, body=paragraph)
    raw, msg = _message(_issue(config, post))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert [p["Content-Transfer-Encoding"] for p in msg.iter_parts()] == ["quoted-printable"] * 2
    text, html = _parts(msg)
    assert paragraph in text and paragraph in html


def test_mime04_parse_and_reserialize_is_stable(config):
    raw, _ = _message(_issue(config))
    assert email.message_from_bytes(raw, policy=email.policy.SMTP).as_bytes() == raw
    assert _parse(raw).as_bytes(policy=email.policy.SMTP) == raw
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only (policy SMTP)


def test_mime05_law01_text_part_has_unsubscribe_url_and_postal_address(config):
    _, msg = _message(_issue(config))
    text, _ = _parts(msg)
    footer = text.rsplit("\n-- \n", 1)[1]
    assert ANN.unsubscribe_url in footer
    assert config.email.postal_address in footer
    assert UNSUBSCRIBE_PLACEHOLDER not in text


def test_hdr01_hdr06_single_instance_headers_one_recipient_no_cc_bcc(config):
    raw, msg = _message(_issue(config))
    for name in ("From", "Date", "Message-ID", "Subject", "To"):
        assert len(msg.get_all(name) or []) == 1, name
        assert len(re.findall(rb"(?im)^" + name.encode() + rb":", _head(raw))) == 1, name
    assert len(msg["From"].addresses) == 1
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.org"]
    assert msg.get_all("Cc") is None and msg.get_all("Bcc") is None
    assert not re.search(rb"(?im)^(cc|bcc):", _head(raw))


def test_hdr02_message_id_on_site_domain_distinct_per_recipient_and_stable(config):
    """Message-IDs are deterministic per (issue, recipient) on purpose: a send replayed after a
    crash reuses the same id, so receivers and the provider can drop the duplicate."""
    issue = _issue(config)
    ids = {r.subscriber_id: _message(issue, r)[1]["Message-ID"] for r in (ANN, BOB)}
    for value in ids.values():
        assert re.fullmatch(r"<[^@\s<>]+@claudesuper\.example\.org>", value)
    assert ids[7] != ids[8]
    later = issue.message_bytes(ANN, date=datetime(2027, 1, 1, tzinfo=ZoneInfo("UTC")))
    assert _parse(later)["Message-ID"] == ids[7]
    rerendered = _issue(config)  # same post, same content: same issue key
    assert _message(rerendered)[1]["Message-ID"] == ids[7]


def test_hdr03_date_parses_back(config):
    issue = _issue(config)
    _, msg = _message(issue)
    assert parsedate_to_datetime(str(msg["Date"])) == FIXED_NOW
    paris = datetime(2026, 7, 14, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    back = parsedate_to_datetime(str(_parse(issue.message_bytes(ANN, date=paris))["Date"]))
    assert back == paris and back.utcoffset() == paris.utcoffset()


def test_hdr04_demo_titles_round_trip(config):
    for post, (title, _) in zip(read_posts(config), seed_posts(), strict=False):
        raw, msg = _message(_issue(config, post))
        assert msg["Subject"] == post.title == title
        assert all(len(word) <= 75 for word in ENCODED_WORD.findall(_head(raw)))


@pytest.mark.parametrize("unit", ["🎉", "ÅÄÖ", "日本語", "Fête 🎉 ÅÄÖ 日本語 "])
def test_hdr04_synthetic_subjects_round_trip_with_short_encoded_words(config, unit):
    failures = []
    for length in (21, 27, 45, 60, 76, 101, 150, 200):
        title = (unit * 200)[:length].strip()
        assert 20 <= len(title) <= 200
        post = _post(config, title=json.dumps(title, ensure_ascii=False))
        assert post.title == title
        raw, msg = _message(_issue(config, post))
        words = ENCODED_WORD.findall(_head(raw))
        assert words, "a non-ASCII subject must be RFC 2047 encoded"
        if msg["Subject"] != title:
            failures.append(f"{length}: decoded {msg['Subject']!r}")
        too_long = [w for w in words if len(w) > 75]
        if too_long:
            failures.append(f"{length}: encoded-word of {len(too_long[0])} chars {too_long[0][:24]!r}…")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("escaped", "char"), [(r"\r\n", "\r\n"), (r"\n", "\n"), (r"\0", "\x00")])
def test_inj01_title_with_line_break_or_nul_is_refused(config, escaped, char):
    """Written in the YAML front matter (a double-quoted string with escapes), then given directly."""
    post, title = read_posts(config)[0], f"Hi{char}Bcc: x@evil.example"
    path = write_post(config.content_dir, "zz-inj", title=f'"Hi{escaped}Bcc: x@evil.example"')
    with pytest.raises((HeaderInjection, PostError)) as caught:
        read_post(path, config)
    assert "title" in caught.value.message and caught.value.where == str(path)
    with pytest.raises(HeaderInjection):
        _issue(config, dataclasses.replace(post, title=title))
    with pytest.raises(HeaderInjection):
        render_issue(config, post, make_environment(config.templates_dir), subject_prefix=title)


@pytest.mark.parametrize("escaped", [r"\u2028", r"\u2029", r"\x85"])
def test_inj01_unicode_line_separators_are_refused_at_our_boundary(config, escaped):
    """Python's email package treats U+2028/U+2029/U+0085 as line breaks (str.splitlines) and
    raises a bare ValueError when the Subject is set; we must refuse them with a typed error
    when the post is read or rendered, not crash per recipient at send time."""
    path = write_post(config.content_dir, "zz-sep", title=f'"Hi{escaped}Bcc: x@evil.example"')
    with pytest.raises((HeaderInjection, PostError)):
        _issue(config, read_post(path, config))


def test_inj01_no_bcc_header_ever_and_recipient_values_checked(config):
    post = _post(config, title='"Hi Bcc: x@evil.example"')
    issue = _issue(config, post)
    raw, msg = _message(issue)
    assert msg["Subject"] == "Hi Bcc: x@evil.example"
    assert msg.get_all("Bcc") is None and not re.search(rb"(?im)^bcc:", _head(raw))
    with pytest.raises(HeaderInjection):
        issue.message_bytes(Recipient(1, "ann@example.org\r\nBcc: x@evil.example", ANN.unsubscribe_url), date=FIXED_NOW)
    with pytest.raises(HeaderInjection):
        issue.message_bytes(Recipient(1, "ann@example.org", ANN.unsubscribe_url + "\nBcc: x@evil"), date=FIXED_NOW)


@pytest.mark.parametrize(
    "name", ['Claude "CS" Super', "Super, Claude", "claude@example.org", "Claude <Super>", 'A, "B" <c@d>']
)
def test_inj03_display_name_with_specials_is_a_quoted_phrase(project, name):
    config = _reload(project, 'from_name = "Claude Super"', f"from_name = {json.dumps(name)}")
    raw, msg = _message(_issue(config))
    (from_line,) = [line[6:] for line in _head(raw).split(b"\r\n") if line.startswith(b"From: ")]
    assert from_line.startswith(b'"') and from_line.endswith(b'" <lettre@claudesuper.example.org>')
    (address,) = msg["From"].addresses
    assert address.display_name == name and address.addr_spec == "lettre@claudesuper.example.org"


def test_list01_list02_list05_list_unsubscribe_is_each_recipients_https_uri_with_one_click(config):
    issue = _issue(config)
    _, msg = _message(issue)
    value = msg["List-Unsubscribe"]
    assert re.fullmatch(r"<https://[^<>\s,]+>(, <mailto:[^<>\s,]+>)*", value)
    assert value == f"<{ANN.unsubscribe_url}>"
    assert msg.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert _message(issue, BOB)[1]["List-Unsubscribe"] == f"<{BOB.unsubscribe_url}>"  # LIST-05: per recipient


def test_list01_mailto_comes_after_the_https_uri(project):
    config = _reload(
        project, 'unsubscribe_url = "', 'unsubscribe_mailto = "stop@claudesuper.example.org"\nunsubscribe_url = "'
    )
    _, msg = _message(_issue(config))
    uris = re.findall(r"<([^<>]+)>", msg["List-Unsubscribe"])
    assert uris == [ANN.unsubscribe_url, "mailto:stop@claudesuper.example.org?subject=unsubscribe"]


def test_list06_list_id(config):
    _, msg = _message(_issue(config))
    assert msg.get_all("List-Id") == [f"{config.site.title} <{config.email.list_id}>"]
    assert re.fullmatch(r"[^<>]+ <lettre\.claudesuper\.example\.org>", msg["List-Id"])


def test_list06_site_title_with_specials_is_quoted_in_list_id(project):
    """RFC 2919: the List-Id phrase is an RFC 5322 phrase, so "<", '"', "," and ":" in the site
    title must sit in a quoted-string or an encoded-word; only the list id is bracketed."""
    config = _reload(project, 'title = "Le blog de Claude Super"', 'title = "Le \\"blog\\" <de> Claude, n°2: retour"')
    raw, msg = _message(_issue(config))
    value = re.search(rb"(?ms)^List-Id: (.*?)\r\n(?! )", _head(raw) + b"\r\n").group(1).decode().replace("\r\n", "")
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|=\?[^?]+\?[bBqQ]\?[^?]*\?=', "", value)
    assert re.fullmatch(r'[^<>",:;@\\]*<lettre\.claudesuper\.example\.org>', bare), value
    assert "blog" in msg["List-Id"] and "Claude" in msg["List-Id"]


def test_list07_inl08_law01_visible_unsubscribe_link_and_postal_address_in_footer(config):
    _, msg = _message(_issue(config))
    text, html = _parts(msg)
    assert UNSUBSCRIBE_PLACEHOLDER not in html and UNSUBSCRIBE_PLACEHOLDER not in text
    doc = lxml.html.document_fromstring(html)
    (footer,) = doc.xpath('//td[contains(concat(" ", @class, " "), " footer ")]')
    assert config.email.postal_address in footer.text_content()
    (link,) = [a for a in footer.iter("a") if a.get("href") == ANN.unsubscribe_url]
    assert link.text_content().strip() == "Se désabonner"
    for element in [link, *link.iterancestors()]:
        assert "display:none" not in (element.get("style") or "").replace(" ", "")


def test_inl08_personal_html_escapes_ampersand_once(config):
    issue = _issue(config)
    url = "https://claudesuper.example.org/unsubscribe/?t=TOKEN7&list=lettre"
    personal = issue.personal_html(Recipient(7, "ann@example.org", url))
    assert 'href="https://claudesuper.example.org/unsubscribe/?t=TOKEN7&amp;list=lettre"' in personal
    assert UNSUBSCRIBE_PLACEHOLDER not in personal
    assert url in [a.get("href") for a in lxml.html.document_fromstring(personal).iter("a")]
    assert url in issue.personal_text(Recipient(7, "ann@example.org", url))


def _long_post(config, paragraphs: int):
    line = "Le commerce de détail doit réussir l’expérience en ligne à moindre coût. "
    return _post(config, "zz-long", body="\n\n".join(f"{i} {line}" for i in range(paragraphs)))


def test_size01_demo_issues_below_100_kb_without_warning(config):
    for post in read_posts(config):
        issue = _issue(config, post)
        assert issue.html_bytes < 100_000 and issue.warnings == ()
        assert len(issue.personal_html(ANN).encode("utf-8")) < 100_000


def test_size02_warning_between_90_and_102_kb_after_inlining(config):
    issue = _issue(config, _long_post(config, 800))
    assert 90_000 < issue.html_bytes < 102_000
    assert len(issue.post.html.encode("utf-8")) < 90_000  # only inlining pushes it over
    assert len(issue.warnings) == 1 and "KB" in issue.warnings[0]


def test_size01_over_102_kb_is_refused(config):
    post = _long_post(config, 1000)
    with pytest.raises(IssueTooLarge) as caught:
        _issue(config, post)
    assert caught.value.where == str(post.source) and caught.value.hint


def _doc(config, post=None):
    _, msg = _message(_issue(config, post))
    return lxml.html.document_fromstring(_parts(msg)[1])


def _media_blocks(css: str) -> dict[str, str]:
    """{query: rules} for each @media block (rules nest one level deep)."""
    return {q.strip(): body for q, body in re.findall(r"@media([^{]*)\{((?:[^{}]*\{[^{}]*\})*)\s*\}", css)}


def test_inl01_eml04_media_queries_kept_with_important(config):
    doc = _doc(config)
    css = "\n".join(style.text or "" for style in doc.iter("style"))
    blocks = _media_blocks(css)
    for wanted in ("max-width", "prefers-color-scheme: dark"):
        (body,) = [b for query, b in blocks.items() if wanted in query]
        declarations = [d.strip() for rule in re.findall(r"\{([^{}]*)\}", body) for d in rule.split(";") if d.strip()]
        assert declarations and all(d.endswith("!important") for d in declarations), declarations
    metas = {m.get("name"): m.get("content") for m in doc.iter("meta")}
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
    assert re.search(r":root\s*\{\s*color-scheme:\s*light dark", css)


def _block_network(monkeypatch) -> list:
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_inl06_sec13_renders_with_network_blocked(config, monkeypatch):
    attempts = _block_network(monkeypatch)
    for post in read_posts(config):
        _message(_issue(config, post))
    assert attempts == []


def test_inl06_sec13_project_template_css_never_fetched(project, config, monkeypatch, tmp_path):
    """A project template may carry a <link> or an @import (e.g. a web font); neither may be fetched."""
    css_url = f"https://fonts.example.net/{tmp_path.name}.css"  # unique: premailer caches parsed CSS
    source = (PACKAGED_TEMPLATES / "email" / "issue.html").read_text(encoding="utf-8")
    override = source.replace(
        "<style>", f'<link rel="stylesheet" href="{css_url}">\n<style>\n@import url("{css_url}");', 1
    )
    (project / "templates" / "email").mkdir(parents=True)
    (project / "templates" / "email" / "issue.html").write_text(override, encoding="utf-8")
    attempts = _block_network(monkeypatch)
    _message(_issue(config))
    assert attempts == []


def test_inl09_copyright_and_nbsp_survive_as_utf8(config):
    post = _post(config, body="&copy; 2024 Claude&nbsp;Super, © et\u00a0:")
    raw, msg = _message(_issue(config, post))
    text, html = _parts(msg)
    assert "© 2024 Claude\u00a0Super, © et\u00a0:" in html
    assert "© 2024 Claude\u00a0Super, © et\u00a0:" in text
    assert "&copy;" not in html and "&#169;" not in html and "&nbsp;" not in html
    assert b"=C2=A9" in raw and b"=C2=A0" in raw


def test_eml01_container_table_width_600_no_flex_or_grid(config):
    doc = _doc(config)
    (container,) = doc.xpath('//table[contains(concat(" ", @class, " "), " container ")]')
    assert container.get("width") == "600" and container.get("role") == "presentation"
    assert (container.get("cellpadding"), container.get("cellspacing"), container.get("border")) == ("0", "0", "0")
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert all(t.get("role") == "presentation" for t in doc.iter("table"))
    styles = " ".join([e.get("style") or "" for e in doc.iter()] + [s.text or "" for s in doc.iter("style")])
    assert not re.search(r"display\s*:\s*(inline-)?(flex|grid)|position\s*:|float\s*:", styles)


def test_eml03_preheader_first_in_body_holds_summary(config):
    post = read_posts(config)[0]
    body = _doc(config, post).body
    first = body[0]
    assert (body.text or "").strip() == ""
    assert first.tag == "div" and "preheader" in first.get("class")
    assert first.text_content() == post.summary
    assert "display:none" in first.get("style").replace(" ", "")
    override = _post(config, preheader='"Le numéro de mai, en bref"', body="Premier paragraphe.")
    assert _doc(config, override).body[0].text_content() == "Le numéro de mai, en bref"


def test_eml06_lang_charset_and_title_equal_subject(config):
    post = _post(config, title='"Café & <crème> « été »"')
    _, msg = _message(_issue(config, post))
    doc = lxml.html.document_fromstring(_parts(msg)[1])
    assert doc.get("lang") == "fr"
    assert [m.get("charset") for m in doc.iter("meta") if m.get("charset")] == ["utf-8"]
    assert doc.find("head/title").text == msg["Subject"] == "Café & <crème> « été »"


def test_eml07_sec01_active_content_removed_from_both_parts(config):
    body = """Avant <script>alert("s1")</script> après.\n\n<iframe src="https://evil.example/frame"></iframe>
<img src="https://img.example.org/a.png" onerror="alert('s2')" alt="image">\n
<a href="javascript:alert('s3')">lien</a> [clic](javascript:void(0))\n
<a href="data:text/html,<script>alert('s4')</script>">data</a> ![d](data:image/png;base64,AAAA)\n
<a href="https://ok.example/" onclick="alert('s5')">ok</a> <style>body { display: none }</style>"""
    _, msg = _message(_issue(config, _post(config, body=body)))
    text, html = _parts(msg)
    doc = lxml.html.document_fromstring(html)
    assert not doc.xpath("//script|//iframe|//embed|//object|//form")
    for element in doc.iter():
        assert not [name for name in element.attrib if name.lower().startswith("on")]
        for attribute in ("href", "src"):
            assert not (element.get(attribute) or "").strip().lower().startswith(("javascript:", "data:"))
    for part in (text, html):
        assert not re.search(r"alert\(.s[1-5]", part)
        assert "<script" not in part.lower() and "<iframe" not in part.lower()
        assert "data:text/html" not in part and "data:image" not in part
    assert "https://ok.example/" in text and "javascript:" not in text.split("Liens :")[-1]


def test_eml08_outlook_conditional_comments_byte_identical(config):
    template = (PACKAGED_TEMPLATES / "email" / "issue.html").read_text(encoding="utf-8")
    comments = re.findall(r"<!--\[if mso\]>.*?<!\[endif\]-->", template, re.S)
    assert len(comments) == 2
    issue = _issue(config)
    for comment in comments:
        assert issue.html.count(comment) == 1
        assert issue.personal_html(ANN).count(comment) == 1


def test_sec02_title_markup_is_escaped(config):
    post = _post(config, title='"<b>x</b>"')
    issue = _issue(config, post)
    _, msg = _message(issue)
    text, html = _parts(msg)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    doc = lxml.html.document_fromstring(html)
    assert doc.find("head/title").text == "<b>x</b>" and not doc.xpath("//b")
    assert text.startswith("<b>x</b>\n========\n")  # plain text: the title as typed, nothing rendered


def test_sec02_sec04_template_syntax_in_posts_is_printed_literally(config):
    body = "Calcul {{ 7*7 }} et {% if true %}oui{% endif %} {# note #}"
    post = _post(config, title='"Titre {{ 7*7 }}"', body=body)
    _, msg = _message(_issue(config, post))
    text, html = _parts(msg)
    for part in (text, html):
        assert body in _visible(part) and "Titre {{ 7*7 }}" in _visible(part)
        assert "Calcul 49" not in part and "Titre 49" not in part
    assert msg["Subject"] == "Titre {{ 7*7 }}"
    assert not re.search(r"</?[a-zA-Z][^>]*>", text)  # SEC-04: no HTML in the text part


def test_every_seed_line_survives_in_both_parts(config):
    posts = read_posts(config)
    seeds = seed_posts()
    assert any("\u00a0" in line for line in seeds[0][1])  # the check covers no-break spaces
    for post, (title, lines) in zip(posts, seeds, strict=False):
        _, msg = _message(_issue(config, post))
        text, html = _parts(msg)
        assert msg["Subject"] == title
        visible = _visible(html)
        assert [line for line in lines if line not in visible] == [], post.slug
        assert [line for line in lines if line not in text] == [], post.slug


# ---------------------------------------------------------------- raw structured headers (issue 9 item 1)

# RFC 2369 §2 with RFC 3986 URIs: "<URI>" items separated by "," and optional folding white space.
_URI = rb"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+;=%]+"
RFC2369_VALUE = re.compile(rb"<" + _URI + rb">(?:,(?:\r\n)?[ \t]+<" + _URI + rb">)*")
LONG_BASE = "https://claudesuper.example.org/" + "d" * 75 + "/unsubscribe/"


def _raw_header(raw: bytes, name: bytes) -> bytes:
    """The value of header ``name`` exactly as written: folding kept, nothing decoded."""
    (value,) = re.findall(rb"(?m)^" + name + rb": (.*(?:\r\n[ \t].*)*)\r\n", _head(raw) + b"\r\n")
    return value


def _signed_recipient(config, subscriber_id=1503, email="ann@example.org"):
    from newsletter.recipients import recipient_for

    return recipient_for(config, config.token_keys(), subscriber_id, email, FIXED_NOW)


@pytest.mark.parametrize("mailto", [False, True])
def test_list01_raw_list_unsubscribe_matches_rfc_2369_with_a_120_character_base(project, mailto):
    assert len(LONG_BASE) == 120
    text = f'unsubscribe_url = "{LONG_BASE}"'
    if mailto:
        text = 'unsubscribe_mailto = "stop@claudesuper.example.org"\n' + text
    config = _reload(project, 'unsubscribe_url = "https://claudesuper.example.org/unsubscribe/"', text)
    recipient = _signed_recipient(config)
    raw, msg = _message(_issue(config), recipient)
    value = _raw_header(raw, b"List-Unsubscribe")
    assert RFC2369_VALUE.fullmatch(value), value
    assert b"=?" not in _head(raw).split(b"\nSubject:")[0] + value  # never an encoded-word
    lines = value.split(b"\r\n")
    assert lines[0] == f"<{recipient.unsubscribe_url}>".encode() + (b"," if mailto else b"")  # the URL on one line
    assert len(lines) == (2 if mailto else 1)  # folded only after the comma, between two items
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert _raw_header(raw, b"List-Unsubscribe-Post") == b"List-Unsubscribe=One-Click"
    assert re.fullmatch(rb"<[0-9a-f]{20}\.1503@claudesuper\.example\.org>", _raw_header(raw, b"Message-ID"))
    assert _raw_header(raw, b"List-Id").endswith(b"<lettre.claudesuper.example.org>")
    assert msg["List-Unsubscribe"].startswith(f"<{recipient.unsubscribe_url}>")  # and Python reads it too


def test_list01_compact_token_keeps_the_demo_url_on_one_short_line(config):
    raw, _ = _message(_issue(config), _signed_recipient(config, subscriber_id=1_000_000))
    line = b"List-Unsubscribe: " + _raw_header(raw, b"List-Unsubscribe")
    assert len(line) <= 120 and b"\r\n" not in line


def test_list01_unsubscribe_url_too_long_for_a_header_line_is_refused_at_render(project):
    config = _reload(
        project, 'unsubscribe_url = "https://claudesuper.example.org/unsubscribe/"',
        f'unsubscribe_url = "https://claudesuper.example.org/{"l" * 960}/"',
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        _issue(config)
    assert caught.value.where == "newsletter.toml: email.unsubscribe_url" and "header line" in caught.value.message


def test_list01_non_ascii_and_commas_in_the_base_url_are_percent_encoded_in_the_header(project):
    config = _reload(
        project, 'unsubscribe_url = "https://claudesuper.example.org/unsubscribe/"',
        'unsubscribe_url = "https://claudesuper.example.org/désabonnement,lettre/"',
    )  # fmt: skip
    raw, _ = _message(_issue(config), _signed_recipient(config))
    value = _raw_header(raw, b"List-Unsubscribe")
    assert RFC2369_VALUE.fullmatch(value) and b"/d%C3%A9sabonnement%2Clettre/" in value


# ---------------------------------------------------------------- footer check and placeholder (issue 10 item 4)


def _override(project, name: str, text: str):
    folder = project / "templates" / "email"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_list07_a_post_linking_to_a_placeholder_like_url_never_receives_the_signed_url(config):
    previous = _issue(config)
    guesses = ["NEWSLETTER-UNSUBSCRIBE-URL-5b0e2c", previous.placeholder, UNSUBSCRIBE_PLACEHOLDER + "0" * 32]
    links = (f'Lien [piège {i}](https://evil.example/?{g}) et <a href="{g}">brut</a>.' for i, g in enumerate(guesses))
    body = "\n\n".join(links)
    issue = _issue(config, _post(config, body=body))
    assert issue.placeholder != previous.placeholder  # a fresh secret marker per rendering
    assert re.fullmatch(UNSUBSCRIBE_PLACEHOLDER + "[0-9a-f]{32}", issue.placeholder)
    recipient = _signed_recipient(config)
    _, msg = _message(issue, recipient)
    text, html = _parts(msg)
    doc = lxml.html.document_fromstring(html)
    evil = [a.get("href") for a in doc.iter("a") if "evil.example" in a.get("href", "") or a.text == "brut"]
    assert len(evil) == 6 and not [h for h in evil if recipient.unsubscribe_url in h]
    assert [a.get("href") for a in doc.iter("a")].count(recipient.unsubscribe_url) == 1  # the footer's, only
    assert html.count(recipient.unsubscribe_url) == 1 and text.count(recipient.unsubscribe_url) == 1
    for guess in guesses:
        assert f"https://evil.example/?{guess}" in text


def test_list07_a_post_holding_the_current_marker_is_refused_not_substituted(config, monkeypatch):
    """Should the secret marker ever be guessed, the post's copy makes the count differ: refused."""
    from newsletter import render as render_module

    monkeypatch.setattr(render_module.secrets, "token_hex", lambda n: "ab" * n)
    marker = UNSUBSCRIBE_PLACEHOLDER + "ab" * 16
    for body in (f"[clic](https://evil.example/?{marker})", f"Texte {marker} visible."):
        with pytest.raises(TemplateFailure) as caught:
            _issue(config, _post(config, body=body))
        assert caught.value.where.endswith("email/issue.html") and "unsubscribe URLs" in caught.value.message


@pytest.mark.parametrize(
    ("name", "old", "new", "problem"),
    [
        ("issue.html", '<a href="{{ unsubscribe_url }}">{{ labels.unsubscribe }}</a>', "", "has no unsubscribe link"),
        ("issue.html", '<a href="{{ unsubscribe_url }}">',
         '<a href="https://claudesuper.example.org/">{{ unsubscribe_url }}', "has no unsubscribe link"),
        ("issue.html", "<p>{{ postal_address }}</p>", "", "does not show the postal address"),
        ("issue.html", "<p>{{ postal_address }}</p>", "<!-- {{ postal_address }} -->",
         "does not show the postal address"),
        ("issue.txt", "{{ unsubscribe_url }}", "", "has no unsubscribe URL"),
        ("issue.txt", "{{ postal_address }}", "", "does not show the postal address"),
    ],
)  # fmt: skip
def test_law01_list07_a_template_without_unsubscribe_link_or_postal_address_is_refused(
    project, config, name, old, new, problem
):
    source = (PACKAGED_TEMPLATES / "email" / name).read_text(encoding="utf-8")
    assert old in source
    path = _override(project, name, source.replace(old, new))
    with pytest.raises(TemplateFailure) as caught:
        _issue(config)
    assert caught.value.where == str(path) and caught.value.message == problem
    assert "\n" not in caught.value.one_line()


def test_list07_two_unsubscribe_links_in_the_template_are_two_in_the_email(project, config):
    source = (PACKAGED_TEMPLATES / "email" / "issue.html").read_text(encoding="utf-8")
    top = '<td class="topbar"><a href="{{ unsubscribe_url }}">{{ labels.unsubscribe }}</a> · '
    _override(project, "issue.html", source.replace('<td class="topbar">', top, 1))
    recipient = _signed_recipient(config)
    _, msg = _message(_issue(config), recipient)
    hrefs = [a.get("href") for a in lxml.html.document_fromstring(_parts(msg)[1]).iter("a")]
    assert hrefs.count(recipient.unsubscribe_url) == 2


def test_footer_lost_by_the_inliner_is_refused(config):
    """Issue 10 item 4 (b)'s symptom: an inliner that cuts the document loses the footer."""
    from newsletter import render as render_module

    class Truncating:
        def transform(self, html, pretty_print=False):
            return html[: html.index('<td class="footer">')]

    post = read_posts(config)[0]
    with pytest.raises(TemplateFailure) as caught:
        render_module.render_issue(config, post, make_environment(config.templates_dir), inliner=Truncating())
    assert "0 unsubscribe URLs" in caught.value.message and post.source.name in caught.value.message
