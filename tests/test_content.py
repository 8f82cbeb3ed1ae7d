"""Posts: front matter, slugs, sanitizing, URLs and the one-line error contract
(SEC-01/05/06, ATOM-16/21/31, INJ-01)."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from checks import assert_one_line_error
from conftest import FIXED_NOW, write_post
from newsletter.content import _PLAIN_ABSOLUTE, published, read_post, read_posts, render_markdown
from newsletter.errors import HeaderInjection, PostError

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://claudesuper.example.org/"
KEEP = object()
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


# ---------------------------------------------------------------- helpers


@pytest.fixture
def posts_dir(project) -> Path:
    return project / "content" / "posts"


def post(folder: Path, name: str, *, slug=KEEP, body: str = "Bonjour.", **fields) -> Path:
    """``write_post`` with a file name independent of the front-matter slug (None drops it)."""
    path = write_post(folder, name, body=body, **fields)
    if slug is not KEEP:
        text = path.read_text(encoding="utf-8")
        line = f"slug: {name}\n"
        assert line in text
        path.write_text(text.replace(line, "" if slug is None else f"slug: {slug}\n", 1), encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (names and bytes), to prove a failing command wrote nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_fails_cleanly(project, run, built: bytes, *fragments: str) -> str:
    """The build fails with one line naming ``fragments``; nothing on disk changes, inside public/ or out."""
    before = snapshot(project.parent)
    line = assert_one_line_error(run("build"), *fragments)
    assert snapshot(project.parent) == before
    assert (project / "public" / "feed.xml").read_bytes() == built
    return line


def feed_entries(project: Path) -> dict[str, str]:
    """Entry id → alternate link of the built feed."""
    root = etree.parse(str(project / "public" / "feed.xml")).getroot()
    return {e.findtext(f"{ATOM}id"): e.find(f"{ATOM}link").get("href") for e in root.iter(f"{ATOM}entry")}


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.found += [(tag, name, value or "") for name, value in attrs]


def attributes(html: str) -> list[tuple[str, str, str]]:
    parser = _Attributes()
    parser.feed(html)
    return parser.found


def render(markdown: str) -> str:
    return render_markdown(markdown, base_url=BASE)


# ---------------------------------------------------------------- drafts and scheduled posts


def test_drafts_and_future_posts_are_read_but_not_published(config, posts_dir):
    post(posts_dir, "brouillon", draft="true")
    post(posts_dir, "plus-tard", date='"2026-12-25T10:00:00+01:00"')
    post(posts_dir, "pile-maintenant", date='"2026-11-26T13:00:00+01:00"')  # == FIXED_NOW
    posts = read_posts(config)
    assert {"brouillon", "plus-tard", "pile-maintenant"} <= {p.slug for p in posts} and len(posts) == 8
    assert next(p for p in posts if p.slug == "brouillon").draft is True
    visible = published(posts, FIXED_NOW)
    slugs = [p.slug for p in visible]
    assert "brouillon" not in slugs and "plus-tard" not in slugs
    assert slugs[0] == "pile-maintenant" and len(slugs) == 6
    assert [p.date for p in visible] == sorted((p.date for p in visible), reverse=True)


def test_build_leaves_drafts_and_future_posts_out_of_feed_and_index(project, run, config, posts_dir):
    post(posts_dir, "brouillon", draft="true", title='"Brouillon secret"')
    post(posts_dir, "plus-tard", date='"2026-12-25T10:00:00+01:00"', title='"Billet de Noël"')
    hidden = {p.id for p in read_posts(config) if p.slug in ("brouillon", "plus-tard")}
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    entries = feed_entries(project)
    assert len(entries) == 5 and not hidden & set(entries)
    index = (project / "public" / "index.html").read_text(encoding="utf-8")
    for text in ("Brouillon secret", "Billet de Noël", "/brouillon/", "/plus-tard/"):
        assert text not in index
    assert not (project / "public" / "brouillon").exists() and not (project / "public" / "plus-tard").exists()
    # the scheduled post appears once the clock passes its date; the draft never does
    assert run("build", now=FIXED_NOW.replace(year=2027)).exit_code == 0
    assert len(feed_entries(project)) == 6 and (project / "public" / "plus-tard").is_dir()
    assert not (project / "public" / "brouillon").exists()


# ---------------------------------------------------------------- slugs (SEC-05, SEC-06, ATOM-16)

BAD_SLUGS = {
    "parent-dirs": '"../../x"',
    "absolute": '"/etc/passwd"',
    "backslash": '"..\\\\x"',
    "dots-inside": '"a/../../b"',
    "nul": '"a\\0b"',
    "fullwidth": '"．．／x"',
    "uppercase": "Mon-Billet",
    "space": '"mon billet"',
    "too-long": "a" * 101,
    "double-hyphen": "a--b",
    "trailing-newline": '"ok\\n"',  # `$` also matches before a final "\n"
}


@pytest.mark.parametrize("slug", list(BAD_SLUGS.values()), ids=list(BAD_SLUGS))
def test_bad_slug_is_refused_and_nothing_is_written(project, run, built, posts_dir, slug):
    path = post(posts_dir, "good-name", slug=slug)
    assert_fails_cleanly(project, run, built, str(path), "'slug'", "SEC-05")


@pytest.mark.parametrize("slug", list(BAD_SLUGS.values()), ids=list(BAD_SLUGS))
def test_bad_slug_raises_post_error_in_the_library(config, posts_dir, slug):
    path = post(posts_dir, "good-name", slug=slug)
    with pytest.raises(PostError) as caught:
        read_post(path, config)
    assert caught.value.where == str(path) and "'slug'" in caught.value.message


def test_slug_of_100_characters_is_accepted(config, posts_dir):
    path = post(posts_dir, "x", slug="a" * 100)
    assert read_post(path, config).slug == "a" * 100


def test_slug_comes_from_the_file_name_when_absent(config, posts_dir):
    result = read_post(post(posts_dir, "mon-billet-2024", slug=None), config)
    assert result.slug == "mon-billet-2024" and result.url == BASE + "mon-billet-2024/"


def test_bad_file_name_without_slug_is_refused(project, run, built, posts_dir):
    path = post(posts_dir, "Mon Billet", slug=None)
    assert_fails_cleanly(project, run, built, str(path), "'slug'", "'Mon Billet'")


def test_duplicate_slug_names_the_second_file(project, run, built, posts_dir):
    post(posts_dir, "a-post")
    second = post(posts_dir, "b-post", slug="a-post")
    assert_fails_cleanly(project, run, built, str(second), "slug 'a-post' is already used by a-post.md")


def test_duplicate_id_names_the_second_file(project, run, built, posts_dir, config):
    same = '"urn:uuid:11111111-2222-4333-8444-555555555555"'
    post(posts_dir, "a-un", id=same)
    second = post(posts_dir, "b-deux", id=same)
    message = "id 'urn:uuid:11111111-2222-4333-8444-555555555555' is already used by a-un.md"
    assert_fails_cleanly(project, run, built, str(second), message)
    with pytest.raises(PostError) as caught:
        read_posts(config)
    assert caught.value.where == str(second)


# ---------------------------------------------------------------- front-matter fields

BAD_FIELDS = {
    "missing-title": ({"title": None}, "'title' is missing"),
    "empty-title": ({"title": '""'}, "'title'"),
    "blank-title": ({"title": '"   "'}, "'title' is empty"),
    "missing-date": ({"date": None}, "'date' is missing"),
    "unknown-field": ({"colour": "red"}, "unknown front matter field 'colour'"),
    "impossible-date": (
        {"date": '"2013-02-30T10:00:00+01:00"'},
        "'date' '2013-02-30T10:00:00+01:00' is not a valid date",
    ),
    "fifty-years-ahead": ({"date": '"2076-05-01T10:00:00+02:00"'}, "more than five years ahead"),
    "updated-before-date": ({"updated": '"2024-04-01T10:00:00+02:00"'}, "'updated' is before 'date'"),
    "draft-string": ({"draft": '"yes"'}, "'draft' must be true or false"),
    "draft-number": ({"draft": "1"}, "'draft' must be true or false"),
    "tags-mapping": ({"tags": "{a: 1}"}, "'tags' must be a list"),
    "tags-number": ({"tags": "5"}, "'tags' must be a list"),
    "author-email": ({"author": '"claude@example.org"'}, "'author' must be a name"),
    "id-not-permanent": ({"id": '"billet-1"'}, "'id' 'billet-1' is not a permanent id"),
}


@pytest.mark.parametrize("fields, fragment", list(BAD_FIELDS.values()), ids=list(BAD_FIELDS))
def test_bad_front_matter_field_is_one_line_naming_file_and_field(project, run, built, posts_dir, fields, fragment):
    path = post(posts_dir, "billet", **fields)
    assert_fails_cleanly(project, run, built, str(path), fragment)


def test_missing_id_hint_offers_a_fresh_uuid(project, run, built, posts_dir):
    post(posts_dir, "billet", id=None)
    minted = []
    for _ in range(2):
        line = assert_fails_cleanly(project, run, built, "'id' is missing")
        match = re.search(r"urn:uuid:([0-9a-f-]{36})", line)
        assert match, line
        minted.append(uuid.UUID(match.group(1)))
    assert minted[0].version == 4 and minted[0] != minted[1]


def test_date_without_time_zone_takes_the_site_zone_with_a_warning(project, run, posts_dir, config, caplog):
    path = post(posts_dir, "billet", date='"2024-05-01T10:00:00"')
    outcome = run("build")
    assert outcome.exit_code == 0
    assert outcome.stderr.startswith("Warning: ") and "billet.md: field 'date'" in outcome.stderr
    assert "2024-05-01T10:00:00+02:00" in outcome.stderr  # Europe/Paris, summer
    path.write_text(path.read_text(encoding="utf-8").replace("2024-05-01T10:00:00", "2024-01-15"), encoding="utf-8")
    with caplog.at_level("WARNING", logger="newsletter"):
        assert read_post(path, config).date.isoformat() == "2024-01-15T00:00:00+01:00"  # winter offset
    assert "no time zone offset" in caplog.text


def test_valid_fields_are_parsed(config, posts_dir):
    path = post(
        posts_dir, "billet", updated='"2024-06-01T08:00:00Z"', tags="[un, deux]", author='"Camille"', draft="false"
    )
    result = read_post(path, config)
    assert result.updated.isoformat() == "2024-06-01T08:00:00+00:00" and result.date.utcoffset().total_seconds() == 7200
    assert result.tags == ("un", "deux") and result.author == "Camille" and result.draft is False
    assert result.title == "Titre billet" and result.id.startswith("urn:uuid:")


# ---------------------------------------------------------------- broken files

RAW = "---\ntitle: x\nslug: y\nid: urn:uuid:11111111-2222-4333-8444-555555555555\n"
BROKEN_FILES = {
    "malformed-yaml": ((RAW + "date: [2024\nauthor: x\n---\nb\n").encode(), "line 6: invalid YAML"),
    "bad-indentation": (b"---\ntitle: x\n  bad: : x\n---\nb\n", "line 3: invalid YAML"),
    "no-front-matter": (b"# Bonjour\n\nTexte.\n", "has no front matter"),
    "unclosed-front-matter": (RAW.encode() + b"\nBonjour\n", "front matter is not closed"),
    "invalid-utf8": (b"---\ntitle: x\n---\nligne\n\xff\xfe mauvais\n", "line 5: not valid UTF-8"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
    "empty": (b"", "has no front matter"),
    "too-large": (RAW.encode() + b"---\n" + b"x" * 3_000_000, "is 3.0 MB; posts over 2 MB are refused"),
}


@pytest.mark.parametrize("data, fragment", list(BROKEN_FILES.values()), ids=list(BROKEN_FILES))
def test_broken_file_is_one_line_naming_the_file(project, run, built, posts_dir, config, data, fragment):
    path = posts_dir / "casse.md"
    path.write_bytes(data)
    assert_fails_cleanly(project, run, built, str(path), fragment)
    with pytest.raises(PostError):
        read_post(path, config)


# ---------------------------------------------------------------- sanitizer (SEC-01)

DANGEROUS = {
    "script": ("<script>alert(1)</script>Après", ["<script", "alert"]),
    "img-onerror": ("<img src=x onerror=alert(1)>", ["onerror", "alert"]),
    "markdown-javascript-link": ("[x](javascript:alert(1))", ["href=\"javascript", "<a"]),
    "html-javascript-link": ('<a href="JavaScript:alert(1)">x</a>', ["javascript", "JavaScript", "alert"]),
    "tab-obfuscated-javascript": ('<a href="jav&#x09;ascript:alert(1)">x</a>', ["javascript", "ascript:"]),
    "iframe": ('<iframe src="https://evil.example/"></iframe>Après', ["<iframe", "evil.example"]),
    "style": ("<style>p{color:red}</style>Après", ["<style", "color:red"]),
    "data-url": ('<a href="data:text/html,<script>alert(1)</script>">d</a>', ["data:", "<script", "alert"]),
    "data-image": ('<img src="data:image/svg+xml,<svg onload=alert(1)>" alt="i">', ["data:", "onload"]),
    "form": ('<form action="https://evil.example/"><input name="p"></form>', ["<form", "<input", "evil.example"]),
    "div-onclick": ('<div onclick="steal()">salut</div>', ["onclick", "steal", "<div"]),
}


@pytest.mark.parametrize("markdown, forbidden", list(DANGEROUS.values()), ids=list(DANGEROUS))
def test_sanitizer_removes_dangerous_markup(markdown, forbidden):
    html = render(markdown)
    for text in forbidden:
        assert text not in html, (text, html)
    for tag, name, value in attributes(html):
        assert not name.startswith("on") and name not in ("style", "action")
        if name in ("href", "src"):
            assert urlsplit(value).scheme in ("http", "https", "mailto"), (tag, value)


def test_sanitized_html_reaches_the_post_and_the_built_page(project, run, posts_dir, config):
    body = "Avant <script>alert('x')</script>\n\n<img src=x onerror=alert(1)> [lien](javascript:alert(1))\n"
    path = post(posts_dir, "piege", body=body)
    html = read_post(path, config).html
    assert "<script" not in html and "onerror" not in html and 'href="javascript' not in html
    assert run("build").exit_code == 0
    page = (project / "public" / "piege" / "index.html").read_text(encoding="utf-8")
    article = page.split("<article lang=\"fr\">", 1)[1]
    assert "<script" not in article and "onerror" not in article


def test_allowed_formatting_survives():
    html = render(
        "*em* **fort** `code` ~~barré~~\n\n- un\n- deux\n\n1. premier\n\n> citation\n\n"
        "[web](https://example.org/a) [clair](http://example.org/b) [mail](mailto:claude@example.org)\n\n"
        '![Une image](https://example.org/i.png "titre")\n\n<em>brut</em> <abbr title="Entreprise 2.0">E2.0</abbr>\n'
    )
    for fragment in (
        "<em>em</em>", "<strong>fort</strong>", "<code>code</code>", "<s>barré</s>", "<ul>", "<ol>",
        "<li>deux</li>", "<blockquote>", 'href="https://example.org/a"', 'href="http://example.org/b"',
        'href="mailto:claude@example.org"', 'alt="Une image"', 'src="https://example.org/i.png"', 'title="titre"',
        "<em>brut</em>", '<abbr title="Entreprise 2.0">E2.0</abbr>',
    ):  # fmt: skip
        assert fragment in html, fragment


def test_commonmark_table_strikethrough_and_raw_html():
    html = render("| a | b |\n|---|---|\n| 1 | 2 |\n\n~~fini~~ et <em>brut</em>\n\n<div onclick=\"x()\">sûr</div>\n")
    assert "<table>" in html and "<th>a</th>" in html and "<td>2</td>" in html
    assert "<s>fini</s>" in html or "<del>fini</del>" in html
    assert "<em>brut</em>" in html
    assert "sûr" in html and "<div" not in html and "onclick" not in html


def test_template_syntax_is_kept_literally(project, run, posts_dir, config):
    path = post(posts_dir, "gabarit", body="Calcul {{ 7*7 }} et {% raw %}x{% endraw %} et {# note #}\n")
    html = read_post(path, config).html
    assert "{{ 7*7 }}" in html and "{% raw %}" in html and "{# note #}" in html and "49" not in html
    assert run("build").exit_code == 0
    page = (project / "public" / "gabarit" / "index.html").read_text(encoding="utf-8")
    assert "{{ 7*7 }}" in page and "{% raw %}x{% endraw %}" in page and "Calcul 49" not in page


# ---------------------------------------------------------------- absolute URLs (ATOM-27)


@pytest.mark.parametrize(
    "markdown, expected",
    [
        ("[autre](autre-billet/)", BASE + "autre-billet/"),
        ("[racine](/a-propos/)", BASE + "a-propos/"),
        ("[remonte](../x/)", BASE + "x/"),
        ("![photo](images/photo.jpg)", BASE + "images/photo.jpg"),
        ('<img src="img/a.png" alt="a">', BASE + "img/a.png"),
        ("[ailleurs](https://example.org/page)", "https://example.org/page"),
    ],
)
def test_relative_links_and_images_become_absolute(markdown, expected):
    values = [v for _, name, v in attributes(render(markdown)) if name in ("href", "src")]
    assert values == [expected]


def test_protocol_relative_url_becomes_an_absolute_https_url():
    (value,) = [v for _, name, v in attributes(render("[x](//evil.example/x) ")) if name == "href"]
    parts = urlsplit(value)
    assert parts.scheme == "https" and parts.netloc == "evil.example" and value == "https://evil.example/x"


def test_anchor_link_points_into_the_post_itself(config, posts_dir):
    """A same-document reference must resolve against the post's page, not the home page."""
    result = read_post(post(posts_dir, "avec-ancre", body="[voir les notes](#notes)\n"), config)
    (value,) = [v for _, name, v in attributes(result.html) if name == "href"]
    assert value.startswith("https://")
    assert value == result.url + "#notes", value


def test_every_url_in_the_built_feed_is_absolute(project, run, posts_dir):
    post(posts_dir, "liens", body="[a](a/) ![b](b.png) [c](#c) [d](//cdn.example/d) [e](mailto:e@example.org)\n")
    assert run("build").exit_code == 0
    root = etree.parse(str(project / "public" / "feed.xml")).getroot()
    for content in root.iter(f"{ATOM}content"):
        for _, name, value in attributes(content.text):
            if name in ("href", "src"):
                assert re.match(r"^(https?://[^/]+/|mailto:)", value), value


# ---------------------------------------------------------------- XML-forbidden characters (ATOM-31) and INJ-01


def test_control_characters_in_body_and_title_are_stripped(project, run, posts_dir, config):
    body = "Début\x08\x0b\x0c\x1b\ufffe\uffff fin.\n"
    # (VT and FF end a line for the email package, so in a title they are refused: test_security INJ-01.)
    path = post(posts_dir, "controles", body=body, title='"Titre\\e\\x08 propre"')
    result = read_post(path, config)
    assert not XML_FORBIDDEN.search(result.html + result.title + result.summary)
    assert "Début fin." in result.html and result.title == "Titre propre"
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert result.id in feed_entries(project)  # the feed parses


def test_character_references_to_forbidden_characters_do_not_break_the_feed(project, run, posts_dir, config):
    """`&#x1b;` in a raw HTML block is decoded by the sanitizer after xml_safe ran on the source."""
    path = post(posts_dir, "references", body="<div>avant&#x1b;&#xFFFE;après</div>\n")
    assert not XML_FORBIDDEN.search(read_post(path, config).html)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert len(feed_entries(project)) == 6


@pytest.mark.parametrize(
    "field, value",
    [
        ("title", '"A\\r\\nBcc: victime@example.org"'),
        ("title", '"Bonjour\\n"'),
        ("title", '"A\\0B"'),
        ("author", '"Claude\\r\\nBcc: x@example.org"'),
        ("preheader", '"Salut\\nBcc: x@example.org"'),
    ],
)
def test_line_breaks_and_nul_in_header_fields_are_refused(project, run, built, posts_dir, config, field, value):
    path = post(posts_dir, "injection", **{field: value})
    assert_fails_cleanly(project, run, built, str(path), f"field '{field}'", "line break or NUL")
    with pytest.raises(HeaderInjection):
        read_post(path, config)


# ---------------------------------------------------------------- summary


def test_summary_is_the_first_paragraph_when_short(config, posts_dir):
    body = "Premier *paragraphe* court.\n\nSecond paragraphe.\n"
    result = read_post(post(posts_dir, "court", body=body), config)
    assert result.summary == "Premier paragraphe court." and result.preheader == result.summary


def test_long_first_paragraph_is_cut_on_a_word_with_an_ellipsis(config, posts_dir):
    first = " ".join(f"mot{n:02d}" for n in range(60))  # 359 characters
    result = read_post(post(posts_dir, "long", body=f"{first}\n\nSECOND.\n"), config)
    summary = result.summary
    assert len(summary) <= 201 and summary.endswith("…")
    assert first.startswith(summary[:-1]) and first[len(summary) - 1] == " "  # cut between words
    assert "SECOND" not in summary and len(summary) > 150


def test_summary_from_front_matter_wins(config, posts_dir):
    result = read_post(post(posts_dir, "resume", summary='"Mon résumé."', body="Autre chose.\n"), config)
    assert result.summary == "Mon résumé."


# ---------------------------------------------------------------- bounded parsers (issue 10, item 7)


def test_the_yaml_loader_is_libyamls_when_pyyaml_has_it_and_pure_python_has_the_last_word():
    import yaml

    from newsletter.frontmatter import _FastStringDatesLoader, _StringDatesLoader, load_front_matter

    if yaml.__with_libyaml__:
        assert issubclass(_FastStringDatesLoader, yaml.CSafeLoader)
    assert issubclass(_StringDatesLoader, yaml.SafeLoader) and not issubclass(_StringDatesLoader, yaml.FullLoader)
    # libyaml refuses an escaped lone surrogate; PyYAML reads it (the XML filter strips it later)
    expected = {"title": "A\ud800B", "date": "2024-06-01"}
    assert load_front_matter('title: "A\\uD800B"\ndate: 2024-06-01', "p.md") == expected


def test_front_matter_aliases_are_counted_and_ten_are_enough():
    from newsletter.frontmatter import MAX_YAML_ALIASES, load_front_matter

    aliases = ", ".join(["*a"] * MAX_YAML_ALIASES)
    assert load_front_matter(f"summary: &a x\ntags: [{aliases}]", "p.md")["tags"] == ["x"] * MAX_YAML_ALIASES
    with pytest.raises(PostError, match=f"more than {MAX_YAML_ALIASES} YAML aliases") as caught:
        load_front_matter(f"summary: &a x\ntags: [{aliases}, *a]", "p.md")
    assert caught.value.where == "p.md"


@pytest.mark.parametrize("depth, ok", [(10, True), (11, False), (30_000, False)])
def test_front_matter_depth_is_bounded_without_recursion(depth, ok):
    from newsletter.frontmatter import load_front_matter

    text = "tags: " + "[" * (depth - 1) + "x" + "]" * (depth - 1)
    if ok:
        assert load_front_matter(text, "p.md")["tags"] is not None
    else:
        with pytest.raises(PostError, match="nested more than 10 levels deep"):
            load_front_matter(text, "p.md")


def test_front_matter_size_is_bounded():
    from newsletter.frontmatter import MAX_FRONT_MATTER_BYTES, load_front_matter

    with pytest.raises(PostError, match="front matter is over 64 KB"):
        load_front_matter("summary: " + "é" * (MAX_FRONT_MATTER_BYTES // 2), "p.md")


@pytest.mark.parametrize(
    "markdown",
    [
        ">" * 51 + " fond",
        "<blockquote>" * 51 + "fond" + "</blockquote>" * 51,
        "".join("  " * i + "- x\n" for i in range(26)),
        "<b>" * 60 + "fond",
        "<blockquote>" * 200_000,
    ],
    ids=["markdown-quotes-51", "html-quotes-51", "lists-26", "unclosed-bold-60", "raw-html-200000"],
)
def test_nesting_past_50_levels_is_refused_naming_the_post(markdown):
    with pytest.raises(PostError, match="more than 50 levels deep") as caught:
        render_markdown(markdown, base_url=BASE, source="content/posts/profond.md")
    assert caught.value.where == "content/posts/profond.md"


def test_nesting_up_to_50_levels_is_rendered_whole():
    from newsletter.content import nesting_depth

    html = render(">" * 49 + " le fond du puits")
    assert nesting_depth(html) == 50 and "le fond du puits" in html  # 49 blockquotes and the paragraph
    lists = render("".join("  " * i + "- niveau " + str(i) + "\n" for i in range(24)))
    assert "niveau 23" in lists and nesting_depth(lists) == 48


@pytest.mark.parametrize(
    "html, kept, dropped",
    [
        ('<ol start="²"><li>x</li></ol>', "<ol>", 'start="²"'),
        ('<ol start="٣"><li>x</li></ol>', "<ol>", "start"),
        ('<ol start="-3"><li>x</li></ol>', 'start="-3"', None),
        ('<ol start="1234567890"><li>x</li></ol>', "<ol>", "start"),
        ('<table><tr><td colspan="2" rowspan="１">x</td></tr></table>', 'colspan="2"', "rowspan"),
        ('<img src="https://example.org/i.png" alt="i" width="600" height="1e3">', 'width="600"', "height"),
    ],
)
def test_numeric_attributes_are_plain_ascii_numbers_or_dropped(html, kept, dropped):
    from newsletter.plaintext import html_to_text

    cleaned = render(html)
    assert kept in cleaned
    if dropped:
        assert dropped not in cleaned
    html_to_text(cleaned)  # the plain-text part reads them as numbers


def test_a_url_urlsplit_cannot_parse_is_dropped_not_raised():
    cleaned = render('[lien](http://[oops/) <a href="http://[::1">autre</a>')
    assert "lien" in cleaned and "autre" in cleaned and "[oops" not in cleaned and "[::1" not in cleaned


def test_only_regular_files_are_read(config, posts_dir):
    link = posts_dir / "zero.md"
    link.symlink_to("/dev/zero")
    with pytest.raises(PostError, match="is not a regular file") as caught:
        read_post(link, config)
    assert caught.value.where == str(link)


def test_dates_before_1900_are_refused(config, posts_dir):
    path = post(posts_dir, "an-un", date='"0001-01-01T00:30:00+01:00"')
    with pytest.raises(PostError, match="field 'date' .* is before 1900"):
        read_post(path, config)


def test_markdown_that_parses_past_its_deadline_is_refused_naming_the_post():
    with pytest.raises(PostError, match="took more than") as caught:
        render_markdown("[" * 2000 + "\n\n| a |\n|---|\n| b |", base_url=BASE, source="lent.md", seconds=-1)
    assert caught.value.where == "lent.md"
    assert "a" in render_markdown("| a |\n|---|\n| b |", base_url=BASE, seconds=60)


# ---------------------------------------------------------------- the CommonMark engine (issue 13)


def test_fenced_blocks_are_highlighted_and_indented_ones_shown_as_written():
    fence = "`" * 3
    html = render(
        f"{fence}python\nif a < b:\n    pass\n{fence}\n\n"
        f"- item\n\n  ~~~\n  plain & <b>\n  ~~~\n\n"
        f"> {fence}sh\n> echo hi\n> {fence}\n\n"
        f"    {fence}not a fence\n    x = 1\n"
    )
    blocks = re.findall(r"<pre[^>]*>.*?</pre>", html, re.S)
    assert len(blocks) == 4, html
    assert blocks[0].startswith('<pre class="highlight"><code><span class="k">if</span>') and "&lt;" in blocks[0]
    assert blocks[1] == '<pre class="highlight"><code>plain &amp; &lt;b&gt;\n</code></pre>'
    assert blocks[2].startswith('<pre class="highlight"><code><span class="nb">echo</span>')
    assert blocks[3] == f"<pre><code>{fence}not a fence\nx = 1\n</code></pre>"  # indented code: never highlighted


def test_tables_strikethrough_and_raw_html_render_as_before():
    html = render("| a | b |\n|:--|--:|\n| *x* | `y` |\n\n~~barré~~ et ~simple~\n\n<del>brut</del>\n")
    assert "<table>" in html and "<th>a</th>" in html and "<td><em>x</em></td>" in html and "<code>y</code>" in html
    assert "<s>barré</s> et ~simple~" in html and "<s>brut</s>" in html


@settings(max_examples=300, deadline=None)
@given(st.from_regex(_PLAIN_ABSOLUTE, fullmatch=True))
def test_urls_kept_as_they_are_are_those_urljoin_keeps(url):
    """The sanitizer's fast path returns these URLs unchanged: exactly what urljoin would write."""
    assert urljoin(BASE + "billet/", url) == url and urlsplit(url).scheme in ("http", "https")


def test_rendering_frees_what_the_parser_allocates():
    """cmarkgfm's helpers leak each document (~40 KB a post); 60 renders of a 400 KB post would
    keep about 1 GB.  Peak memory is the kernel's count, not a timing."""
    import resource

    from newsletter.commonmark import commonmark_html

    text = "Un paragraphe avec *de l'emphase*, un [lien](https://example.org/a) et `du code`.\n\n" * 5000
    commonmark_html(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(60):
        commonmark_html(text)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150, f"peak memory grew by {grown_mb:.0f} MB over 60 renders"
