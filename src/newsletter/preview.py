"""Preview as readers see it: a live local server, and screenshots from headless Chromium.

:class:`LivePreview` serves the site (built into ``preview/_site``, so ``public/`` is left alone)
and every issue's email, HTML and text, on 127.0.0.1 with the stdlib's ``http.server``.  A
watcher thread polls the modification times of ``content/`` and the templates; on a change it
rebuilds and bumps a version number.  Each served page carries a small script that asks
``/__version`` for that number and reloads when it changed.

:func:`take_screenshots` renders an issue's email at desktop (800 px) and phone (375 px) width,
light and dark, and the site's post page at both widths, into PNGs.  It drives Chromium with
Playwright (the ``preview`` extra); every request outside the site's own URLs is refused, so a
screenshot never reaches the network and the site's URLs are answered from the local build.
"""

from __future__ import annotations

import dataclasses
import html as html_escaping
import mimetypes
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from .config import Config
from .errors import NewsletterError, UsageError
from .templates import PACKAGED_TEMPLATES

if TYPE_CHECKING:
    from .project import Newsletter

SITE_FOLDER = "_site"
WIDTHS = {"desktop": 800, "phone": 375}
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")
# Chromium reaches Google's hosts at start unless told not to; a preview talks to nobody.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip
RELOAD_SCRIPT = """<script>/* newsletter preview: reload when a post or template changes */
(function () {{ var seen = "{version}";
  setInterval(function () {{
    fetch("/__version", {{cache: "no-store"}}).then(function (r) {{ return r.text(); }})
      .then(function (now) {{ if (now !== seen) location.reload(); }}).catch(function () {{}});
  }}, {interval_ms});
}})();</script>"""


def has_display() -> bool:
    """Whether a browser window can open here: always on macOS and Windows, on other systems
    only with an X11 or Wayland display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def preview_config(config: Config) -> Config:
    """``config`` with the site built into ``preview/_site`` instead of ``public/``."""
    return dataclasses.replace(config, public_dir=config.preview_dir / SITE_FOLDER)


def watched_state(folders: list[Path]) -> tuple:
    """Every file under ``folders`` with its modification time and size: equal tuples, no change."""
    entries = []
    for folder in folders:
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    info = os.stat(path)
                except OSError:  # removed while walking: the next poll sees it gone
                    continue
                entries.append((path, info.st_mtime_ns, info.st_size))
    return tuple(entries)


def _build_preview_site(project: Newsletter) -> Config:
    """Build ``project``'s site into preview/_site; returns the config that points there."""
    from .project import Newsletter

    config = preview_config(project.config)
    with Newsletter(config, clock=project.clock) as site:
        site.build()
    return config


class LivePreview:
    """The site and every issue's email, rebuilt when a post or template changes.

    ``open_project`` returns a fresh :class:`~newsletter.Newsletter` (posts are read anew each
    time).  Call :meth:`refresh` once, then :meth:`serve` (blocking) or :meth:`start` (a thread).
    """

    def __init__(self, open_project: Callable, *, interval: float = 0.5) -> None:
        self.open_project = open_project
        self.interval = interval
        self.version = 0
        self.error = ""
        self.slugs: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        with open_project() as project:
            self.config = preview_config(project.config)
        self._folders = [self.config.content_dir, self.config.templates_dir, PACKAGED_TEMPLATES]
        self._state: tuple = ()

    # -- rebuilding ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the site into preview/_site and list the issues; a bad post is shown, not raised."""
        state = watched_state([f for f in self._folders if f.is_dir()])
        with self._lock:
            try:
                with self.open_project() as project:
                    _build_preview_site(project)
                    self.slugs = [(p.slug, p.title) for p in project.posts()]
                self.error = ""
            except NewsletterError as error:
                self.error = error.one_line()
            self._state = state
            self.version += 1

    def watch(self) -> None:
        """Poll the posts and templates until :meth:`stop`; refresh on any change."""
        while not self._stop.wait(self.interval):
            if watched_state([f for f in self._folders if f.is_dir()]) != self._state:
                self.refresh()

    def stop(self) -> None:
        self._stop.set()

    # -- serving ---------------------------------------------------------------------------

    def make_server(self, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
        preview = self

        class Handler(_PreviewHandler):
            live = preview

        return ThreadingHTTPServer((host, port), Handler)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
        """Refresh, then serve and watch in daemon threads; returns the server and its URL."""
        self.refresh()
        server = self.make_server(host, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=self.watch, daemon=True).start()
        return server, f"http://{host}:{server.server_address[1]}/"

    def reload_script(self) -> str:
        return RELOAD_SCRIPT.format(version=self.version, interval_ms=int(self.interval * 1000))

    def email(self, slug: str, part: str) -> str:
        """The email of ``slug`` as a reader gets it (``part`` html or text), rendered now."""
        from .recipients import preview_recipient
        from .render import render_issue
        from .templates import make_environment

        with self.open_project() as project:
            post = next((p for p in project.posts() if p.slug == slug), None)
            if post is None:
                raise UsageError(f"no post {slug!r}", hint="pick one on the preview's index page")
            issue = render_issue(project.config, post, make_environment(project.config.templates_dir))
            try:
                signing_keys = project.signing_keys()
            except NewsletterError:
                signing_keys = None
            recipient = preview_recipient(project.config, signing_keys, project.clock())
            return issue.personal_html(recipient) if part == "html" else issue.personal_text(recipient)


class _PreviewHandler(BaseHTTPRequestHandler):
    live: LivePreview

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        live = self.live
        if path == "/__version":
            return self._send(200, str(live.version).encode(), "text/plain; charset=utf-8")
        if path == "/":
            return self._page(200, self._index())
        if path.startswith("/email/"):
            return self._email(path[len("/email/") :])
        if path.startswith("/site/"):
            return self._site(path[len("/site/") :])
        return self._page(404, "<p>Not found. <a href='/'>Index</a></p>")

    def _index(self) -> str:
        live = self.live
        rows = "".join(
            f"<li>{html_escaping.escape(title)} — <a href='/email/{slug}.html'>email</a> ·"
            f" <a href='/email/{slug}.txt'>text</a> · <a href='/site/{slug}/'>page</a></li>"
            for slug, title in live.slugs
        )
        error = f"<p role='alert'><strong>{html_escaping.escape(live.error)}</strong></p>" if live.error else ""
        head = "<!DOCTYPE html><title>Preview</title><h1>Preview</h1>"
        return f"{head}{error}<p><a href='/site/'>The site</a></p><ul>{rows}</ul>"

    def _email(self, name: str) -> None:
        slug, _, extension = name.rpartition(".")
        if extension not in ("html", "txt"):
            return self._page(404, "<p>Not found.</p>")
        try:
            body = self.live.email(slug, "html" if extension == "html" else "text")
        except NewsletterError as error:
            return self._page(500, f"<p role='alert'>{html_escaping.escape(error.one_line())}</p>")
        if extension == "txt":
            text = html_escaping.escape(body)
            body = f"<!DOCTYPE html><meta charset='utf-8'><pre style='white-space: pre-wrap'>{text}</pre>"
        self._page(200, body)

    def _site(self, relative: str) -> None:
        root = self.live.config.public_dir.resolve()
        target = (root / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        if root not in target.parents or not target.is_file():
            return self._page(404, "<p>Not in the site. <a href='/'>Index</a></p>")
        data = target.read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind == "text/html":
            # The site's absolute links lead back into the preview, not to the live site.
            own = f"http://{self.headers.get('Host', 'localhost')}/site/"
            return self._page(200, data.decode("utf-8").replace(self.live.config.site.base_url, own))
        self._send(200, data, kind)

    def _page(self, status: int, html: str) -> None:
        script = self.live.reload_script()
        body = html.replace("</body>", script + "</body>", 1) if "</body>" in html else html + script
        self._send(status, body.encode("utf-8"), "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


# -- screenshots -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screenshots:
    """The PNGs :func:`take_screenshots` wrote, by name (``email-phone-dark``, ``site-desktop``…)."""

    folder: Path
    files: dict[str, Path]


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium to drive: ``explicit``, $NEWSLETTER_CHROMIUM, or one on the PATH."""
    for candidate in (explicit, os.environ.get("NEWSLETTER_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    raise UsageError("no Chromium found for screenshots", hint="install chromium, or pass --chromium PATH")


def _site_file(config: Config, url: str) -> Path | None:
    path = unquote(urlsplit(url).path)
    base = urlsplit(config.site.base_url).path
    target = (config.public_dir / path[len(base) :]).resolve() if path.startswith(base) else None
    if target is not None and target.is_dir():
        target = target / "index.html"
    root = config.public_dir.resolve()
    return target if target is not None and root in target.parents and target.is_file() else None


def _shots() -> Iterator[tuple[str, str, int, Literal["light", "dark"]]]:
    """(file name, email or site, width, colour scheme) of every screenshot."""
    for width_name, width in WIDTHS.items():
        for scheme in SCHEMES:
            yield f"email-{width_name}-{scheme}", "email", width, scheme
        yield f"site-{width_name}", "site", width, "light"


def take_screenshots(project: Newsletter, slug: str | None = None, *, chromium: str | None = None) -> Screenshots:
    """PNGs of ``slug``'s email (800 and 375 px, light and dark) and of its page on the site
    (both widths) into ``preview/SLUG/screenshots/``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UsageError("screenshots need Playwright", hint="pip install 'newsletter[preview]'") from None
    executable = find_chromium(chromium)
    report = project.preview(slug)
    config = _build_preview_site(project)
    html = (report.folder / "email.html").read_text(encoding="utf-8")
    page_url = report.post.url
    folder = report.folder / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def answer(route: Any) -> None:  # a playwright Route
        local = _site_file(config, route.request.url)
        if local is None:
            route.abort()
        else:
            route.fulfill(path=str(local))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            for name, what, width, scheme in _shots():
                context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme,
                                              device_scale_factor=1)  # fmt: skip
                page = context.new_page()
                page.route("**/*", answer)
                if what == "email":
                    page.set_content(html, wait_until="load")
                else:
                    page.goto(page_url, wait_until="load")
                target = folder / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                written[name] = target
                context.close()
        finally:
            browser.close()
    return Screenshots(folder, written)
