"""The service as its clients and its proxy meet it, through the real waitress server on loopback:
idle connections, X-Forwarded-For behind a proxy, bounded bodies, a busy ledger, a busy port.

Every wait is on a condition with a deadline (a socket timeout or a bounded poll), never a fixed sleep.
"""

from __future__ import annotations

import http.client
import os
import socket
import sqlite3
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest

from checks import assert_one_line_error
from conftest import FIXED_NOW, TOKEN_KEY
from newsletter.web import MAX_BODY_BYTES, create_app, make_server

ENV = {"NEWSLETTER_TOKEN_KEY": TOKEN_KEY}
DEADLINE = 10.0  # seconds: generous on a loaded 2-core machine, far below waitress's old 120 s stall


@contextmanager
def serving(app, **options):
    """The production server on a free loopback port, in a thread; stopped and joined afterwards."""
    server = make_server(app, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(DEADLINE)


def request(server, method: str, path: str, *, body: bytes | dict | None = None, headers: dict | None = None):
    """One request on a new connection; raises ``TimeoutError`` if unanswered within the deadline."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
    try:
        headers = dict(headers or {})
        if isinstance(body, dict):
            from urllib.parse import urlencode

            body = urlencode(body).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_for(condition, what: str, deadline: float = DEADLINE):
    """Poll ``condition`` until it is truthy or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def consent_ip(config, email: str) -> str | None:
    with sqlite3.connect(config.database_path) as db:
        row = db.execute("SELECT consent_ip FROM subscribers WHERE email = ?", [email]).fetchone()
    return row[0] if row else None


# -- connections ------------------------------------------------------------------------------------


def test_two_hundred_idle_connections_leave_new_requests_answered(config):
    """The issue's case: 200 idle sockets (over waitress's default limit of 100) and a few half-sent
    requests; a new visitor is still answered at once, not after the idle ones time out."""
    app = create_app(config, environ=ENV)
    with serving(app) as server, ExitStack() as stack:
        idle = []
        for n in range(200):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE))
            if n % 10 == 0:  # slowloris: headers started, never finished
                sock.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n")
            idle.append(sock)
        status, _, body = request(server, "GET", "/subscribe")
        assert status == 200 and b"<form" in body
        assert all(sock.fileno() != -1 for sock in idle)


def test_an_idle_connection_is_closed_after_the_channel_timeout(config):
    app = create_app(config, environ=ENV)
    with (
        serving(app, channel_timeout=1, cleanup_interval=1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n")  # and never the end
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server hung up (a timeout here raises instead)
        assert time.monotonic() - started < DEADLINE


def test_close_from_another_thread_ends_the_loop_and_every_descriptor_it_owned(config):
    """``close()`` while connections are open, from the thread that started the server: the loop
    closes its own sockets and wake-up pipe and ends; none of its descriptors is left open (a
    descriptor closed under a polling loop was closed again later, under a newer server's pipe)."""
    app = create_app(config, environ=ENV)
    assert request_once_and_close(app) == 200  # the app's own files (templates, ledger) opened once
    before = set(os.listdir("/proc/self/fd"))
    server = make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as held:
        held.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n")  # a connection the server still holds
        assert request(server, "GET", "/subscribe")[0] == 200
        server.close()
        assert not thread.is_alive(), "close() returned before the serving loop ended"
        assert held.recv(1024) == b""  # the held connection was closed by the server
    assert set(os.listdir("/proc/self/fd")) <= before


def request_once_and_close(app) -> int:
    with serving(app) as server:
        return request(server, "GET", "/subscribe")[0]


# -- behind a proxy -----------------------------------------------------------------------------------


def test_behind_a_proxy_each_forwarded_client_is_limited_and_recorded_separately(config):
    app = create_app(config, environ=ENV, rate_limit=(2, 600.0), outgoing_interval=0.05)
    with serving(app, behind_proxy=True) as server:
        first = {"X-Forwarded-For": "198.51.100.7"}
        codes = [request(server, "POST", "/subscribe", body={"email": f"a{n}@example.org"}, headers=first)[0]
                 for n in range(3)]  # fmt: skip
        assert codes == [200, 200, 429]
        # Another visitor behind the same proxy is not throttled by the first one.
        other = {"X-Forwarded-For": "203.0.113.50, 198.51.100.8"}  # a spoofed first hop, then what nginx saw
        assert request(server, "POST", "/subscribe", body={"email": "b@example.org"}, headers=other)[0] == 200
        assert wait_for(lambda: consent_ip(config, "a0@example.org"), "the worker's consent record") == "198.51.100.7"
        assert wait_for(lambda: consent_ip(config, "b@example.org"), "the worker's consent record") == "198.51.100.8"


def test_without_behind_proxy_the_forwarded_header_is_ignored(config):
    app = create_app(config, environ=ENV, rate_limit=(2, 600.0), outgoing_interval=0.05)
    with serving(app) as server:
        codes = [request(server, "POST", "/subscribe", body={"email": f"c{n}@example.org"},
                         headers={"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(3)]  # fmt: skip
        assert codes == [200, 200, 429]  # every spoofed address is the one real peer
        assert wait_for(lambda: consent_ip(config, "c0@example.org"), "the worker's consent record") == "127.0.0.1"


def test_a_proxy_header_from_an_untrusted_peer_is_ignored(config):
    app = create_app(config, environ=ENV, rate_limit=(1, 600.0), outgoing_interval=0.05)
    with serving(app, behind_proxy=True, trusted_proxy="192.0.2.1") as server:  # nginx lives elsewhere
        codes = [request(server, "POST", "/subscribe", body={"email": f"d{n}@example.org"},
                         headers={"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(2)]  # fmt: skip
        assert codes == [200, 429]


# -- bounded bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/subscribe", "/webhooks/mailgun", "/unsubscribe/x.y"])
def test_a_300_MB_body_is_refused_413_before_it_is_read(config, path):
    """Content-Length says 300 MB; we send 64 KB of it and the answer comes: nothing waited for the rest."""
    app = create_app(config, environ=ENV)
    with serving(app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        head = (f"POST {path} HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {300 * 1024 * 1024}\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode() + b"email=" + b"a" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_chunked_body_over_the_limit_is_refused_413(config):
    app = create_app(config, environ=ENV)
    with serving(app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(b"POST /webhooks/postmark HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        try:
            for _ in range(MAX_BODY_BYTES // len(piece) + 2):  # just over the limit, never 300 MB
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed early: that is the point
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_a_body_just_under_the_limit_reaches_the_app(config):
    app = create_app(config, environ=ENV)
    with serving(app) as server:
        status, _, _ = request(server, "POST", "/webhooks/mailgun", body=b"{" * 100 + b"}" * 100,
                               headers={"Content-Type": "application/json"})  # fmt: skip
        assert status in (400, 401, 404)  # refused by the webhook's own checks, not by the size limit


# -- a busy ledger, a busy port -----------------------------------------------------------------------


def test_a_busy_ledger_answers_503_with_retry_after_then_serves_again(config):
    app = create_app(config, environ=ENV)
    client = app.test_client()
    assert client.post("/subscribe", data={"email": "e@example.org"}).status_code == 200  # ledger created
    holder = sqlite3.connect(config.database_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than busy_timeout
        response = client.post("/subscribe", data={"email": "f@example.org"})
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert b"Traceback" not in response.data and b"sqlite" not in response.data.lower()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.post("/subscribe", data={"email": "f@example.org"}).status_code == 200


def test_serve_on_a_port_in_use_is_one_line(run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = run("serve", "--port", str(port))
    line = assert_one_line_error(outcome, f"port {port} is in use", "--port")
    assert line.startswith(f"Error: port {port} is in use — ")


def test_an_unexpected_error_is_a_plain_500_without_internals(project, caplog):
    from newsletter.config import load_config

    folder = project / "templates" / "web"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subscribe.html").write_text("{{ (site.title | length) // 0 }}", encoding="utf-8")
    config = load_config(project / "newsletter.toml")
    response = create_app(config, environ=ENV).test_client().get("/subscribe")
    assert response.status_code == 500
    assert response.data == b"500 Internal Server Error\n"
    assert "ZeroDivisionError" in caplog.text  # the operator's log has it; the client never does


def test_fixed_clock_is_what_the_app_records(config):
    """The request time recorded is the app's clock (so consent times are testable)."""
    app = create_app(config, environ=ENV, clock=lambda: FIXED_NOW)
    app.test_client().post("/subscribe", data={"email": "g@example.org"})
    with sqlite3.connect(config.database_path) as db:
        (stamp,) = db.execute("SELECT requested_at FROM outgoing_messages WHERE email = 'g@example.org'").fetchone()
    assert stamp == FIXED_NOW.isoformat()
