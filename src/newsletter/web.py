"""The subscribe / confirm / unsubscribe service, bounce webhooks, and the archive (Flask + waitress).

The only importer of Flask, Werkzeug and waitress.  Rules it keeps:

- a GET never changes anything (link scanners prefetch): confirm and unsubscribe links
  show a page with a button, and only its POST acts;
- unsubscribe POSTs need nothing but the signed token: no cookie, no CSRF token, no
  redirect, 200 every time, RFC 8058 one-click bodies included (LIST-04, SEC-10);
- the subscribe form answers the same, doing the same work, whatever the address was:
  it only records the request; the confirmation mail (or the audience provider's own
  subscribe call) is sent by a background worker (:mod:`newsletter.outgoing`);
- it is rate limited per client address, which behind a proxy comes from
  ``X-Forwarded-For`` (waitress's trusted-proxy settings);
- request bodies are bounded (413), a busy ledger answers 503 with ``Retry-After``, and no
  exception ever shows a traceback;
- webhooks change nothing until the provider's signature (or credentials) check out.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.security import safe_join

from .config import Config
from .errors import LedgerError, NewsletterError, SubscriberError
from .outgoing import OutgoingWorker, flush_outgoing
from .project import Newsletter
from .templates import labels, render
from .tokens import CONFIRM, UNSUBSCRIBE, InvalidToken
from .webhooks import MAX_WEBHOOK_BYTES, BadPayload, BadSignature, WebhookCall, accept_call

ATOM_TYPE = "application/atom+xml; charset=utf-8"
MEDIA_TYPES = {
    ".xml": "application/xml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".xsl": "text/xsl; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Forms and webhooks are a few KB; anything bigger is refused (413) before it is read.
MAX_BODY_BYTES = 256 * 1024
BUSY_RETRY_AFTER = 5  # seconds a client should wait when the ledger is busy (503)

log = logging.getLogger("newsletter.web")


def media_type(file: Path, accept: str) -> str:
    """The Content-Type for a file of the archive.

    Feeds are Atom (HTTP-01) for feed readers; a browser navigating to one (it asks for
    text/html) gets the same bytes as plain XML, the only type for which browsers apply
    the feed's XSLT, so a person sees a page explaining how to subscribe.
    """
    is_feed = file.suffix == ".xml" and (file.name == "feed.xml" or file.parent.name == "archive")
    if is_feed:
        return MEDIA_TYPES[".xml"] if "text/html" in accept else ATOM_TYPE
    return MEDIA_TYPES.get(file.suffix, "application/octet-stream")


class RateLimiter:
    """At most ``limit`` calls per ``window`` seconds per key (in memory, one process)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.calls: dict[str, deque] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self.lock:
            if len(self.calls) > 100_000:  # keep memory bounded under a flood of addresses
                self.calls.clear()
            calls = self.calls.setdefault(key, deque())
            while calls and now - calls[0] > self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                return False
            calls.append(now)
            return True


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    project: Newsletter | Config,
    *,
    clock: Callable[[], datetime] | None = None,
    environ: Mapping[str, str] | None = None,
    provider_loader: Callable | None = None,
    rate_limit: tuple[int, float] = (5, 600.0),
    outgoing_interval: float = 5.0,
) -> Flask:
    """The WSGI application over a project (or a config); checks the signing key at once.

    Every request works on ``project.for_thread()``: the same project with a ledger
    connection of its own.  ``app.extensions["newsletter.outgoing"]`` is its (not yet
    started) worker that sends what the subscribe form queues; :func:`make_server` starts
    it with the server.
    """
    from .providers import provider_class

    if isinstance(project, Config):
        project = Newsletter(project, clock=clock or _utc_now, environ=environ)
    config, clock, environ = project.config, project.clock, project.environ
    project.signing_keys()  # a missing or weak key is a startup error, not a failed request
    env = project.environment()
    words = labels(config.site.language)
    limiter = RateLimiter(*rate_limit)
    app = Flask("newsletter", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY_BYTES
    app.config["MAX_FORM_PARTS"] = 100
    etags: dict[tuple[str, int, int], str] = {}
    worker = OutgoingWorker(
        lambda: flush_outgoing(config, environ=environ, clock=clock, provider_factory=provider_loader),
        interval=outgoing_interval,
    )
    app.extensions["newsletter.outgoing"] = worker

    # Create and migrate the ledger now, once: concurrent first opens would race on the schema.
    with project.for_thread() as nl:
        _ = nl.ledger  # opening it migrates

    def page(template: str, status: int = 200, **context) -> Response:
        html = render(env, f"web/{template}", site=config.site, labels=words, feed_url=config.site.feed_url, **context)
        response = Response(html, status=status, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # tokens in URLs must not leak onward
        return response

    def invalid_link() -> Response:
        return page("message.html", 400, message=words["invalid_link"])

    def plain(text: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
        response = Response(text + "\n", status=status, mimetype="text/plain", headers=dict(headers or {}))
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Werkzeug's own answers (413 too large, 400 malformed, 405…) as one plain line, headers kept.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return plain(f"{error.code} {error.name}", error.code or 500, headers)

    @app.errorhandler(LedgerError)
    def ledger_error(error: LedgerError):
        if _is_busy(error):
            log.warning("ledger busy: %s", error.one_line())
            busy = "503 Service Unavailable: busy, try again shortly"
            return plain(busy, 503, {"Retry-After": str(BUSY_RETRY_AFTER)})
        log.error("ledger error: %s", error.one_line())
        return plain("503 Service Unavailable", 503, {"Retry-After": str(BUSY_RETRY_AFTER * 12)})

    @app.errorhandler(RecursionError)
    def too_deep(error: RecursionError):
        # Only a pathological body (JSON nested thousands deep) gets a parser this far: the client's fault.
        log.warning("refused a request nested too deeply on %s %s", request.method, request.path)
        return plain("400 Bad Request: nested too deeply", 400)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # A bug, never something a client can cause on purpose: logged in full, answered without internals.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return plain("500 Internal Server Error", 500)

    @app.get("/subscribe")
    def subscribe_form():
        return page("subscribe.html")

    @app.post("/subscribe")
    def subscribe():
        if not limiter.allow(request.remote_addr or "?"):
            return page("message.html", 429, message=words["slow_down"])
        if request.form.get("website"):  # a field people never see: only robots fill it
            return page("message.html", message=words["subscribe_done"])
        try:
            # The same single write whether the address is new, pending, active or suppressed;
            # no provider call: the worker does the state-dependent work later.
            with project.for_thread() as nl:
                nl.subscribers.request(
                    request.form.get("email", ""), source="form", client_ip=request.remote_addr or "",
                    user_agent=request.headers.get("User-Agent", ""),
                )  # fmt: skip
        except SubscriberError:
            return page("subscribe.html", 400, error=words["invalid_address"])
        worker.notify()
        return page("message.html", message=words["subscribe_done"])

    @app.get("/confirm/<token>")
    def confirm_page(token: str):
        try:
            with project.for_thread() as nl:
                nl.subscribers.holder_of(token, purpose=CONFIRM)
        except InvalidToken:
            return invalid_link()
        return page("confirm.html", token=token)

    @app.post("/confirm/<token>")
    def confirm(token: str):
        try:
            with project.for_thread() as nl:
                nl.subscribers.confirm(token)
        except InvalidToken:
            return invalid_link()
        return page("message.html", message=words["confirm_done"])

    @app.get("/unsubscribe/<token>")
    def unsubscribe_page(token: str):
        try:
            with project.for_thread() as nl:
                subscriber = nl.subscribers.holder_of(token, purpose=UNSUBSCRIBE)
        except InvalidToken:
            return invalid_link()
        return page("unsubscribe.html", token=token, done=subscriber["status"] != "active")

    @app.post("/unsubscribe/<token>")
    def unsubscribe(token: str):
        # RFC 8058: the body is "List-Unsubscribe=One-Click" (form or multipart) or our button's form;
        # the signed token is the only authorization needed.
        try:
            with project.for_thread() as nl:
                nl.subscribers.unsubscribe(token)
        except InvalidToken:
            return invalid_link()
        return page("message.html", message=words["unsubscribe_done"])

    @app.post("/webhooks/<provider>")
    def webhook(provider: str):
        # Each provider proves its calls its own way (verify_webhook); the replay guard is shared.
        if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
            return Response("too large\n", status=413, mimetype="text/plain")
        body = request.stream.read(MAX_WEBHOOK_BYTES + 1)
        if len(body) > MAX_WEBHOOK_BYTES:
            return Response("too large\n", status=413, mimetype="text/plain")
        call = WebhookCall(body, {name.lower(): value for name, value in request.headers.items()})
        try:
            factory = provider_class(provider)
            if not factory.capabilities.webhooks:
                return Response("not found\n", status=404, mimetype="text/plain")
            settings = config.provider_settings(provider)
            with project.for_thread() as nl:

                def apply(events: list) -> None:
                    for event in events:
                        nl.subscribers.suppress(event.address, event.reason)

                accept_call(
                    factory, call, settings=settings, environ=environ, ledger=nl.ledger, now=clock(), apply=apply
                )
        except NewsletterError:
            return Response("webhook not configured\n", status=404, mimetype="text/plain")
        except BadSignature:
            return Response("invalid signature\n", status=401, mimetype="text/plain")
        except BadPayload:
            return Response("not an event\n", status=400, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    @app.get("/")
    @app.get("/<path:path>")
    def archive(path: str = ""):
        target = safe_join(str(config.public_dir), path)
        if target is None:
            return Response("not found\n", status=404, mimetype="text/plain")
        file = Path(target)
        if file.is_dir():
            file = file / "index.html"
        if not file.is_file():
            return Response("not found\n", status=404, mimetype="text/plain")
        stat = file.stat()
        cache_key = (str(file), stat.st_mtime_ns, stat.st_size)
        if cache_key not in etags:
            etags[cache_key] = hashlib.sha256(file.read_bytes()).hexdigest()[:32]
        response = Response(file.read_bytes(), content_type=media_type(file, request.headers.get("Accept", "")))
        response.vary.add("Accept")
        response.set_etag(etags[cache_key])  # strong: the hash of the bytes (HTTP-02)
        response.last_modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        response.cache_control.max_age = 300
        response.cache_control.public = True
        # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3); werkzeug applies both rules.
        return response.make_conditional(request)

    return app


def _is_busy(error: LedgerError) -> bool:
    """A ledger another process is writing (SQLite "database is locked"/"busy"): worth a retry."""
    if getattr(error, "busy", False) or "busy" in type(error).__name__.lower():
        return True
    return "locked" in error.message or "busy" in error.message


class Server:
    """waitress bound to its port, and the outgoing worker: ``.run()`` serves, ``.close()`` stops both.

    ``close()`` is safe from any thread.  While ``run()`` is serving in another thread, the
    sockets and waitress's wake-up pipe are closed by the serving loop itself, and ``close()``
    waits for the loop to end: a descriptor closed under a loop that is still polling it can be
    closed a second time later, by then under a file that a new server has just opened.
    """

    def __init__(self, waitress_server: Any, worker: OutgoingWorker | None) -> None:
        self.waitress = waitress_server
        self.worker = worker
        self._state = threading.Lock()
        self._serving_thread: int | None = None
        self._closed = False
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self.waitress.effective_port

    def __getattr__(self, name: str):
        # Everything else (``socket``, ``effective_host``…) is waitress's own, for callers that used it bare.
        return getattr(self.waitress, name)

    def run(self) -> None:
        with self._state:
            if self._closed:
                return
            self._serving_thread = threading.get_ident()
        if self.worker is not None:
            self.worker.start()
        try:
            self.waitress.run()
        finally:
            self._stopped.set()
            if self.worker is not None:
                self.worker.stop()

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving, release the port, stop the outgoing worker; waits up to ``timeout``
        seconds for a loop serving in another thread to end."""
        from waitress import wasyncore
        from waitress.trigger import trigger as WakeUp

        with self._state:
            if self._closed:
                return
            self._closed = True
            serving_elsewhere = self._serving_thread not in (None, threading.get_ident())
        # One server has ``map``; several (``MultiSocketServer``) share one.  Either way every
        # socket, connection and the wake-up pipe is in it; waitress's own ``close()`` on a single
        # server leaves open connections (and the loop) running.
        loop_map = getattr(self.waitress, "map", None)
        if loop_map is None:
            loop_map = self.waitress._map
        # ``dict(...)``: one copy, taken while the loop may be adding a connection.
        wake_up = next((d for d in dict(loop_map).values() if isinstance(d, WakeUp)), None)
        if serving_elsewhere and wake_up is not None and not self._stopped.is_set():
            try:
                wake_up.pull_trigger(lambda: wasyncore.close_all(loop_map))
            except OSError:  # the loop ended and closed the pipe between the two checks
                pass
            self._stopped.wait(timeout)
        else:
            wasyncore.close_all(loop_map)
        self.waitress.task_dispatcher.shutdown()
        if self.worker is not None:
            self.worker.stop()


def make_server(
    app: Flask,
    *,
    host: str,
    port: int,
    threads: int = 8,
    behind_proxy: bool = False,
    proxy_hops: int = 1,
    trusted_proxy: str = "127.0.0.1",
    connection_limit: int = 1000,
    channel_timeout: float = 30,
    cleanup_interval: float = 5,
) -> Server:
    """The production WSGI server (waitress), bound and ready, with the app's outgoing worker.

    Limits (why): idle or slow connections cost a socket, never a thread, and are dropped
    after ``channel_timeout`` seconds, so hundreds of them cannot starve new visitors;
    ``poll()`` instead of ``select()`` lifts the 1024-descriptor ceiling; bodies over
    :data:`MAX_BODY_BYTES` are answered 413 by waitress before they are read.  With
    ``behind_proxy`` the client address is taken from ``X-Forwarded-For`` as written by the
    last ``proxy_hops`` proxies, and only when the connection comes from ``trusted_proxy``.
    Raises :class:`NewsletterError` when the port cannot be bound (in use, not allowed).
    """
    from waitress.server import create_server

    options: dict = {
        "host": host, "port": port, "threads": threads, "ident": "newsletter", "backlog": 1024,
        "connection_limit": connection_limit, "channel_timeout": channel_timeout, "cleanup_interval": cleanup_interval,
        "asyncore_use_poll": True, "max_request_body_size": MAX_BODY_BYTES, "max_request_header_size": 64 * 1024,
        "expose_tracebacks": False,
    }  # fmt: skip
    if behind_proxy:
        options.update(
            trusted_proxy=trusted_proxy, trusted_proxy_count=proxy_hops,
            trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"}, clear_untrusted_proxy_headers=True,
        )  # fmt: skip
    try:
        waitress_server = create_server(app, **options)
    except OSError as error:
        raise _bind_error(error, host, port) from None
    return Server(waitress_server, app.extensions.get("newsletter.outgoing"))


def _bind_error(error: OSError, host: str, port: int) -> NewsletterError:
    if error.errno == errno.EADDRINUSE:
        return NewsletterError(
            f"port {port} is in use", hint=f"stop the program listening on {host}:{port}, or choose another with --port"
        )
    if error.errno == errno.EACCES:
        return NewsletterError(f"port {port} needs privileges", hint="use a port above 1023 behind nginx (see deploy/)")
    reason = error.strerror or str(error)
    return NewsletterError(f"cannot listen on {host}:{port} ({reason})", hint="check --host and --port")


def serve(app: Flask, **options) -> None:
    """Serve until interrupted."""
    make_server(app, **options).run()
