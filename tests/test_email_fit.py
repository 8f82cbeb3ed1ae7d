"""Code, tables and images that fit a phone (issue 15): read as a phone's browser and a mail
reader's plain-text view read them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from browser import chromium, screenshot_path
from newsletter.config import load_config
from newsletter.content import TOKEN_CLASSES, read_post, render_markdown
from newsletter.plaintext import TABLE_WIDTH, html_to_text
from wide_post import CODE_LINE, SLUG, WIDE_COLUMNS, WIDE_ROWS, write_wide_post

GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / f"{SLUG}.txt"
PHONE = {"width": 375, "height": 800}


@pytest.fixture
def wide(project):
    write_wide_post(project / "content" / "posts")
    return project


def test_wide_post_fits_375px_with_the_footer_visible_in_light_and_dark(run, wide):
    outcome = run("preview", SLUG)
    assert outcome.exit_code == 0, outcome.stderr
    email_html = wide / "preview" / SLUG / "email.html"
    with chromium() as browser:
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport=PHONE, color_scheme=scheme)
            page.goto(email_html.as_uri())
            page.wait_for_load_state("load")
            # Nothing wider than the screen: neither the document nor any element of the body.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert page.evaluate("document.body.scrollWidth") <= PHONE["width"]
            widest = page.evaluate(
                """() => Math.max(...[...document.querySelectorAll('td.content > *')]
                       .map(e => e.getBoundingClientRect().right))"""
            )
            assert widest <= PHONE["width"]
            # The 120-column line wraps inside its block (pre-wrap), in a monospace face.
            pre = page.locator("pre.highlight").first
            style = pre.evaluate("p => [getComputedStyle(p).whiteSpace, getComputedStyle(p).fontFamily]")
            assert style[0] == "pre-wrap" and "monospace" in style[1]
            assert pre.evaluate("p => p.getBoundingClientRect().height") > 3 * 13 * 1.45  # several lines
            # Tables scroll inside the column rather than widen it.
            table = page.locator("td.content table").last
            assert table.evaluate("t => getComputedStyle(t).overflowX") == "auto"
            assert table.evaluate("t => t.getBoundingClientRect().right") <= PHONE["width"]
            # The image is scaled to the column, in its own proportions.
            image = page.locator("td.content img")
            box = image.bounding_box()
            assert box and box["width"] <= PHONE["width"] and abs(box["width"] / box["height"] - 1.5) < 0.02
            # The footer and its unsubscribe link are on screen once scrolled to.
            link = page.locator("td.footer a").first
            link.scroll_into_view_if_needed()
            footer = link.bounding_box()
            assert link.is_visible() and footer and 0 <= footer["x"] and footer["x"] + footer["width"] <= PHONE["width"]
            keyword = page.locator("pre.highlight span.k").first.evaluate("s => getComputedStyle(s).color")
            if scheme == "light":
                light_keyword = keyword
            else:
                assert keyword != light_keyword  # the dark palette wins over the inlined light colours
            page.screenshot(path=screenshot_path("email-fit", f"375px-{scheme}"), full_page=True)
            page.close()


def test_email_html_has_inline_colours_borders_and_image_sizes(run, wide):
    assert run("preview", SLUG).exit_code == 0
    html = (wide / "preview" / SLUG / "email.html").read_text(encoding="utf-8")
    # Highlighted at build time, colours inlined for clients that drop <style>.
    assert re.search(r'<span class="k" style="color:\s*#A90D91"', html, re.IGNORECASE)
    assert re.search(r'<pre class="highlight" style=(["\'])[^>]*white-space:\s*pre-wrap[^>]*monospace', html)
    assert re.search(r'<td style="[^"]*border:\s*1px solid #d0d7de[^"]*padding:\s*6px 10px', html)
    (image,) = re.findall(r"<img [^>]*>", html)
    assert 'width="536"' in image and 'height="357"' in image and 'alt="Une grande photo de l’équipe"' in image


def test_the_site_page_has_classes_and_the_stylesheet(run, wide):
    assert run("build").exit_code == 0
    page = (wide / "public" / SLUG / "index.html").read_text(encoding="utf-8")
    assert '<pre class="highlight"><code><span class="k">def</span>' in page
    assert ".highlight .k {" in page and "prefers-color-scheme: dark" in page
    assert 'style="color' not in page  # classes on the web, no inlined colours


def test_plain_text_part_matches_the_golden_file(wide):
    config = load_config(wide / "newsletter.toml")
    post = read_post(wide / "content" / "posts" / SLUG / "index.md", config)
    text = html_to_text(post.html)
    rendered = text.body + "\n\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(text.links, 1)) + "\n"
    if os.environ.get("NEWSLETTER_UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered, encoding="utf-8")
    assert rendered == GOLDEN.read_text(encoding="utf-8")
    # What the golden file must show, checked apart from it: the code verbatim and indented,
    # the narrow table aligned, the wide one as "column: value" lines.
    assert f"    {CODE_LINE}\n" in rendered
    assert "Besançon  France  25 °C" in rendered and "Zürich    Suisse  24 °C" in rendered
    for row in WIDE_ROWS:
        assert all(f"{name}: {value}" in rendered for name, value in zip(WIDE_COLUMNS, row, strict=True))
    assert all(len(line) <= TABLE_WIDTH for line in rendered.splitlines() if "°C" in line)


def test_sanitizer_keeps_only_pygments_classes():
    html = render_markdown(
        '<span class="k footer">a</span> <pre class="preheader highlight">b</pre> <p class="k">c</p>\n\n'
        "```python\nimport os\n```\n",
        base_url="https://example.org/",
    )
    classes = set(" ".join(re.findall(r'class="([^"]*)"', html)).split())
    assert classes <= TOKEN_CLASSES | {"highlight"} and "footer" not in html and "preheader" not in html
    assert '<span class="kn">import</span>' in html
    assert "<p>c</p>" in html  # no class outside code spans
