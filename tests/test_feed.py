"""The Atom feed against the checklist (ATOM-xx and FG-xx in docs/requirements.md).

Most tests build the demo project through the real CLI (``run("build")``) and read
``public/feed.xml`` back with a strict lxml parser and with feedparser.
"""

from __future__ import annotations

import html
import re
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.html
import pytest
import yaml
from lxml import etree

from conftest import FIXED_NOW, REPO, seed_posts, write_post
from newsletter.content import published, read_posts
from newsletter.feed import build_feed

ATOM = "http://www.w3.org/2005/Atom"
A = f"{{{ATOM}}}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ID_PATTERN = re.compile(r"^(tag:|https?:|urn:uuid:)")
UUID_HINT = re.compile(r"urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def strict_parse(document: bytes) -> etree._Element:
    return etree.fromstring(document, etree.XMLParser(recover=False, resolve_entities=False))


def entries(root) -> list:
    return root.findall(f"{A}entry")


def content_elements(html_text: str) -> list:
    """Every element of an HTML fragment (the wrapper div left out)."""
    return list(lxml.html.fragment_fromstring(html_text, create_parent="div").iter())[1:]


def visible_text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def front_matter(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n", 2)[1])


def posts_dir(project: Path) -> Path:
    return project / "content" / "posts"


def set_site_value(project: Path, key: str, toml_value: str) -> None:
    """Replace the first ``key = ...`` line of newsletter.toml (the [site] one)."""
    path = project / "newsletter.toml"
    text, count = re.subn(rf"(?m)^{key} = .*$", lambda _: f"{key} = {toml_value}", path.read_text("utf-8"), count=1)
    assert count == 1
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def build(project, run):
    """Build through the CLI and return the bytes of feed.xml."""

    def _build(**kwargs) -> bytes:
        outcome = run("build", **kwargs)
        assert outcome.exit_code == 0, outcome.stderr
        return (project / "public" / "feed.xml").read_bytes()

    return _build


@pytest.fixture
def build_error(run):
    """Build, expect a user error: exit 1 and exactly one line on stderr, no traceback."""

    def _build_error() -> str:
        outcome = run("build")
        assert outcome.exit_code == 1, outcome.stdout
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
        assert "Traceback" not in outcome.stderr + outcome.stdout
        return lines[0]

    return _build_error


@pytest.fixture
def feed(build):
    return strict_parse(build())


def test_feedparser_reads_five_entries_newest_first_with_seed_titles_ids_and_absolute_links(build, project, config):
    """The issue's done criteria (bozo False, ATOM-12 order, ids from front matter, ATOM-27 links)."""
    parsed = feedparser.parse(build())
    assert parsed.bozo is False, parsed.get("bozo_exception")
    assert len(parsed.entries) == 5
    metas = [front_matter(p) for p in [*posts_dir(project).glob("*.md"), *posts_dir(project).glob("*/index.md")]]
    metas.sort(key=lambda m: datetime.fromisoformat(m["date"]), reverse=True)
    assert [e.id for e in parsed.entries] == [m["id"] for m in metas]
    assert [e.title for e in parsed.entries] == [title for title, _ in seed_posts()]
    for entry, meta in zip(parsed.entries, metas, strict=False):
        assert entry.link == f"{config.site.base_url}{meta['slug']}/"
        parts = urlsplit(entry.link)
        assert parts.scheme == "https" and parts.netloc == "claudesuper.example.org"
    published_times = [datetime.fromisoformat(e.published) for e in parsed.entries]
    assert published_times == sorted(published_times, reverse=True)


def test_every_seed_line_survives_feedparser_with_no_break_spaces(build):
    """French text intact after feedparser's sanitizer, U+00A0 included (ATOM-22 content round-trip)."""
    parsed = feedparser.parse(build())
    seed = seed_posts()
    assert any("\u00a0" in line for _, lines in seed for line in lines)  # the check below covers U+00A0
    for entry, (title, lines) in zip(parsed.entries, seed, strict=False):
        assert entry.title == title
        text = visible_text(entry.content[0].value)
        missing = [line for line in lines if line.strip() not in text]
        assert not missing, f"{title} lost: {missing[:3]}"


def test_two_builds_are_byte_identical_whatever_the_clock_ATOM_20_FG_06_HTTP_03(build):
    first = build()
    assert build() == first
    assert build(now=datetime(2030, 1, 1, 3, 4, 5, tzinfo=UTC)) == first
    text = first.decode("utf-8")
    for day in (FIXED_NOW, datetime.now(UTC)):  # no build time leaks into the feed
        assert day.date().isoformat() not in text
    root = strict_parse(first)
    newest = max(datetime.fromisoformat(e.findtext(f"{A}updated")) for e in entries(root))
    assert datetime.fromisoformat(root.findtext(f"{A}updated")) == newest  # ATOM-20


def test_well_formed_utf8_with_declaration_and_atom_root_ATOM_01(build):
    document = build()
    assert re.match(rb"""<\?xml version=["']1\.0["'] encoding=["']UTF-8["']\?>\n""", document)
    document.decode("utf-8")
    assert strict_parse(document).tag == f"{A}feed"


def test_feed_has_one_id_title_updated_ATOM_02(feed):
    for name in ("id", "title", "updated"):
        assert len(feed.findall(f"{A}{name}")) == 1, name
        assert feed.findtext(f"{A}{name}").strip()


def test_feed_author_has_one_name_and_is_required_ATOM_03(feed, project, build_error):
    assert feed.findall(f"{A}author")
    for author in feed.findall(f"{A}author"):
        assert [name.text for name in author.findall(f"{A}name")] == ["Claude Super"]
    path = project / "newsletter.toml"
    path.write_text(re.sub(r"(?m)^author = .*\n", "", path.read_text("utf-8"), count=1), encoding="utf-8")
    assert "site.author" in build_error()


def test_self_link_is_the_configured_https_feed_url_ATOM_04(feed, config):
    selves = [link for link in feed.findall(f"{A}link") if link.get("rel") == "self"]
    assert len(selves) == 1
    assert selves[0].get("href") == config.site.feed_url == "https://claudesuper.example.org/feed.xml"
    assert selves[0].get("type") == "application/atom+xml"


def test_one_alternate_per_type_and_hreflang_home_page_ATOM_05(feed, config):
    for parent in [feed, *entries(feed)]:
        links = [link for link in parent.findall(f"{A}link") if link.get("rel", "alternate") == "alternate"]
        groups = Counter((link.get("type"), link.get("hreflang")) for link in links)
        assert groups and max(groups.values()) == 1, groups
    home = [link for link in feed.findall(f"{A}link") if link.get("rel") == "alternate"]
    assert [(link.get("href"), link.get("type")) for link in home] == [(config.site.base_url, "text/html")]


def test_every_link_has_an_explicit_rel_despite_feedgen_bug_ATOM_06_FG_02(feed):
    assert all(link.get("rel") for link in feed.iter(f"{A}link"))
    for entry in entries(feed):
        assert [link.get("rel") for link in entry.findall(f"{A}link")] == ["alternate"]


def test_each_entry_has_one_id_nonempty_title_updated_content_and_alternate_ATOM_08_ATOM_09(feed, config):
    assert len(entries(feed)) == 5
    for entry in entries(feed):
        for name in ("id", "title", "updated", "content"):
            assert len(entry.findall(f"{A}{name}")) == 1, name
        assert entry.findtext(f"{A}title").strip()
        assert entry.findtext(f"{A}content").strip()
        (alternate,) = [link for link in entry.findall(f"{A}link") if link.get("rel") == "alternate"]
        assert alternate.get("href").startswith(config.site.base_url)
        assert alternate.get("type") == "text/html"


def test_published_and_updated_come_from_front_matter_ATOM_10(build, project):
    path = posts_dir(project) / "social-business-parcours-singulier.md"
    meta = front_matter(path)

    def entry_of(document: bytes):
        return next(e for e in entries(strict_parse(document)) if e.findtext(f"{A}id") == meta["id"])

    before = entry_of(build())
    assert before.findtext(f"{A}published") == before.findtext(f"{A}updated") == meta["date"]
    # A typo fix in the body, front matter untouched: same updated, new content.
    text = path.read_text("utf-8")
    path.write_text(text.replace("Pour en parler", "Pour en discuter"), encoding="utf-8")
    typo = entry_of(build())
    assert "Pour en discuter" in typo.findtext(f"{A}content")
    assert typo.findtext(f"{A}updated") == meta["date"]
    # A significant edit: the author sets `updated`, and only updated moves.
    new_date = "2013-04-02T08:15:00+02:00"
    dated = f'date: "{meta["date"]}"\n'
    path.write_text(text.replace(dated, f'{dated}updated: "{new_date}"\n'), encoding="utf-8")
    document = build()
    edited = entry_of(document)
    assert edited.findtext(f"{A}updated") == new_date
    assert edited.findtext(f"{A}published") == meta["date"]
    assert strict_parse(document).findtext(f"{A}updated") == new_date  # ATOM-20


def test_demo_entries_have_distinct_timestamps_ATOM_11(feed):
    for name in ("updated", "published"):
        stamps = [e.findtext(f"{A}{name}") for e in entries(feed)]
        assert len(set(stamps)) == len(stamps) == 5
        assert not any(s[11:19] == "00:00:00" for s in stamps)


def test_entries_newest_first_and_a_new_post_comes_first_ATOM_12_FG_07(build, project):
    root = strict_parse(build())
    for name in ("published", "updated"):
        stamps = [datetime.fromisoformat(e.findtext(f"{A}{name}")) for e in entries(root)]
        assert stamps == sorted(stamps, reverse=True), name
    write_post(posts_dir(project), "tout-neuf", id='"urn:uuid:0b9a1a52-6a1c-4c1e-9d0e-2f1a7a3c5e01"')
    older = write_post(posts_dir(project), "tres-ancien", id='"urn:uuid:0b9a1a52-6a1c-4c1e-9d0e-2f1a7a3c5e02"')
    older.write_text(older.read_text("utf-8").replace("2024-05-01", "2001-01-01"), encoding="utf-8")
    ids = [e.findtext(f"{A}id") for e in entries(strict_parse(build()))]
    assert ids[0].endswith("5e01") and ids[-1].endswith("5e02") and len(ids) == 7


def test_summary_is_present_and_plain_text_ATOM_13(build, project):
    body = "Un **gras** et [un lien](https://example.org/) <em>ici</em>.\n\nSuite."
    write_post(posts_dir(project), "sans-resume", body=body, id='"urn:uuid:0b9a1a52-6a1c-4c1e-9d0e-2f1a7a3c5e03"')
    root = strict_parse(build())
    assert len(entries(root)) == 6
    for entry in entries(root):
        (summary,) = entry.findall(f"{A}summary")
        assert summary.get("type", "text") == "text"
        assert summary.text.strip() and not re.search(r"</?[a-zA-Z]|\*\*|&[a-z]+;", summary.text)
    generated = entries(root)[0].findtext(f"{A}summary")
    assert generated.startswith("Un gras et un lien") and "ici" in generated


def test_feed_and_entry_ids_are_absolute_iris_ATOM_14(feed, project, build_error):
    ids = [feed.findtext(f"{A}id")] + [e.findtext(f"{A}id") for e in entries(feed)]
    for value in ids:
        assert urlsplit(value).scheme and ID_PATTERN.match(value), value
    write_post(posts_dir(project), "relatif", id='"/posts/relatif"')
    assert "'id'" in build_error()


def test_ids_survive_a_domain_move_and_a_title_change_ATOM_15(build, project):
    def ids_and_links(document: bytes):
        root = strict_parse(document)
        ids = [root.findtext(f"{A}id")] + sorted(e.findtext(f"{A}id") for e in entries(root))
        return ids, sorted(e.find(f"{A}link").get("href") for e in entries(root))

    ids_before, links_before = ids_and_links(build())
    set_site_value(project, "base_url", '"http://Nouveau.Example.NET:8443/blog"')
    path = posts_dir(project) / "social-ou-digital-business.md"
    path.write_text(re.sub(r"(?m)^title: .*$", 'title: "Un tout autre titre"', path.read_text("utf-8")), "utf-8")
    document = build()
    assert "Un tout autre titre" in document.decode("utf-8")
    ids_after, links_after = ids_and_links(document)
    assert all(link.startswith("http://nouveau.example.net:8443/blog/") for link in links_after)
    self_link = next(link for link in strict_parse(document).findall(f"{A}link") if link.get("rel") == "self")
    assert self_link.get("href") == "http://nouveau.example.net:8443/blog/feed.xml"  # ATOM-04 follows the config
    assert ids_after == ids_before and links_after != links_before


def test_post_without_id_fails_with_a_freshly_minted_uuid_hint_ATOM_15(project, build_error):
    write_post(posts_dir(project), "sans-id", id=None)
    first, second = build_error(), build_error()
    assert "sans-id.md" in first and "'id'" in first
    minted = [UUID_HINT.search(line).group(1) for line in (first, second)]
    assert all(uuid.UUID(value).version == 4 for value in minted)
    assert minted[0] != minted[1]
    assert not (project / "public" / "feed.xml").exists()


def test_ids_are_unique_and_a_duplicate_id_is_a_build_error_ATOM_16(feed, project, build_error):
    ids = [e.findtext(f"{A}id") for e in entries(feed)]
    assert len(set(ids)) == len(ids) == 5
    taken = front_matter(posts_dir(project) / "e20-petite-entreprise.md")["id"]
    write_post(posts_dir(project), "doublon", id=f'"{taken}"')
    message = build_error()
    assert "doublon.md" in message and taken in message and "id" in message


def test_every_date_is_rfc3339_ATOM_19(feed):
    stamps = [el.text for el in feed.iter(f"{A}updated", f"{A}published")]
    assert len(stamps) == 1 + 2 * 5
    assert all(RFC3339.match(s) for s in stamps), stamps


def test_offset_with_seconds_is_refused_or_written_as_rfc3339_ATOM_19(project, run):
    """RFC 3339 offsets are hours:minutes; Python accepts and prints +05:30:15."""
    write_post(posts_dir(project), "decalage", date='"2024-05-01T10:00:00+05:30:15"')
    outcome = run("build")
    if outcome.exit_code == 0:
        root = strict_parse((project / "public" / "feed.xml").read_bytes())
        stamps = [el.text for el in root.iter(f"{A}updated", f"{A}published")]
        assert all(RFC3339.match(s) for s in stamps), stamps
    else:
        assert outcome.exit_code == 1 and "decalage.md" in outcome.stderr and "'date'" in outcome.stderr


@pytest.mark.parametrize("field", ["date", "updated"])
def test_naive_date_takes_the_site_zone_with_a_warning_ATOM_21_FG_05(project, run, field):
    write_post(posts_dir(project), "naif", **{field: '"2024-05-02T10:00:00"'})
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    warning = outcome.stderr.strip()
    assert warning.startswith("Warning: ") and "\n" not in warning
    assert "naif.md" in warning and f"'{field}'" in warning and "site.timezone" in warning
    # Europe/Paris in May: +02:00, in the feed as in the warning (never read as UTC).
    feed = feedparser.parse((project / "public" / "feed.xml").read_bytes())
    entry = next(e for e in feed.entries if "naif" in e.link)
    stamp = entry.published if field == "date" else entry.updated
    assert stamp == "2024-05-02T10:00:00+02:00" and stamp in warning


def test_build_feed_refuses_a_naive_datetime_FG_05(config):
    posts = published(read_posts(config), FIXED_NOW)
    post = posts[0]
    naive = replace(post, date=post.date.replace(tzinfo=None), updated=post.updated.replace(tzinfo=None))
    with pytest.raises(ValueError):
        build_feed(config, [naive])


def test_content_is_html_escaped_exactly_once_ATOM_22(build):
    document = build()
    assert b"&lt;p&gt;" in document and b"&amp;lt;" not in document
    for entry in entries(strict_parse(document)):
        content = entry.find(f"{A}content")
        assert content.get("type") == "html" and len(content) == 0  # no child elements
        assert "<p>" in content.text and "&lt;p&gt;" not in content.text
        assert any(el.tag == "p" for el in content_elements(content.text))


def test_br_and_nbsp_build_as_html_content_ATOM_23(build, project):
    write_post(posts_dir(project), "sauts", body="Ligne<br>suivante&nbsp;: fin.")
    document = build()
    assert feedparser.parse(document).bozo is False
    content = entries(strict_parse(document))[0].find(f"{A}content")
    assert content.get("type") == "html"
    assert "<br>" in content.text and "suivante\u00a0: fin" in content.text


def test_text_construct_types_are_valid_mime_names_ATOM_24(feed):
    for element in feed.iter(f"{A}content", f"{A}summary", f"{A}title", f"{A}subtitle"):
        assert element.get("type", "text") in {"text", "html", "xhtml"}
    assert b"CDATA" not in etree.tostring(feed)


def test_title_with_markup_characters_round_trips_ATOM_25(build, project):
    title = 'AT&T <b> "quoted"'
    write_post(posts_dir(project), "att", title="'AT&T <b> \"quoted\"'")
    document = build()
    element = entries(strict_parse(document))[0].find(f"{A}title")
    assert element.text == title and element.get("type", "text") == "text"
    assert feedparser.parse(document).entries[0].title == title


def test_author_names_hold_no_email_address_ATOM_26(feed, project, build_error):
    assert all("@" not in name.text for name in feed.iter(f"{A}name"))
    write_post(posts_dir(project), "courriel", author='"claude@example.org"')
    assert "courriel.md" in (message := build_error()) and "'author'" in message
    set_site_value(project, "author", '"claude@claudesuper.example.org"')
    assert "site.author" in build_error()


def test_relative_urls_in_content_become_absolute_ATOM_27(build, project, config):
    body = "Voir [x](other/), [y](/racine), [z](mailto:a@example.org).\n\n![a](img/p.png)"
    write_post(posts_dir(project), "liens", body=body)
    root = strict_parse(build())
    elements = content_elements(entries(root)[0].findtext(f"{A}content"))
    hrefs = [el.get("href") for el in elements if el.tag == "a"]
    # Relative to the post's own page, as a browser resolves them; "/…" from the site root.
    page = config.site.post_url("liens")
    assert hrefs == [page + "other/", config.site.base_url + "racine", "mailto:a@example.org"]
    assert [el.get("src") for el in elements if el.tag == "img"] == [page + "img/p.png"]
    for entry in entries(root):
        for el in content_elements(entry.findtext(f"{A}content")):
            for attribute in ("href", "src", "srcset"):
                value = el.get(attribute)
                assert value is None or re.match(r"^(https?://|mailto:)", value), value
    assert all(link.get("href").startswith("https://") for link in root.iter(f"{A}link"))


def test_no_xml_base_anywhere_ATOM_28(feed):
    assert feed.xpath("//@xml:base") == []


def test_scripts_frames_handlers_and_javascript_urls_are_removed_ATOM_29(build, project):
    body = "\n".join([
        "Avant.", "", "<script>alert('s1')</script>", "",
        '<iframe src="https://evil.example/"></iframe><object data="x.swf"></object><embed src="y.swf">', "",
        '<form action="https://evil.example/"><input name="q"></form><meta http-equiv="refresh" content="0">', "",
        '<link rel="stylesheet" href="https://evil.example/x.css"><noscript>ns</noscript>', "",
        '<img src="p.png" onerror="alert(\'s2\')"> <p onclick="alert(\'s3\')">clic</p>', "",
        '[lien](javascript:alert(1)) <a href="JaVaScRiPt:alert(2)">a</a> <a href="java&#x09;script:alert(3)">b</a>',
    ])  # fmt: skip
    write_post(posts_dir(project), "hostile", body=body)
    text = entries(strict_parse(build()))[0].findtext(f"{A}content")
    elements = content_elements(text)
    forbidden = {"script", "embed", "object", "iframe", "frame", "frameset", "meta", "link", "noscript", "form"}
    assert {el.tag for el in elements} & (forbidden | {"input"}) == set()
    for el in elements:
        assert not [name for name in el.attrib if name.lower().startswith("on")], el.attrib
        assert not any(re.sub(r"\s", "", v).lower().startswith("javascript:") for v in el.attrib.values())
    assert "alert('s" not in text and "Avant." in text and "clic" in text


def test_no_style_attributes_in_feed_content_ATOM_30(build, project):
    write_post(posts_dir(project), "style", body='<p style="color:red;max-width:10px">rouge</p>')
    root = strict_parse(build())
    assert "rouge" in entries(root)[0].findtext(f"{A}content")
    for entry in entries(root):
        assert not [el for el in content_elements(entry.findtext(f"{A}content")) if el.get("style") is not None]


def test_xml_forbidden_characters_in_title_and_body_are_stripped_ATOM_31(build, project):
    title = '"A\\bB\\x01C\\x1fD\\eE\\uFFFEF\\uD800G"'  # YAML escapes (VT/FF in a title: refused, INJ-01)
    write_post(posts_dir(project), "controle", title=title, body="a\x08b\x0bc\x0cd\x1be\ufffef")
    document = build()
    entry = entries(strict_parse(document))[0]
    assert entry.findtext(f"{A}title") == "ABCDEFG"
    assert "<p>abcdef</p>" in entry.findtext(f"{A}content")
    assert feedparser.parse(document).bozo is False


@pytest.mark.parametrize("escape", ["\\r", "\\n", "\\0"])
def test_line_break_or_nul_in_title_is_refused_ATOM_31_INJ_01(project, build_error, escape):
    write_post(posts_dir(project), "entete", title=f'"Bonjour{escape}Bcc: x@example.org"')
    message = build_error()
    assert "entete.md" in message and "'title'" in message


@pytest.mark.parametrize("key", ["title", "author", "description"])
def test_xml_forbidden_character_in_config_text_is_stripped_or_refused_ATOM_31(project, run, key):
    """Every text field, config included: strip the character or refuse it clearly, never crash."""
    set_site_value(project, key, '"Claude\\u0008Super"')
    outcome = run("build")
    assert "Internal error" not in outcome.stderr, outcome.stderr
    if outcome.exit_code == 0:
        document = (project / "public" / "feed.xml").read_bytes()
        strict_parse(document)
        assert "ClaudeSuper" in document.decode("utf-8")
    else:
        assert outcome.exit_code == 1 and f"site.{key}" in outcome.stderr


def test_markup_looking_text_cannot_break_out_of_content_FG_12(build, project):
    write_post(posts_dir(project), "evasion", body="`</content></entry><entry><id>x</id>` et ]]> fin")
    root = strict_parse(build())
    assert len(entries(root)) == 6
    assert "</content></entry><entry>" in visible_text(entries(root)[0].findtext(f"{A}content"))


def test_feedgen_is_pinned_to_the_version_the_workaround_targets_FG_01():
    assert version("feedgen") == "1.0.0"
    assert '"feedgen==1.0.0"' in (REPO / "pyproject.toml").read_text("utf-8")


def test_character_references_to_forbidden_characters_do_not_break_the_feed_ATOM_31(project, run):
    """nh3 decodes ``&#x1b;`` in raw HTML and attributes after xml_safe ran on the source text."""
    body = '<div>avant&#x1b;&#xFFFE;après</div>\n\n<a href="https://example.org/&#x8;" title="t&#x1b;">lien</a>'
    write_post(posts_dir(project), "references", body=body)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    content = entries(strict_parse((project / "public" / "feed.xml").read_bytes()))[0].findtext(f"{A}content")
    assert "avant" in content and "après" in content and "lien" in content
