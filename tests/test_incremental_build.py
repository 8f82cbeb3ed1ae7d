"""Incremental builds: the build cache skips what did not change, and the output is always
byte for byte what a clean build writes (issue 13)."""

from __future__ import annotations

import marshal
import os
import re
import shutil
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

import newsletter.content
import newsletter.site
from conftest import FIXED_NOW, write_post
from newsletter.buildcache import PostCache
from newsletter.cachestore import CACHE_DIR, CACHE_FILE
from newsletter.templates import PACKAGED_TEMPLATES

EXTRA_POSTS = 45  # with the demo's posts: several RFC 5005 archive pages of 20 entries


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def identities(folder: Path) -> dict[str, tuple[int, int]]:
    """``path → (inode, mtime)``: a rewritten file (a rename of a new one) changes its inode."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*") if p.is_file()
    }  # fmt: skip


def add_posts(project: Path, count: int = EXTRA_POSTS) -> None:
    folder = project / "content" / "posts"
    for n in range(count):
        write_post(
            folder, f"billet-{n:03d}", body=f"Premier « paragraphe » {n} 🙂.\n\nSuite [lien](https://example.org/{n}).",
            date=f'"2023-{1 + n % 12:02d}-{1 + n % 28:02d}T08:00:00+01:00"', tags=f"[essai, lot-{n % 3}]",
            id=f'"urn:uuid:00000000-0000-4000-8000-{n:012d}"',
        )  # fmt: skip


@pytest.fixture
def site(project, run):
    add_posts(project)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    return project


def clean_build(project: Path, run, tmp_path: Path) -> dict[str, bytes]:
    """The same project copied without its cache and output, built from nothing."""
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns("public", CACHE_DIR, "*.db*"))
    outcome = run("build", root=fresh)
    assert outcome.exit_code == 0, outcome.stderr
    return tree(fresh / "public")


def forbid_parsing(monkeypatch) -> list[Path]:
    """Record every post the Markdown parser is asked for."""
    parsed: list[Path] = []
    real = newsletter.content.read_post_bytes  # (read_post too parses through it)

    def counting(path, config):
        parsed.append(path)
        return real(path, config)

    monkeypatch.setattr(newsletter.content, "read_post_bytes", counting)
    return parsed


def count_renders(monkeypatch) -> list[str]:
    rendered: list[str] = []
    real = newsletter.site.render

    def counting(env, name, **context):
        rendered.append(name)
        return real(env, name, **context)

    monkeypatch.setattr(newsletter.site, "render", counting)
    return rendered


def test_nothing_changed_parses_nothing_and_rewrites_nothing(site, run, monkeypatch):
    before = identities(site / "public")
    parsed = forbid_parsing(monkeypatch)
    rendered = count_renders(monkeypatch)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert parsed == []
    assert "site/post.html" not in rendered and "site/index.html" not in rendered
    assert identities(site / "public") == before


def test_edits_then_incremental_build_equals_a_clean_build(site, run, monkeypatch, tmp_path):
    folder = site / "content" / "posts"
    edited = folder / "billet-007.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Suite", "Autre suite"), encoding="utf-8")
    (folder / "billet-013.md").unlink()
    write_post(folder, "tout-nouveau", date='"2025-01-02T08:00:00+01:00"', tags="[nouveau]",
               id='"urn:uuid:00000000-0000-4000-8000-999999999999"')  # fmt: skip
    retagged = folder / "billet-020.md"
    retagged.write_text(retagged.read_text(encoding="utf-8").replace("lot-2", "autre"), encoding="utf-8")
    parsed = forbid_parsing(monkeypatch)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert sorted(p.name for p in parsed) == ["billet-007.md", "billet-020.md", "tout-nouveau.md"]
    incremental = tree(site / "public")
    clean = clean_build(site, run, tmp_path)
    assert sorted(incremental) == sorted(clean)
    assert [name for name in clean if incremental[name] != clean[name]] == []
    assert "billet-013/index.html" not in incremental and "tout-nouveau/index.html" in incremental


def changed_files(before: dict[str, tuple[int, int]], folder: Path) -> set[str]:
    after = identities(folder)
    return {name for name in after if after[name] != before.get(name)} - {".newsletter-manifest.json"}


FEEDS = re.compile(r"feed\.xml|feed\.json|feed/archive/\d+\.xml|tags/[^/]+/feed\.xml")


@pytest.mark.parametrize("slug", ["billet-007", "billet-044"])  # in an archive page; in the subscription feeds
def test_an_edit_of_a_post_text_rewrites_its_page_and_feeds_only(site, run, monkeypatch, tmp_path, slug):
    folder = site / "content" / "posts"
    edited = folder / f"{slug}.md"
    edited.write_text(edited.read_text(encoding="utf-8") + "\nUne phrase de plus, à la fin.\n", encoding="utf-8")
    before = identities(site / "public")
    parsed = forbid_parsing(monkeypatch)
    rendered = count_renders(monkeypatch)
    whole_reads = []
    real_read = PostCache.read
    monkeypatch.setattr(PostCache, "read", lambda cache, *a: whole_reads.append(1) or real_read(cache, *a))
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Built 50 posts" in outcome.stdout
    assert parsed == [edited] and whole_reads == []  # the other posts' metadata is not even loaded
    assert rendered == ["site/post.html"]  # no listing: what they show of the post did not change
    changed = changed_files(before, site / "public")
    assert f"{slug}/index.html" in changed
    feeds = changed - {f"{slug}/index.html"}
    assert feeds and all(FEEDS.fullmatch(name) for name in feeds), feeds
    assert b"Une phrase de plus" in (site / "public" / sorted(feeds)[0]).read_bytes()
    assert tree(site / "public") == clean_build(site, run, tmp_path)
    again = identities(site / "public")
    assert run("build").exit_code == 0 and identities(site / "public") == again  # and the cache knows it


def test_a_broken_edit_is_refused_and_changes_nothing(site, run):
    edited = site / "content" / "posts" / "billet-021.md"
    good = edited.read_text(encoding="utf-8")
    edited.write_text(good.replace("tags: [", "tags: [[", 1), encoding="utf-8")
    before = tree(site / "public")
    outcome = run("build")
    assert outcome.exit_code != 0 and "billet-021.md" in outcome.stderr and "Traceback" not in outcome.stderr
    assert tree(site / "public") == before
    edited.write_text(good + "\nRéparé.\n", encoding="utf-8")
    assert run("build").exit_code == 0
    assert "Réparé" in (site / "public" / "billet-021" / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "change",
    [
        ("title", '"Un autre titre"', "tags/essai/index.html"),  # what the index and tag pages show
        ("date", '"2023-12-30T08:00:00+01:00"', "tags/essai/index.html"),  # the order of every listing
        ("tags", "[essai, neuf]", "tags/neuf/index.html"),  # a new tag page
    ],
    ids=["title", "date", "tags"],
)
def test_an_edit_a_listing_shows_renders_the_listings_again(site, run, monkeypatch, tmp_path, change):
    edited = site / "content" / "posts" / "billet-030.md"
    field, value, listing = change
    text = re.sub(rf"(?m)^{field}: .*$", f"{field}: {value}", edited.read_text(encoding="utf-8"), count=1)
    edited.write_text(text, encoding="utf-8")
    before = identities(site / "public")
    rendered = count_renders(monkeypatch)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert "site/tag.html" in rendered
    assert listing in changed_files(before, site / "public")
    assert tree(site / "public") == clean_build(site, run, tmp_path)


def test_an_edit_with_a_template_change_renders_what_the_template_shapes(site, run, tmp_path):
    edited = site / "content" / "posts" / "billet-012.md"
    edited.write_text(edited.read_text(encoding="utf-8") + "\nEncore.\n", encoding="utf-8")
    override = site / "templates" / "site" / "tag.html"
    override.parent.mkdir(parents=True)
    packaged = (PACKAGED_TEMPLATES / "site" / "tag.html").read_text(encoding="utf-8")
    override.write_text(packaged.replace('<ol class="issues">', '<ol class="issues" data-v2>'), encoding="utf-8")
    before = identities(site / "public")
    assert run("build").exit_code == 0
    changed = changed_files(before, site / "public")
    assert "billet-012/index.html" in changed and "tags/essai/index.html" in changed
    assert b"data-v2" in (site / "public" / "tags" / "essai" / "index.html").read_bytes()
    assert tree(site / "public") == clean_build(site, run, tmp_path)


def test_a_changed_post_template_renders_the_post_pages_only(site, run, monkeypatch, tmp_path):
    before = identities(site / "public")
    override = site / "templates" / "site" / "post.html"
    override.parent.mkdir(parents=True)
    packaged = (PACKAGED_TEMPLATES / "site" / "post.html").read_text(encoding="utf-8")
    override.write_text(packaged.replace("<article ", "<article data-v2 "), encoding="utf-8")
    parsed = forbid_parsing(monkeypatch)
    rendered = count_renders(monkeypatch)
    assert run("build").exit_code == 0
    assert parsed == []  # a template shapes pages, not posts
    assert "site/index.html" not in rendered
    after = identities(site / "public")
    changed = {name for name in after if after[name] != before.get(name)}
    post_pages = {name for name in after if name.endswith("/index.html") and not name.startswith(("tags/", "page/"))}
    assert changed - {".newsletter-manifest.json"} == post_pages
    assert tree(site / "public") == clean_build(site, run, tmp_path)


def test_a_changed_base_template_renders_every_page(site, run, tmp_path):
    override = site / "templates" / "site" / "base.html"
    override.parent.mkdir(parents=True)
    override.write_text((PACKAGED_TEMPLATES / "site" / "base.html").read_text(encoding="utf-8") + "<!-- v2 -->\n")
    assert run("build").exit_code == 0
    pages = {name: data for name, data in tree(site / "public").items() if name.endswith(".html")}
    assert pages and all(data.endswith(b"<!-- v2 -->\n") for data in pages.values())
    assert tree(site / "public") == clean_build(site, run, tmp_path)


def test_a_feed_setting_changes_the_feeds_and_no_post_page(site, run, monkeypatch, tmp_path):
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[feed]\nentries = 7\n", encoding="utf-8")
    before = identities(site / "public")
    parsed = forbid_parsing(monkeypatch)
    rendered = count_renders(monkeypatch)
    assert run("build").exit_code == 0
    assert parsed == [] and "site/post.html" not in rendered
    after = identities(site / "public")
    changed = {name for name in after if after[name] != before.get(name)}
    assert "feed.xml" in changed and "feed/archive/1.xml" in changed
    assert not {name for name in changed if name.endswith(".html")}
    assert tree(site / "public") == clean_build(site, run, tmp_path)


def test_a_site_setting_renders_again_without_parsing_again(site, run, monkeypatch, tmp_path):
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('description = "', 'description = "Nouveau : '), encoding="utf-8")
    parsed = forbid_parsing(monkeypatch)
    assert run("build").exit_code == 0
    assert parsed == []  # the description is not read by a post
    assert b"Nouveau : " in (site / "public" / "index.html").read_bytes()
    assert tree(site / "public") == clean_build(site, run, tmp_path)
    parsed.clear()
    config.write_text(text.replace("https://claudesuper.example.org/", "https://ailleurs.example.org/"))
    assert run("build").exit_code == 0
    folder = site / "content" / "posts"
    assert sorted(parsed) == sorted([*folder.glob("*.md"), *folder.glob("*/index.md")])  # links resolve against it


def cache_blob(db: sqlite3.Connection, name: str):
    return marshal.loads(db.execute("SELECT data FROM blobs WHERE name = ?", (name,)).fetchone()[0])


@pytest.mark.parametrize("damage", ["garbage", "foreign", "truncated-html", "wrong-types", "locked-open"])
def test_a_damaged_or_foreign_cache_is_rebuilt_never_an_error(site, run, tmp_path, damage):
    cache = site / CACHE_DIR / CACHE_FILE
    holder = None
    if damage == "garbage":
        cache.write_bytes(os.urandom(4096))
    elif damage == "foreign":
        cache.unlink()
        with closing(sqlite3.connect(cache)) as db, db:
            db.execute("CREATE TABLE blobs (name TEXT PRIMARY KEY, data BLOB)")
            db.execute("INSERT INTO blobs VALUES ('posts', ?), ('build', ?)", (marshal.dumps(("other", [1])), b"x"))
    elif damage == "truncated-html":
        with closing(sqlite3.connect(cache)) as db, db:
            db.execute("UPDATE html SET html = substr(html, 1, 30)")
        folder = site / "content" / "posts"
        (folder / "billet-001.md").write_text((folder / "billet-001.md").read_text().replace("Suite", "Fin"))
    elif damage == "wrong-types":
        with closing(sqlite3.connect(cache)) as db, db:
            shards = [name for (name,) in db.execute("SELECT name FROM blobs WHERE name LIKE 'posts %'")]
            assert shards  # the post index, in pieces
            for name in shards:
                form, (fingerprint, entries) = cache_blob(db, name)
                for entry in entries:
                    entry["tags"] = 3
                changed = marshal.dumps((form, (fingerprint, entries)))
                db.execute("UPDATE blobs SET data = ? WHERE name = ?", (changed, name))
            db.execute("DELETE FROM blobs WHERE name = 'build'")
    else:  # another build holds it: this one waits a moment, then goes on without it
        holder = sqlite3.connect(cache, timeout=0)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        outcome = run("build")
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
    assert outcome.exit_code == 0, outcome.stderr
    assert tree(site / "public") == clean_build(site, run, tmp_path)
    assert run("build").exit_code == 0  # and the rebuilt cache serves the next build


def test_nothing_changed_stops_before_loading_a_template_or_a_parser(site, run, monkeypatch):
    import sys

    for name in ("jinja2", "newsletter.site", "newsletter.content", "newsletter.commonmark"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Built 50 posts" in outcome.stdout
    loaded = {"jinja2", "newsletter.site", "newsletter.content", "newsletter.commonmark"} & set(sys.modules)
    assert loaded == set(), loaded


def test_a_removed_or_edited_page_is_written_again(site, run, tmp_path):
    public = site / "public"
    (public / "billet-003" / "index.html").unlink()
    (public / "index.html").write_text("abîmé", encoding="utf-8")
    assert run("build").exit_code == 0
    assert tree(public) == clean_build(site, run, tmp_path)


def test_a_post_whose_time_comes_is_published_by_the_next_build(site, run, tmp_path):
    write_post(site / "content" / "posts", "plus-tard", date='"2026-11-27T08:00:00+01:00"',
               id='"urn:uuid:00000000-0000-4000-8000-777777777777"')  # fmt: skip
    assert run("build").exit_code == 0
    assert not (site / "public" / "plus-tard").exists()
    assert run("build").exit_code == 0  # nothing changed: stopped at once
    later = FIXED_NOW + timedelta(days=1)
    outcome = run("build", now=later)
    assert outcome.exit_code == 0 and "Built 51 posts" in outcome.stdout
    assert (site / "public" / "plus-tard" / "index.html").is_file()


def test_an_edit_seen_by_status_is_still_built(site, run):
    """`status` re-reads an edited post into the cache; the build must not take it for built."""
    folder = site / "content" / "posts"
    (folder / "billet-002.md").write_text((folder / "billet-002.md").read_text().replace("Suite", "Vu par status"))
    assert run("status").exit_code == 0
    assert run("build").exit_code == 0
    assert "Vu par status" in (site / "public" / "billet-002" / "index.html").read_text(encoding="utf-8")


def test_a_touched_post_is_hashed_not_parsed(site, run, monkeypatch):
    path = site / "content" / "posts" / "billet-005.md"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    parsed = forbid_parsing(monkeypatch)
    before = identities(site / "public")
    assert run("build").exit_code == 0
    assert parsed == [] and identities(site / "public") == before


def test_status_reads_the_cache_and_sees_edits(site, run, monkeypatch):
    parsed = forbid_parsing(monkeypatch)
    first = run("status")
    assert first.exit_code == 0, first.stderr
    assert parsed == [] and "billet-044" in first.stdout
    draft_id = '"urn:uuid:00000000-0000-4000-8000-888888888888"'
    write_post(site / "content" / "posts", "brouillon", draft="true", id=draft_id)
    second = run("status")
    assert [p.name for p in parsed] == ["brouillon.md"]
    assert "draft" in next(line for line in second.stdout.splitlines() if line.endswith("brouillon"))


def test_a_cold_build_in_parallel_equals_a_sequential_one(project, run, monkeypatch, tmp_path):
    import newsletter.buildcache

    add_posts(project, 80)
    monkeypatch.setattr(newsletter.buildcache, "PARALLEL_MIN", 10_000)
    assert run("build").exit_code == 0
    sequential = tree(project / "public")
    monkeypatch.setattr(newsletter.buildcache, "PARALLEL_MIN", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert tree(project / "public") == clean_build(project, run, tmp_path) == sequential


def test_a_bad_post_found_by_a_worker_is_reported_as_a_sequential_read_reports_it(project, run, monkeypatch):
    import newsletter.buildcache

    add_posts(project, 80)
    write_post(project / "content" / "posts", "zz-casse", date='"pas une date"')
    monkeypatch.setattr(newsletter.buildcache, "PARALLEL_MIN", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    outcome = run("build")
    assert outcome.exit_code != 0
    assert "zz-casse.md" in outcome.stderr and "'date'" in outcome.stderr
    assert not (project / "public").exists()
