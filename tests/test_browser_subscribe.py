"""The whole audience loop in real headless Chromium against the production WSGI server (waitress):
subscribe → confirmation email → confirm → an issue → unsubscribe, the database checked at each step."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import sqlite3
import threading
import time

from browser import chromium, screenshot_path
from conftest import TOKEN_KEY
from newsletter.config import load_config
from newsletter.web import create_app, make_server

ADDRESS = "zoe.lectrice@example.org"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(config) -> str | None:
    with sqlite3.connect(config.database_path) as db:
        row = db.execute("SELECT status FROM subscribers WHERE email = ?", [ADDRESS]).fetchone()
    return row[0] if row else None


def messages(config, prefix: str = ""):
    for path in sorted((config.root / "outbox" / "new").glob(f"{prefix}*.eml")):
        yield email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def wait_for(condition, what: str, deadline: float = 15.0):
    """The confirmation is sent by the service's background worker: wait for it, boundedly."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_subscribe_confirm_receive_and_unsubscribe_in_a_browser(project, run):
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    toml = project / "newsletter.toml"
    text = toml.read_text(encoding="utf-8").replace("https://claudesuper.example.org/", base)
    toml.write_text(text, encoding="utf-8")
    config = load_config(toml)
    assert run("build").exit_code == 0
    server = make_server(create_app(config, environ={"NEWSLETTER_TOKEN_KEY": TOKEN_KEY}), host="127.0.0.1", port=port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with chromium() as browser:
            page = browser.new_page()
            # 1. The form.
            page.goto(base + "subscribe")
            page.fill("#email", ADDRESS)
            page.screenshot(path=screenshot_path("audience", "1-subscribe"))
            page.click("button[type=submit]")
            assert "vérifiez votre boîte" in page.inner_text("main")
            assert wait_for(lambda: status(config) == "pending", "the worker to record the request")
            page.screenshot(path=screenshot_path("audience", "2-check-inbox"))

            # 2. The confirmation email is in the outbox; its link shows a button, the GET changes nothing.
            (confirmation,) = wait_for(lambda: list(messages(config, "confirm-")), "the confirmation mail")
            assert str(confirmation["To"]) == ADDRESS
            link = re.search(r"https?://\S+/confirm/\S+", confirmation.get_body(("plain",)).get_content()).group(0)
            page.goto(link)
            page.screenshot(path=screenshot_path("audience", "3-confirm-page"))
            assert status(config) == "pending"
            page.click("#confirm")
            assert "abonnement est confirmé" in page.inner_text("main")
            assert status(config) == "active"

            # 3. An issue goes out; it carries a personal unsubscribe link.
            assert run("send", "--yes").exit_code == 0
            (issue,) = [
                m for m in messages(config) if str(m["To"]) == ADDRESS and "confirm" not in str(m["Message-ID"])
            ]
            unsubscribe = str(issue["List-Unsubscribe"]).split(">")[0].lstrip("<")
            html = issue.get_body(("html",)).get_content()
            assert f'href="{unsubscribe}"' in html

            # 4. The unsubscribe link: a page with a button; only the button acts.
            page.goto(unsubscribe)
            page.screenshot(path=screenshot_path("audience", "4-unsubscribe-page"))
            assert status(config) == "active"
            page.click("#unsubscribe")
            assert "désabonné" in page.inner_text("main")
            assert status(config) == "unsubscribed"
            page.screenshot(path=screenshot_path("audience", "5-unsubscribed"))
            # Opening the link again shows the settled state and changes nothing.
            page.goto(unsubscribe)
            assert "désabonné" in page.inner_text("main") and status(config) == "unsubscribed"
    finally:
        server.close()
