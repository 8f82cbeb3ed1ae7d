"""The archive as people use it, in headless Chromium against the real service (waitress):
a feed opened in the browser explains itself, a tag page lists its posts, and the subscribe
form on a post page really subscribes."""

from __future__ import annotations

import sqlite3
import threading

from browser import chromium, screenshot_path
from conftest import TOKEN_KEY
from newsletter.config import load_config
from newsletter.web import create_app, make_server
from test_browser_subscribe import free_port

ADDRESS = "lou.lectrice@example.org"


def test_feed_tag_page_and_subscribe_form_in_a_browser(project, run):
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    toml = project / "newsletter.toml"
    text = toml.read_text(encoding="utf-8").replace("https://claudesuper.example.org/", base)
    toml.write_text(text + f'\n[service]\nurl = "{base}"\n', encoding="utf-8")
    config = load_config(toml)
    assert run("build").exit_code == 0
    server = make_server(create_app(config, environ={"NEWSLETTER_TOKEN_KEY": TOKEN_KEY}), host="127.0.0.1", port=port)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        with chromium() as browser:
            page = browser.new_page()
            # The feed, opened by a person: the XSLT turns it into a page that says what a feed is.
            page.goto(base + "feed.xml")
            body = page.inner_text("body")
            assert "Ceci est un flux" in body and base + "feed.xml" in body
            assert "Social Business : un parcours singulier" in body
            page.screenshot(path=screenshot_path("site", "1-feed"))
            # A tag page, reached from a post.
            page.goto(base + "e20-petite-entreprise/")
            page.click("a[rel=tag][href$='/tags/pme/']")
            assert page.url == base + "tags/pme/"
            assert "Billets classés" in page.inner_text("h1")
            assert page.locator("ol.issues li").count() >= 1
            page.screenshot(path=screenshot_path("site", "2-tag"))
            # The subscribe form at the bottom of a post page.
            page.goto(base + "e20-petite-entreprise/")
            page.fill("#subscribe-email", ADDRESS)
            page.click("form.subscribe button[type=submit]")
            assert "vérifiez votre boîte" in page.inner_text("main")
            page.screenshot(path=screenshot_path("site", "3-subscribed"))
    finally:
        server.close()
    with sqlite3.connect(config.database_path) as db:
        row = db.execute("SELECT status, consent_source FROM subscribers WHERE email = ?", [ADDRESS]).fetchone()
    assert row is not None and row[0] == "pending"
