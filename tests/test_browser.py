"""The pages people click, in real headless Chromium: the archive, a post, the email's links."""

from __future__ import annotations

from browser import chromium, screenshot_path, static_server
from conftest import seed_posts

NEWEST = "social-business-parcours-singulier"


def serve_project_at(project, base_url: str) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('base_url = "https://claudesuper.example.org/"', f'base_url = "{base_url}"')
    config.write_text(text, encoding="utf-8")


def test_reader_opens_the_archive_then_a_post(run, project):
    holder = {"folder": project / "public"}
    with static_server(holder) as base_url, chromium() as browser:
        serve_project_at(project, base_url)
        assert run("build").exit_code == 0
        page = browser.new_page()
        page.goto(base_url)
        assert page.title() == "Le blog de Claude Super"
        titles = page.locator("ol.issues li > a").all_inner_texts()
        assert titles == [title for title, _ in seed_posts()]
        page.screenshot(path=screenshot_path("archive", "1-index"), full_page=True)
        page.locator("ol.issues li > a").nth(2).click()
        page.wait_for_url(f"{base_url}e20-petite-entreprise/")
        assert page.locator("article h1").inner_text() == seed_posts()[2][0]
        assert page.locator("article ol li").count() == 12
        page.screenshot(path=screenshot_path("archive", "2-post"), full_page=True)
        # The feed autodiscovery link resolves to the served feed.
        feed = page.locator('link[rel="alternate"][type="application/atom+xml"]').get_attribute("href")
        assert feed == f"{base_url}feed.xml"
        response = page.request.get(feed)
        assert response.ok and b"<feed" in response.body()


def test_email_view_in_browser_link_opens_the_web_copy(run, project):
    holder = {"folder": project / "public"}
    with static_server(holder) as base_url, chromium() as browser:
        serve_project_at(project, base_url)
        assert run("build").exit_code == 0
        assert run("preview", NEWEST).exit_code == 0
        page = browser.new_page()
        page.goto((project / "preview" / NEWEST / "email.html").as_uri())
        page.screenshot(path=screenshot_path("email", "1-issue"), full_page=True)
        # The preheader is hidden; the title and the footer are visible.
        assert not page.locator("div.preheader").is_visible()
        assert page.locator("td.content h1").inner_text() == seed_posts()[0][0]
        assert page.locator("td.footer").is_visible()
        width = page.locator("table.container").evaluate("t => t.getBoundingClientRect().width")
        assert 590 <= width <= 600
        page.locator("td.topbar a").click()
        page.wait_for_url(f"{base_url}{NEWEST}/")
        assert page.locator("article h1").inner_text() == seed_posts()[0][0]
        page.screenshot(path=screenshot_path("email", "2-web-copy"), full_page=True)


def test_email_is_readable_on_a_phone_width(run, project):
    """INL-01: the media query kept in <style> still wins over inlined widths."""
    assert run("preview", NEWEST).exit_code == 0
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.goto((project / "preview" / NEWEST / "email.html").as_uri())
        width = page.locator("table.container").evaluate("t => t.getBoundingClientRect().width")
        padding = page.locator("td.content").evaluate("c => getComputedStyle(c).paddingLeft")
        assert width <= 375 and padding == "16px"
        page.screenshot(path=screenshot_path("email", "3-phone"), full_page=True)


BUNDLE = "e20-summit-poids-editeurs-choc-experiences"


def test_an_image_beside_a_post_loads_on_the_web_page_and_in_the_email(run, project):
    """Page bundles: the browser fetches the copied image (naturalWidth > 0), from the page and the email."""
    holder = {"folder": project / "public"}
    with static_server(holder) as base_url, chromium() as browser:
        serve_project_at(project, base_url)
        assert run("build").exit_code == 0
        assert run("preview", BUNDLE).exit_code == 0
        page = browser.new_page()
        for url in (f"{base_url}{BUNDLE}/", (project / "preview" / BUNDLE / "email.html").as_uri()):
            page.goto(url)
            image = page.locator(f'img[src="{base_url}{BUNDLE}/mosaique.png"]')
            assert image.count() == 1, url
            image.evaluate("i => i.complete || new Promise(done => { i.onload = i.onerror = done; })")
            assert image.evaluate("i => i.naturalWidth") == 240 and image.evaluate("i => i.naturalHeight") == 120
        page.screenshot(path=screenshot_path("bundle", "1-email-with-image"), full_page=True)
