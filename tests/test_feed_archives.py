"""RFC 5005 archives, tag feeds, JSON Feed 1.1 and the archive site, read back as readers read them."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
from lxml import etree, html

from conftest import write_post
from newsletter.content import Post
from newsletter.errors import PostError
from newsletter.feed import HISTORY_NS, archive_slices, collect_tags, feed_documents, tag_slug
from newsletter.site import site_files
from newsletter.templates import make_environment

ATOM = "{http://www.w3.org/2005/Atom}"
START = datetime(2010, 1, 4, 9, 0, tzinfo=timezone(timedelta(hours=1)))
PARAGRAPH = "<p>Le « commerce » de détail face à Google\u00a0: une mise à rafler 🎯. " + "Texte suivi. " * 40 + "</p>"


def synthetic_posts(config, count: int, *, body: str = "<p>Bonjour « tout le monde »\u00a0!</p>") -> list[Post]:
    """``count`` posts, one a day, newest first, without going through Markdown (fast at 10,000)."""
    posts = []
    for n in range(count):
        when = START + timedelta(days=n, minutes=n % 60)
        slug = f"billet-{n:05d}"
        posts.append(
            Post(
                source=Path(f"{slug}.md"),
                id=f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
                slug=slug,
                title=f"Billet n° {n} — « été »",
                author="Claude Super",
                date=when,
                updated=when,
                tags=("social-business", "entreprise 2.0") if n % 3 == 0 else ("commerce",),
                summary=f"Résumé {n}",
                preheader="",
                html=body,
                url=config.site.post_url(slug),
            )  # fmt: skip
        )
    return list(reversed(posts))


def with_feed(config, **options):
    return dataclasses.replace(config, feed=dataclasses.replace(config.feed, **options))


def walk_archives(files: dict[str, bytes], base_url: str) -> list[str]:
    """Entry ids from feed.xml back through every prev-archive, as an archive-aware reader does (RFC 5005 §4.2)."""
    seen: list[str] = []
    url, visited = base_url + "feed.xml", set()
    while url:
        assert url not in visited, f"archive loop at {url}"
        visited.add(url)
        document = feedparser.parse(files[url.removeprefix(base_url)])
        assert not document.bozo, document.get("bozo_exception")
        seen += [entry.id for entry in document.entries]
        url = next((link.href for link in document.feed.links if link.rel == "prev-archive"), "")
    return seen


def test_the_archive_chain_reaches_every_post_exactly_once_ARCH_01_ARCH_02_ARCH_05(config):
    config = with_feed(config, entries=10)
    posts = synthetic_posts(config, 95)
    files = feed_documents(config, posts)
    assert walk_archives(files, config.site.base_url) == [p.id for p in posts]
    subscription = etree.fromstring(files["feed.xml"])
    assert subscription.find(f"{{{HISTORY_NS}}}archive") is None
    assert len(subscription.findall(f"{ATOM}entry")) == 15  # the newest posts not in a full page of 10
    for number in range(1, 9):
        page = etree.fromstring(files[f"feed/archive/{number}.xml"])
        assert page.find(f"{{{HISTORY_NS}}}archive") is not None  # ARCH-02
        rels = {link.get("rel"): link.get("href") for link in page.findall(f"{ATOM}link")}
        assert rels["current"] == config.site.feed_url and rels["self"].endswith(f"/feed/archive/{number}.xml")
        assert ("prev-archive" in rels) == (number > 1)
        assert len(page.findall(f"{ATOM}entry")) == 10
    for document in files.values():  # ARCH-05: archive rels in the feed head only, never paging rels
        rels = (
            {link.get("rel") for link in etree.fromstring(document).iter(f"{ATOM}link")}
            if document[:1] == b"<"
            else set()
        )
        assert not rels & {"first", "next", "previous", "last"}
        entry_rels = (
            {link.get("rel") for link in etree.fromstring(document).iterfind(f"{ATOM}entry/{ATOM}link")}
            if document[:1] == b"<"
            else set()
        )
        assert entry_rels <= {"alternate"}


def test_at_10000_posts_feed_xml_stays_small_and_the_chain_is_whole(config):
    posts = synthetic_posts(config, 10_000)
    files = feed_documents(config, posts)
    assert walk_archives(files, config.site.base_url) == [p.id for p in posts]
    current, _ = archive_slices(synthetic_posts(config, 10_000, body=PARAGRAPH * 8), config.feed.entries)
    realistic = feed_documents(config, current)["feed.xml"]  # the subscription document with ~5 KB posts
    assert len(files["feed.xml"]) < 500_000 and len(realistic) < 500_000, len(realistic)


def test_a_new_post_changes_the_subscription_document_and_adds_at_most_one_archive_page_ARCH_03(config):
    config = with_feed(config, entries=10, per_page=10)
    env = make_environment(None)
    for count in (59, 60, 61):  # 60 is where a page of 10 fills (the subscription keeps ≥ 10)
        before = site_files(config, synthetic_posts(config, count), env)
        assert site_files(config, synthetic_posts(config, count), env) == before  # deterministic
        after = site_files(config, synthetic_posts(config, count + 1), env)
        changed = {path for path in after if before.get(path) != after[path]}
        archives = {p for p in changed if p.startswith("feed/archive/")}
        assert not {p for p in archives if p in before}, "a published archive page changed"
        assert len(archives) <= 1
        allowed = {"feed.xml", "feed.json", "sitemap.xml", f"billet-{count:05d}/index.html"} | archives
        unexpected = {p for p in changed - allowed if not p.startswith(("tags/", "index.html", "page/"))}
        assert not unexpected, unexpected
        tag_changes = {p.split("/")[1] for p in changed if p.startswith("tags/")}
        assert tag_changes == ({"social-business", "entreprise-2-0"} if count % 3 == 0 else {"commerce"})


def test_a_complete_feed_for_small_sites_ARCH_04(config):
    config = with_feed(config, entries=10, complete=True)
    files = feed_documents(config, synthetic_posts(config, 35))
    root = etree.fromstring(files["feed.xml"])
    assert root.find(f"{{{HISTORY_NS}}}complete") is not None
    assert {link.get("rel") for link in root.findall(f"{ATOM}link")} == {"self", "alternate"}
    assert len(root.findall(f"{ATOM}entry")) == 35
    assert not [p for p in files if p.startswith("feed/archive/")]


def test_tag_slugs_are_safe_and_collisions_are_refused(config):
    assert tag_slug("entreprise 2.0") == "entreprise-2-0"
    assert tag_slug("Été «\u00a0collaboratif\u00a0»") == "ete-collaboratif"
    assert tag_slug("../../etc") == "etc"
    posts = synthetic_posts(config, 3)
    clash = dataclasses.replace(posts[0], tags=("Entreprise 2.0",))
    with pytest.raises(PostError, match="would share the page tags/entreprise-2-0/"):
        collect_tags([clash, *posts[1:]])


def test_tag_pages_and_feeds_with_autodiscovery(run, project, config):
    assert run("build").exit_code == 0
    public = project / "public"
    page = html.fromstring((public / "tags" / "entreprise-2-0" / "index.html").read_bytes())
    feeds = {link.get("href") for link in page.xpath("//link[@rel='alternate'][@type='application/atom+xml']")}
    assert config.site.base_url + "tags/entreprise-2-0/feed.xml" in feeds
    tag_feed = feedparser.parse((public / "tags" / "entreprise-2-0" / "feed.xml").read_bytes())
    assert not tag_feed.bozo and tag_feed.entries
    assert all(any(t.term == "entreprise-2-0" for t in entry.tags) for entry in tag_feed.entries)
    post = html.fromstring((public / "e20-petite-entreprise" / "index.html").read_bytes())
    assert config.site.base_url + "tags/entreprise-2-0/" in post.xpath("//a[@rel='tag']/@href")


def test_json_feed_1_1_carries_the_same_ids_and_content_as_atom_ATOM_18(run, project):
    assert run("build").exit_code == 0
    public = project / "public"
    document = json.loads((public / "feed.json").read_text(encoding="utf-8"))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] and isinstance(document["items"], list)  # required top-level fields
    assert document["feed_url"].endswith("/feed.json") and document["home_page_url"].startswith("https://")
    atom = feedparser.parse((public / "feed.xml").read_bytes())
    by_id = {entry.id: entry for entry in atom.entries}
    root = etree.parse(str(public / "feed.xml")).getroot()
    raw_content = {e.findtext(f"{ATOM}id"): e.findtext(f"{ATOM}content") for e in root.iter(f"{ATOM}entry")}
    assert [item["id"] for item in document["items"]] == [entry.id for entry in atom.entries]
    for item in document["items"]:
        assert isinstance(item["id"], str) and ("content_html" in item or "content_text" in item)
        assert item["content_html"] == raw_content[item["id"]]  # byte for byte what Atom carries
        assert item["url"] == by_id[item["id"]].link
        datetime.fromisoformat(item["date_published"])  # RFC 3339
    index = html.fromstring((public / "index.html").read_bytes())
    assert index.xpath("//link[@rel='alternate'][@type='application/feed+json']/@href") == [document["feed_url"]]


def test_sitemap_robots_404_and_social_tags(run, project, config):
    assert run("build").exit_code == 0
    public = project / "public"
    sitemap = etree.parse(str(public / "sitemap.xml")).getroot()
    locs = sitemap.xpath("//s:loc/text()", namespaces={"s": "http://www.sitemaps.org/schemas/sitemap/0.9"})
    assert config.site.base_url in locs and config.site.post_url("e20-petite-entreprise") in locs
    assert f"Sitemap: {config.site.base_url}sitemap.xml" in (public / "robots.txt").read_text()
    missing = html.fromstring((public / "404.html").read_bytes())
    assert missing.get("lang") == "fr" and "introuvable" in missing.text_content()
    post = html.fromstring((public / "e20-petite-entreprise" / "index.html").read_bytes())
    meta = {m.get("property") or m.get("name"): m.get("content") for m in post.xpath("//meta")}
    assert meta["og:type"] == "article" and meta["og:url"] == config.site.post_url("e20-petite-entreprise")
    assert meta["og:title"] and meta["twitter:card"] == "summary" and meta["article:published_time"]
    assert post.xpath("//link[@rel='canonical']/@href") == [config.site.post_url("e20-petite-entreprise")]
    assert post.get("lang") == "fr" and post.xpath("//article/@lang") == ["fr"]


def test_the_index_is_paginated_with_stable_urls(run, project, config):
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + "\n[feed]\nper_page = 2\n", encoding="utf-8")
    assert run("build").exit_code == 0
    public = project / "public"
    first = html.fromstring((public / "index.html").read_bytes())
    assert len(first.xpath("//ol[@class='issues']/li")) == 2
    assert first.xpath("//a[@rel='next']/@href") == [config.site.base_url + "page/2/"]
    last = html.fromstring((public / "page" / "3" / "index.html").read_bytes())
    assert len(last.xpath("//ol[@class='issues']/li")) == 1 and not last.xpath("//a[@rel='next']")
    assert last.xpath("//a[@rel='prev']/@href") == [config.site.base_url + "page/2/"]


def test_subscribe_forms_only_when_the_service_url_is_set(run, project):
    assert run("build").exit_code == 0
    assert b"<form" not in (project / "public" / "index.html").read_bytes()
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[service]\nurl = "https://lettre.example.org/"\n', encoding="utf-8"
    )
    assert run("build").exit_code == 0
    for page in ("index.html", "e20-petite-entreprise/index.html", "tags/pme/index.html"):
        form = html.fromstring((project / "public" / page).read_bytes()).xpath("//form[@class='subscribe']")
        assert form and form[0].get("action") == "https://lettre.example.org/subscribe", page


def test_feed_config_is_validated(run, project):
    toml = project / "newsletter.toml"
    original = toml.read_text(encoding="utf-8")
    for bad, field in (("entries = 0", "feed.entries"), ("complete = 'yes'", "feed.complete"),
                       ("websub_hub = 'http://hub.example/'", "feed.websub_hub")):  # fmt: skip
        toml.write_text(original + f"\n[feed]\n{bad}\n", encoding="utf-8")
        outcome = run("build")
        assert outcome.exit_code == 1 and field in outcome.stderr, (bad, outcome.stderr)


def test_two_builds_are_byte_identical_everywhere(run, project):
    write_post(project / "content" / "posts", "un-de-plus", tags="[pme, «\u00a0été\u00a0»]")
    assert run("build").exit_code == 0
    first = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    assert run("build").exit_code == 0
    assert {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()} == first
    assert any("/tags/ete/" in str(p) for p in first)
