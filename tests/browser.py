"""Headless Chromium (Debian's package) driven by Playwright, and a static server for public/.

Playwright's own browser download is not used: CI installs Debian's chromium
(see .ci/run) and we point Playwright at that binary.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach Google's hosts at start.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(os.environ.get("NEWSLETTER_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output"))


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; fails (never skips) with the install command when it is missing."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        raise AssertionError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium);"
            " make test does when run as root"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass


@contextmanager
def static_server(folder_holder: dict) -> Iterator[str]:
    """Serve ``folder_holder["folder"]`` on 127.0.0.1; yields the base URL before the folder exists."""

    class Handler(_QuietHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder_holder["folder"]), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def screenshot_path(test_name: str, step: str) -> Path:
    folder = OUTPUT / "screenshots" / test_name
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{step}.png"


__all__ = ["chromium", "static_server", "screenshot_path"]
