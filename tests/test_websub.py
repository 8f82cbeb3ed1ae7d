"""WebSub: `build --ping` tells a real (local) hub which feeds changed, with the spec's publish POST."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import feedparser


@contextmanager
def hub(failures: int = 0):
    """A hub on loopback that checks each request and answers 503 ``failures`` times first."""
    received: list[dict] = []
    state = {"failures": failures}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if state["failures"] > 0:
                state["failures"] -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            received.append(
                {"type": self.headers.get("Content-Type"), "form": parse_qs(body.decode("ascii"), strict_parsing=True)}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hub", received
    finally:
        server.shutdown()
        server.server_close()


def use_hub(project, url: str) -> None:
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + f'\n[feed]\nwebsub_hub = "{url}"\n', encoding="utf-8")


def test_build_ping_notifies_the_hub_of_each_changed_feed(run, project, config):
    with hub(failures=2) as (url, received):
        use_hub(project, url)
        outcome = run("build", "--ping")
        assert outcome.exit_code == 0, outcome.stderr
        topics = sorted(r["form"]["hub.url"][0] for r in received)
        assert {r["type"] for r in received} == {"application/x-www-form-urlencoded"}
        assert {r["form"]["hub.mode"][0] for r in received} == {"publish"}
        assert config.site.feed_url in topics and config.site.base_url + "feed.json" in topics
        assert config.site.base_url + "tags/pme/feed.xml" in topics
        assert not [t for t in topics if "/archive/" in t]
        received.clear()
        assert run("build", "--ping").exit_code == 0
        assert received == []  # nothing changed, nobody is bothered


def test_every_feed_links_its_hub(run, project):
    with hub() as (url, _):
        use_hub(project, url)
        assert run("build").exit_code == 0
    for path in ("feed.xml", "tags/pme/feed.xml"):
        links = feedparser.parse((project / "public" / path).read_bytes()).feed.links
        assert [link.href for link in links if link.rel == "hub"] == [url], path


def test_a_hub_that_refuses_is_one_clear_line_after_the_build(run, project):
    use_hub(project, "http://127.0.0.1:9/hub")  # nothing listens on the discard port
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace("[send]\n", "[send]\nretry_attempts = 2\nretry_base_delay = 0\n"),
        encoding="utf-8",
    )
    outcome = run("build", "--ping")
    assert outcome.exit_code == 1
    assert outcome.stderr.count("\n") == 1 and "websub_hub" in outcome.stderr and "feeds were built" in outcome.stderr
    assert (project / "public" / "feed.xml").exists()
