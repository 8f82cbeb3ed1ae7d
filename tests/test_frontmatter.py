"""The flat front-matter reader yields exactly what the YAML loader builds, or stands aside (issue 13)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter import frontmatter
from newsletter.errors import PostError
from newsletter.frontmatter import flat_fields, load_front_matter, split_front_matter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import make_post, newsletter_text  # noqa: E402


def yaml_reads(text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """What the YAML loaders alone make of ``text`` (libyaml, then pure Python): the reference."""
    with monkeypatch.context() as patched:
        patched.setattr(frontmatter, "flat_fields", lambda text: None)
        try:
            return load_front_matter(text, "p.md")
        except PostError as exc:
            return exc


def front_matter_of(post: str) -> str:
    lines = post.split("\n")
    end = lines.index("---", 1)
    return "\n".join(lines[1:end])


def assert_same(text: str, monkeypatch: pytest.MonkeyPatch) -> dict | None:
    fields = flat_fields(text)
    if fields is not None:
        expected = yaml_reads(text, monkeypatch)
        assert fields == expected, text
        # == says True == 1 and "a" == "a": the types must be the loader's too
        assert [type(v) for v in fields.values()] == [type(v) for v in expected.values()], text  # type: ignore[union-attr]
        for key, value in fields.items():
            if isinstance(value, list):
                assert [type(v) for v in value] == [type(v) for v in expected[key]]  # type: ignore[index]
    return fields


def test_the_demo_posts_are_read_by_the_flat_reader_as_yaml_reads_them(monkeypatch):
    posts = sorted((REPO / "content" / "posts").rglob("*.md"))
    assert len(posts) >= 5
    for path in posts:
        text = front_matter_of(path.read_text(encoding="utf-8"))
        assert assert_same(text, monkeypatch) is not None, path  # the fast path is taken, and agrees


def test_the_benchmark_corpus_is_read_by_the_flat_reader_as_yaml_reads_it(monkeypatch):
    for number in range(0, 3000, 7):
        text = front_matter_of(newsletter_text(make_post(number)))
        fields = assert_same(text, monkeypatch)
        assert fields is not None and len(fields["tags"]) == 2


@pytest.mark.parametrize(
    "text",
    [
        'title: "Deux points : et # dièse"\ntags: [a, b]',
        "title: 'simple « guillemets » et \u00a0 espace insécable'",
        "title: Texte brut, avec virgule [et crochets] {accolades}",
        "title: 2024-06-01",  # a date left as text (the time zone is checked later)
        'date: "2024-06-01T10:00:00+02:00"',
        "draft: true\nsummary: false",
        "draft: True",  # YAML 1.1 spellings: left to the loader
        "draft: yes",
        "draft: on",
        "summary: null",
        "summary: ~",
        "summary: 12",
        "summary: 1.5",
        "summary: 0x1F",
        "summary: 1_000",
        "summary: .inf",
        "summary: =",
        "summary: <<",
        "title: emoji 🚀🇫🇷 et fin\u00a0",
        "title: l'apostrophe au milieu",
        'title: "antislash \\" échappé"',
        "title: 'l''apostrophe doublée'",
        "title: a # commentaire",
        "title: a #b",
        "title: a:b",
        "title: a: b",
        "title: -a",
        "title: - a",
        "title: ?a",
        "title: &ancre x\nsummary: *ancre",
        "title: !!str 12",
        "title: |\n  bloc",
        "title: >\n  plié",
        "title: suite\n  sur deux lignes",
        "title: espace finale ",
        "title:  deux espaces",
        "title:",
        "title:   ",
        "tags: []",
        "tags: [ ]",
        "tags: [ a ,b ]",
        "tags: [a, , b]",
        "tags: [a,]",
        "tags: [a?b]",
        "tags: [a, [b]]",
        "tags: [a, {b: c}]",
        "tags: [a] # commentaire",
        'tags: ["a, b", c]',
        "tags: [12, true, null]",
        "tags:\n  - un\n  - deux",
        "tags:\n- un\n- deux",
        "tags:\n  - un\n    - deux",
        "tags:\n  - un\n - deux",
        "tags:\n  - 'un'\n  - \"deux\"",
        "tags:\n  - true",
        "tags:\n\n  - un",
        "tags:\ntitle: x",
        "title: x\ntitle: y",  # the last one wins, as the loader does it
        "title: x\n\nslug: y\n",
        "True: x",
        "on: x",
        "null: x",
        "Title: x",
        "title: x\r\nslug: y",
        "title: x\tdeux",
        "title: \u2028",
        "title: a\u2028b",
        "title: a\x85b",
        "title: a\ufeffb",
        "title: a\x7fb",
        "---",
        "...",
        "%YAML 1.1",
        "# commentaire\ntitle: x",
        "",
        "\n\n",
    ],
)
def test_tricky_front_matter_is_read_as_yaml_reads_it_or_left_to_the_loader(text, monkeypatch):
    assert_same(text, monkeypatch)


SCALARS = st.sampled_from(
    ["a", "b c", "é", "«\u00a0x\u00a0»", "🙂", "1", "1.5", "true", "false", "True", "no", "null", "~", "-", "x-y",
     ":", "a:b", "a: b", "#", "a #b", "a#b", ",", "[", "]", "{", "}", "'", '"', "'q'", '"q"', "?", "a?", "&a", "*a",
     "!x", "|", ">", "%", "@", "`", "\\", " ", "  ", "2024-06-01", "0o7", "0b1", "1e3", "=", "<<", ".", "..."]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["title", "tags", "draft", "x", "on", "a_b"]),
            st.sampled_from([": ", ":", ":  ", ": [", ":\n  - ", ":\n- "]),
            st.lists(SCALARS, min_size=1, max_size=3),
            st.sampled_from(["", " ", "]", ", ", " # c"]),
        ),
        min_size=1,
        max_size=4,
    )
)
@example(lines=[("title", ": ", ["a"], "")])
def test_any_line_built_from_tricky_pieces_is_read_as_yaml_reads_it(lines, monkeypatch_session):
    text = "\n".join(
        key + separator + (", " if "[" in separator else "\n  - " if "-" in separator else "").join(items) + end
        for key, separator, items, end in lines
    )
    assert_same(text, monkeypatch_session)


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as patched:
        yield patched


@pytest.mark.parametrize(
    "text, fields, body",
    [
        ("---\ntitle: x\n---\ncorps\n", {"title": "x"}, "corps\n"),
        ("---  \ntitle: x\n---\t\ncorps", {"title": "x"}, "corps"),
        ("---\ntitle: x\n---", {"title": "x"}, ""),
        ("---\n---\ncorps", {}, "corps"),
        ("---\n\n---\n", {}, ""),
        ("---\ntitle: x\n--- \n\n---\nsuite", {"title": "x"}, "\n---\nsuite"),
    ],
)
def test_the_front_matter_is_split_from_the_body(text, fields, body):
    assert split_front_matter(text, "p.md") == (fields, body)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "has no front matter"),
        ("corps", "has no front matter"),
        ("---", "not closed"),
        ("---\ntitle: x\n", "not closed"),
    ],
)
def test_a_missing_or_open_front_matter_is_refused(text, problem):
    with pytest.raises(PostError, match=problem):
        split_front_matter(text, "p.md")
