"""Issue 14 item 4: the live preview reloads Chromium when a post changes, ``--open`` says where
the files are without a display, and ``--screenshots`` writes PNGs of the right widths."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from urllib.request import urlopen

from browser import CHROMIUM, chromium
from newsletter import Newsletter
from newsletter.preview import WIDTHS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the file must be a PNG to have one)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def _wait_for(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_serve_shows_site_and_emails_and_reloads_chromium_on_an_edit(project):
    nl = Newsletter.open(project)
    live = nl.live_preview(interval=0.1)
    server, url = live.start()
    try:
        slug = nl.published()[0].slug
        post_file = next(p for p in nl.posts() if p.slug == slug).source
        index = urlopen(url, timeout=10).read().decode("utf-8")
        assert f"/email/{slug}.html" in index and f"/email/{slug}.txt" in index
        text = urlopen(f"{url}email/{slug}.txt", timeout=10).read().decode("utf-8")
        assert "<pre" in text and nl.config.email.postal_address.split(",")[0] in text
        site_page = urlopen(f"{url}site/{slug}/", timeout=10).read().decode("utf-8")
        assert f"{url}site/" in site_page and "https://claudesuper.example.org/" not in site_page.split("<body")[1]
        assert not (project / "public").exists(), "the preview builds into preview/_site, not public/"
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"{url}email/{slug}.html")
            page.evaluate("window.__before_edit = true")
            source = post_file.read_text(encoding="utf-8")
            post_file.write_text(source.replace('title: "', 'title: "Modifié — ', 1), encoding="utf-8")
            page.wait_for_function("() => window.__before_edit === undefined", timeout=30_000)  # reloaded
            _wait_for(lambda: "Modifié — " in page.content(), "the edited title in the reloaded email")
    finally:
        live.stop()
        server.shutdown()
        nl.close()


def test_open_without_a_display_says_where_the_preview_is(run, project, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    outcome = run("preview", "--open")
    assert outcome.exit_code == 0, outcome.stderr
    assert "No display to open a browser on: the preview is at " in outcome.stdout
    shown = outcome.stdout.split("the preview is at ")[1].split(" (text:")[0]
    assert Path(shown).is_file() and Path(shown).name == "email.html"


def test_screenshots_of_the_demo_issue(run, project):
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} not found: install Debian's chromium")
    outcome = run("preview", "--screenshots", "--chromium", CHROMIUM)
    assert outcome.exit_code == 0, outcome.stderr
    folder = next((project / "preview").glob("*/screenshots"))
    expected = {f"email-{w}-{s}" for w in WIDTHS for s in ("light", "dark")} | {f"site-{w}" for w in WIDTHS}
    assert {p.stem for p in folder.glob("*.png")} == expected
    for path in folder.glob("*.png"):
        width, height = png_size(path)
        assert width == WIDTHS[path.stem.split("-")[1]], path.name
        assert height > 300 and path.stat().st_size > 5_000, path.name
    # Dark is not light: the dark-mode CSS took effect.
    assert (folder / "email-desktop-dark.png").read_bytes() != (folder / "email-desktop-light.png").read_bytes()
