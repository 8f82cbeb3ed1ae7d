"""The demo posts are the user's own text: every seed line must survive byte for byte."""

from __future__ import annotations

import html
import re

from conftest import FIXED_NOW, seed_posts
from newsletter.content import SLUG_PATTERN, published, read_posts


def _visible_text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_five_demo_posts_with_exact_titles_newest_first(config):
    posts = read_posts(config)
    assert [p.title for p in posts] == [title for title, _ in seed_posts()]
    assert [p.date for p in posts] == sorted((p.date for p in posts), reverse=True)
    assert len(published(posts, FIXED_NOW)) == 5


def test_every_seed_line_is_in_the_rendered_html(config):
    for post, (_title, lines) in zip(read_posts(config), seed_posts(), strict=False):
        text = _visible_text(post.html)
        missing = [line for line in lines if line.strip() not in text]
        assert not missing, f"{post.slug} lost: {missing[:3]}"


def test_front_matter_is_complete_and_permanent(config):
    for post in read_posts(config):
        assert SLUG_PATTERN.match(post.slug)
        assert post.id.startswith(("urn:uuid:", "tag:"))
        assert post.slug not in post.id  # minted, not derived from the URL
        assert post.date.tzinfo is not None and post.date.utcoffset() is not None
        assert post.author == "Claude Super"
        assert post.tags and post.summary
        assert "IMG_" not in post.html  # photo names of the seed, whose photos are not in the repository
        # No broken images: each one is a file of the post's own bundle, published at its URL.
        for source in re.findall(r'<img[^>]* src="([^"]+)"', post.html):
            assert post.bundle is not None and source.startswith(post.url), source
            assert (post.bundle / source.removeprefix(post.url)).is_file()


def test_lists_become_markdown_lists(config):
    by_slug = {p.slug: p for p in read_posts(config)}
    assert by_slug["social-business-parcours-singulier"].html.count("<li>") == 12
    numbered = by_slug["e20-petite-entreprise"].html
    assert "<ol>" in numbered and numbered.count("<li>") == 12
