"""The web archive: index, one page per post, autodiscovery, template overrides, safe writes."""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import stat
from html.parser import HTMLParser

import pytest

from conftest import seed_posts, write_post

SLUGS = [
    "social-business-parcours-singulier",
    "e20-summit-poids-editeurs-choc-experiences",
    "e20-petite-entreprise",
    "social-ou-digital-business",
    "commerce-detail-google-rafler-mise",
]


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict] = []
        self.anchors: list[str] = []
        self.html_lang = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link":
            self.links.append(attrs)
        if tag == "a":
            self.anchors.append(attrs.get("href"))
        if tag == "html":
            self.html_lang = attrs.get("lang")


def parsed(path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def visible(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_build_writes_index_feed_and_five_post_pages(run, project):
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    public = project / "public"
    assert (public / "feed.xml").is_file() and (public / "index.html").is_file()
    assert sorted(p.parent.name for p in public.glob("*/index.html")) == sorted(SLUGS)


def test_index_lists_every_issue_newest_first_with_feed_autodiscovery_HTTP_05(run, project, config):
    run("build")
    page = parsed(project / "public" / "index.html")
    atom = {"rel": "alternate", "type": "application/atom+xml"}
    feeds = [link for link in page.links if all(link.get(key) == value for key, value in atom.items())]
    assert len(feeds) == 1 and feeds[0]["href"] == config.site.feed_url
    post_links = [a for a in page.anchors if a and a.rstrip("/").rsplit("/", 1)[-1] in SLUGS]
    assert post_links == [config.site.post_url(s) for s in SLUGS]
    assert page.html_lang == "fr"


def test_post_pages_hold_the_french_text_byte_for_byte(run, project):
    run("build")
    for slug, (title, lines) in zip(SLUGS, seed_posts(), strict=False):
        page = (project / "public" / slug / "index.html").read_text(encoding="utf-8")
        text = visible(page)
        assert title in text
        assert [line for line in lines if line.strip() not in text] == []
        assert "&nbsp;" not in page  # real no-break spaces, not entities


def test_post_page_has_canonical_and_feed_links(run, project, config):
    run("build")
    page = parsed(project / "public" / SLUGS[2] / "index.html")
    rels = {link.get("rel"): link.get("href") for link in page.links}
    assert rels["canonical"] == config.site.post_url(SLUGS[2])
    feeds = {link.get("type"): link.get("href") for link in page.links if link.get("rel") == "alternate"}
    assert feeds == {
        "application/atom+xml": config.site.feed_url,
        "application/feed+json": config.site.base_url + "feed.json",
    }


def test_titles_are_escaped_never_trusted_SEC_02(run, project):
    write_post(project / "content" / "posts", "balise", title='"<script>alert(1)</script> & <b>x</b>"')
    assert run("build").exit_code == 0
    page = (project / "public" / "balise" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in page


def test_project_templates_override_the_packaged_defaults(run, project):
    override = project / "templates" / "site"
    override.mkdir(parents=True)
    (override / "index.html").write_text("<p>Mon index : {{ posts|length }} billets</p>\n", encoding="utf-8")
    run("build")
    assert (project / "public" / "index.html").read_text(encoding="utf-8") == "<p>Mon index : 5 billets</p>\n"
    # Templates not overridden still come from the package.
    assert '<article lang="fr">' in (project / "public" / SLUGS[0] / "index.html").read_text(encoding="utf-8")


def test_a_failing_build_leaves_public_untouched(run, project):
    assert run("build").exit_code == 0
    before = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    broken = project / "templates" / "site"
    broken.mkdir(parents=True)
    (broken / "post.html").write_text("{% block main %}{{ post.title }\n", encoding="utf-8")
    write_post(project / "content" / "posts", "nouveau")
    outcome = run("build")
    assert outcome.exit_code == 1
    assert "post.html" in outcome.stderr and outcome.stderr.count("\n") == 1
    after = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    assert after == before


def test_unchanged_files_are_not_rewritten(run, project):
    run("build")
    feed = project / "public" / "feed.xml"
    stamp = feed.stat().st_mtime_ns
    run("build")
    assert feed.stat().st_mtime_ns == stamp


def test_no_temporary_files_are_left_behind(run, project):
    run("build")
    assert not [p for p in (project / "public").rglob("*.tmp")]


# -- file modes: a web server running as another user must read what we publish ---------------


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process umask for this test; the old one is put back after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def modes(folder):
    return {
        path.relative_to(folder).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.rglob("*")]
    }


def test_published_files_are_0644_and_folders_0755_readable_by_others(run, project, umask):
    umask(0o022)
    assert run("build").exit_code == 0
    assert run("preview").exit_code == 0
    for folder in (project / "public", project / "preview"):
        found = modes(folder)
        files = {name: mode for name, mode in found.items() if (folder / name).is_file()}
        folders = {name: mode for name, mode in found.items() if (folder / name).is_dir()}
        assert files and set(files.values()) == {0o644}, files
        assert set(folders.values()) == {0o755}, folders
        # What nginx running as www-data needs: read the files, traverse the folders.
        assert all(mode & stat.S_IROTH for mode in files.values())
        assert all(mode & stat.S_IXOTH for mode in folders.values())


def test_published_modes_honour_a_stricter_umask(run, project, umask):
    umask(0o027)
    assert run("build").exit_code == 0
    found = modes(project / "public")
    assert {mode for name, mode in found.items() if (project / "public" / name).is_file()} == {0o640}
    assert {mode for name, mode in found.items() if (project / "public" / name).is_dir()} == {0o750}


def test_files_left_0600_by_an_older_version_are_made_readable(run, project, umask):
    umask(0o022)
    assert run("build").exit_code == 0
    feed = project / "public" / "feed.xml"
    feed.chmod(0o600)
    stamp = feed.stat().st_mtime_ns
    assert run("build").exit_code == 0
    assert stat.S_IMODE(feed.stat().st_mode) == 0o644 and feed.stat().st_mtime_ns == stamp


# -- what a build no longer generates is removed, and only that ---------------------------------


def post_source(project, slug):
    single = project / "content" / "posts" / f"{slug}.md"
    return single if single.exists() else project / "content" / "posts" / slug / "index.md"


def set_front_matter(path, line):
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("\n---\n", f"\n{line}\n---\n", 1), encoding="utf-8")


def test_a_post_turned_draft_leaves_public_and_the_files_of_the_user_stay(run, project):
    public = project / "public"
    assert run("build").exit_code == 0
    (public / "a-moi.html").write_text("<p>ma page</p>", encoding="utf-8")
    (public / SLUGS[1] / "notes.txt").write_text("mes notes", encoding="utf-8")
    (public / "mes-photos").mkdir()
    (public / "mes-photos" / "vacances.jpg").write_bytes(b"\xff\xd8 not really")
    set_front_matter(post_source(project, SLUGS[1]), "draft: true")
    set_front_matter(post_source(project, SLUGS[2]), "draft: true")
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    # two pages, the bundle's image, and the tag pages and feeds only those posts had
    assert re.search(r"^Removed \d+ files no longer published: ", outcome.stdout, re.M)
    assert not (public / SLUGS[1] / "index.html").exists() and not (public / SLUGS[1] / "mosaique.png").exists()
    assert not (public / SLUGS[2]).exists()  # emptied, so removed
    assert (public / SLUGS[1] / "notes.txt").read_text(encoding="utf-8") == "mes notes"
    assert (public / "a-moi.html").is_file() and (public / "mes-photos" / "vacances.jpg").is_file()
    index = (public / "index.html").read_text(encoding="utf-8")
    assert SLUGS[2] not in index and SLUGS[0] in index
    assert sorted(p.parent.name for p in public.glob("*/index.html")) == sorted({*SLUGS} - {SLUGS[1], SLUGS[2]})


def test_a_deleted_or_renamed_post_leaves_no_old_page(run, project):
    public = project / "public"
    assert run("build").exit_code == 0
    post_source(project, SLUGS[3]).unlink()
    renamed = post_source(project, SLUGS[4])
    renamed.write_text(renamed.read_text(encoding="utf-8").replace(f"slug: {SLUGS[4]}", "slug: nouveau-nom"), "utf-8")
    assert run("build").exit_code == 0
    assert not (public / SLUGS[3]).exists() and not (public / SLUGS[4]).exists()
    assert (public / "nouveau-nom" / "index.html").is_file()
    # The next build has nothing more to remove.
    assert "Removed" not in run("build").stdout


def test_a_failing_build_removes_nothing(run, project):
    public = project / "public"
    assert run("build").exit_code == 0
    before = {p: p.read_bytes() for p in public.rglob("*") if p.is_file()}
    set_front_matter(post_source(project, SLUGS[1]), "draft: true")
    broken = project / "templates" / "site"
    broken.mkdir(parents=True)
    (broken / "index.html").write_text("{% for %}\n", encoding="utf-8")
    assert run("build").exit_code == 1
    assert {p: p.read_bytes() for p in public.rglob("*") if p.is_file()} == before


def test_the_manifest_never_leads_outside_public_or_to_a_file_not_written(run, project):
    public = project / "public"
    assert run("build").exit_code == 0
    outside = project / "precieux.txt"
    outside.write_text("à garder", encoding="utf-8")
    (public / "a-moi.html").write_text("<p>ma page</p>", encoding="utf-8")
    manifest = public / ".newsletter-manifest.json"
    listed = json.loads(manifest.read_text(encoding="utf-8"))
    assert "index.html" in listed["files"] and "a-moi.html" not in listed["files"]
    listed["files"] += ["../precieux.txt", "/etc/hostname"]
    manifest.write_text(json.dumps(listed), encoding="utf-8")
    assert run("build").exit_code == 0
    assert outside.read_text(encoding="utf-8") == "à garder" and (public / "a-moi.html").is_file()
    manifest.write_text("{ pas du json", encoding="utf-8")  # unreadable: nothing is known to be ours
    set_front_matter(post_source(project, SLUGS[1]), "draft: true")
    assert run("build").exit_code == 0
    assert (public / SLUGS[1] / "index.html").is_file()


# -- images and files beside a post (page bundles) and content/static/ --------------------------

BUNDLE = SLUGS[1]  # the demo's page bundle: content/posts/<slug>/index.md and mosaique.png


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', page)


def test_bundle_image_resolves_against_the_post_and_is_copied_ATOM_27(run, project, config):
    assert run("build").exit_code == 0
    public = project / "public"
    source = project / "content" / "posts" / BUNDLE / "mosaique.png"
    copy = public / BUNDLE / "mosaique.png"
    assert copy.read_bytes() == source.read_bytes()
    page = (public / BUNDLE / "index.html").read_text(encoding="utf-8")
    assert image_sources(page) == [config.site.post_url(BUNDLE) + "mosaique.png"]
    assert config.site.post_url(BUNDLE) == config.site.base_url + BUNDLE + "/"
    feed = html.unescape((public / "feed.xml").read_text(encoding="utf-8"))
    assert f'src="{config.site.post_url(BUNDLE)}mosaique.png"' in feed
    assert not (public / BUNDLE / "index.md").exists()


def test_email_html_points_at_the_copied_image_ATOM_27_EML_02(run, project, config):
    assert run("build").exit_code == 0
    assert run("preview", BUNDLE).exit_code == 0
    message = email.message_from_bytes(
        (project / "preview" / BUNDLE / "email.eml").read_bytes(), policy=email.policy.default
    )
    body = message.get_body(("html",)).get_content()
    sources = image_sources(body)
    assert sources and all(s.startswith("https://") for s in sources)
    for source in sources:
        assert source.startswith(config.site.base_url)
        published_copy = project / "public" / source.removeprefix(config.site.base_url)
        assert published_copy.is_file(), source


def write_bundle(project, slug: str, files: dict[str, bytes], body: str) -> None:
    folder = project / "content" / "posts" / slug
    folder.mkdir(parents=True)
    # No slug in the front matter: a bundle's slug is its folder's name.
    source = write_post(folder, slug, body=body)
    (folder / "index.md").write_text(source.read_text(encoding="utf-8").replace(f"slug: {slug}\n", ""), "utf-8")
    source.unlink()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def test_a_bundle_publishes_its_files_but_not_sources_hidden_files_or_links(run, project, config, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web", encoding="utf-8")
    write_bundle(
        project, "mon-album",
        {"photos/a.jpg": b"jpeg", "notes.md": b"brouillon", ".DS_Store": b"x", "doc.pdf": b"%PDF"},
        "![Photo](photos/a.jpg) [Le PDF](doc.pdf)",
    )  # fmt: skip
    (project / "content" / "posts" / "mon-album" / "lien.txt").symlink_to(secret)
    assert run("build").exit_code == 0
    published = project / "public" / "mon-album"
    assert sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()) == [
        "doc.pdf", "index.html", "photos/a.jpg",
    ]  # fmt: skip
    page = (published / "index.html").read_text(encoding="utf-8")
    assert image_sources(page) == [config.site.base_url + "mon-album/photos/a.jpg"]
    assert f'href="{config.site.base_url}mon-album/doc.pdf"' in page


def test_static_files_are_published_at_the_site_root(run, project, config):
    static = project / "content" / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "extra.css").write_text("body { color: #111; }\n", encoding="utf-8")
    (static / "logo.png").write_bytes((project / "content" / "posts" / BUNDLE / "mosaique.png").read_bytes())
    write_post(project / "content" / "posts", "avec-logo", body="![Logo](/logo.png)")
    assert run("build").exit_code == 0
    public = project / "public"
    assert (public / "css" / "extra.css").read_text(encoding="utf-8") == "body { color: #111; }\n"
    assert (public / "logo.png").read_bytes() == (static / "logo.png").read_bytes()
    page = (public / "avec-logo" / "index.html").read_text(encoding="utf-8")
    assert image_sources(page) == [config.site.base_url + "logo.png"]
    # A static file removed from content/static/ leaves public/ at the next build.
    (static / "css" / "extra.css").unlink()
    assert run("build").exit_code == 0
    assert not (public / "css").exists() and (public / "logo.png").is_file()


def test_a_file_that_would_replace_a_generated_one_is_a_clear_error(run, project, built):
    static = project / "content" / "static"
    static.mkdir()
    (static / "feed.xml").write_text("<rss/>", encoding="utf-8")
    before = {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()}
    outcome = run("build")
    assert outcome.exit_code == 1 and outcome.stderr.count("\n") == 1
    assert "feed.xml" in outcome.stderr and "rename or move the file" in outcome.stderr
    assert {p: p.read_bytes() for p in (project / "public").rglob("*") if p.is_file()} == before
    (static / "feed.xml").unlink()
    (project / "content" / "posts" / BUNDLE / "index.html").write_text("<p>x</p>", encoding="utf-8")
    outcome = run("build")
    assert outcome.exit_code == 1 and f"{BUNDLE}/index.html" in outcome.stderr


def test_a_caption_of_the_seed_is_kept_as_text(run, project):
    assert run("build").exit_code == 0
    page = visible((project / "public" / SLUGS[0] / "index.html").read_text(encoding="utf-8"))
    assert "Jon Husband et Claude Super" in page and "Quand Jon Husband parle de Wirearchy" in page


def test_a_bundle_and_a_file_with_the_same_slug_are_refused_naming_both(run, project, built):
    write_bundle(project, "double", {"a.png": b"png"}, "Bonjour.")
    write_post(project / "content" / "posts", "double")
    outcome = run("build")
    assert outcome.exit_code == 1 and outcome.stderr.count("\n") == 1
    assert "slug 'double' is already used by" in outcome.stderr
    assert "double/index.md" in outcome.stderr and "double.md" in outcome.stderr
    assert (project / "public" / "feed.xml").read_bytes() == built
