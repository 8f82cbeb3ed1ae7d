"""Shared machinery of the fake provider servers: HTTP plumbing, records, faults.

A fake is a :class:`FakeServer` subclass that implements ``handle(req)`` (the
provider's happy and validation paths) and ``error(status, ...)`` (the
provider's error body for a given HTTP status).  This module owns everything
else: the threaded server on ``127.0.0.1:0``, the record of every request, the
per-recipient ``delivered`` list, and fault injection.

Faults apply to the next matching requests, oldest injected first; a request
that no queued fault matches may still get a random one from ``fault_rate``.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT = "provider-default"  # Fault.retry_after: whatever the provider documents for a 429
TRANSIENT_KINDS = ("429", "500", "503", "drop", "accept_then_drop")
KINDS = ("http", "slow", "accept_then_drop", "drop", "partial")


class _QuietServer(ThreadingHTTPServer):
    """A client that dies mid-request (the chaos tests kill senders) is normal here, not news."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class Fault:
    """One failure to apply to the next ``times`` matching requests (``times=None``: all of them).

    ``method`` and ``path`` (a regular expression searched in the URL path) narrow
    which requests match; by default every request does, except ``partial`` faults,
    which only match the fake's batch-send endpoints.  Build them with the class
    methods below rather than by hand.
    """

    kind: str
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: Any = DEFAULT
    seconds: float = 0.0
    process: bool = True
    indexes: tuple[int, ...] = ()
    addresses: tuple[str, ...] = ()
    error_code: int | None = None
    times: int | None = 1
    method: str | None = None
    path: str | None = None

    @classmethod
    def http(cls, status: int, *, body: Any = None, headers: dict[str, str] | None = None,
             retry_after: Any = DEFAULT, **match: Any) -> Fault:
        """Answer ``status`` with the provider's error body (or ``body``) without processing.

        ``retry_after``: ``DEFAULT`` = as the provider documents it for 429 (Buttondown and
        Resend send ``Retry-After``; Mailgun and Postmark do not); ``None`` = no header;
        a number = that header value.
        """
        return cls("http", status=status, body=body, headers=dict(headers or {}), retry_after=retry_after, **match)

    @classmethod
    def slow(cls, seconds: float, *, process: bool = True, **match: Any) -> Fault:
        """Wait ``seconds`` before answering.  ``process=True``: the request is processed and
        recorded first (it lands even if the client times out); ``False``: nothing is processed
        and the connection is closed after the wait."""
        return cls("slow", seconds=seconds, process=process, **match)

    @classmethod
    def accept_then_drop(cls, **match: Any) -> Fault:
        """Process and record the request as accepted, then close the socket without answering."""
        return cls("accept_then_drop", **match)

    @classmethod
    def drop(cls, **match: Any) -> Fault:
        """Close the socket without processing or answering."""
        return cls("drop", **match)

    @classmethod
    def partial(cls, *, indexes: tuple[int, ...] | list[int] = (), addresses: tuple[str, ...] | list[str] = (),
                error_code: int | None = None, **match: Any) -> Fault:
        """Fail some messages of a batch while the rest succeed (provider-specific meaning).

        A message fails when its position is in ``indexes`` or one of its recipients is in
        ``addresses``.  Only Postmark (per-item ``ErrorCode``) and Resend (permissive batch
        ``errors`` / strict 422) support it.
        """
        return cls("partial", indexes=tuple(indexes), addresses=tuple(a.lower() for a in addresses),
                   error_code=error_code, **match)

    def matches(self, req: Request) -> bool:
        if self.method and self.method.upper() != req.method:
            return False
        return not self.path or re.search(self.path, req.path) is not None


@dataclass
class Request:
    """What a fake's ``handle`` gets: the parsed request, and hooks for the base."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    fault: Fault | None = None  # a ``partial`` fault to apply, if any
    after: list[Callable[[Response], None]] = field(default_factory=list)

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(obj).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


@dataclass
class Recorded:
    """One request the fake received, whatever became of it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    status: int | None = None  # None when the connection was closed without an answer
    fault: str | None = None  # the fault kind applied ("http", "drop", ...), None if none
    processed: bool = False  # the provider logic ran (the request may have been accepted)
    response: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Delivery:
    """One message the provider accepted for one recipient."""

    address: str  # bare addr-spec, as the client wrote it
    message_id: str
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)  # tags, metadata, stream... per provider


def bare_addresses(*values: str) -> list[str]:
    """Addr-specs from header-style values (``"Ann <a@x>, b@y"``)."""
    return [addr for _name, addr in getaddresses(list(values)) if addr]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end after this

    def setup(self) -> None:
        super().setup()
        self.server.fake._connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.fake._connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def _dispatch(self) -> None:
        self.server.fake._serve(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class FakeServer:
    """Base of every fake: start with ``with Fake() as fake:`` (or ``start()``/``stop()``)."""

    name = "fake"
    default_retry_after: int | None = None  # Retry-After on a 429 fault unless told otherwise
    partial_path: str | None = None  # where ``partial`` faults apply; None: not supported
    max_request_bytes: int | None = None  # larger bodies get the provider's 413

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults: deque[Fault] = deque()
        self._rate: tuple[float, random.Random, tuple[str, ...], Any, str | None, str | None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.requests: list[Recorded] = []
        self.delivered: list[Delivery] = []
        self.latency = 0.0  # seconds every answer waits after processing (network and provider time)
        self.crashes: list[str] = []  # tracebacks of bugs in the fake itself (answered 500)

    # -- life cycle ---------------------------------------------------------
    def start(self) -> FakeServer:
        self._stopping.clear()
        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, args=(0.01,), name=f"{self.name}-server",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes "slow" answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._connections):  # kept-alive client connections end too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- faults -------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        for fault in faults:
            if fault.kind not in KINDS:
                raise ValueError(f"unknown fault kind {fault.kind!r}")
            if fault.kind == "partial":
                if self.partial_path is None:
                    raise ValueError(f"{self.name} has no partial failures")
                fault.path = fault.path or self.partial_path
        with self._lock:
            self._faults.extend(faults)

    def fault_rate(self, p: float, *, seed: int = 0, kinds: tuple[str, ...] | list[str] = TRANSIENT_KINDS,
                   retry_after: Any = 0, method: str | None = None, path: str | None = None) -> None:
        """Give each matching request probability ``p`` of a random fault from ``kinds``.

        Kinds: an HTTP status as a string ("429", "500", "503", ...), "drop" or
        "accept_then_drop".  Seeded, so a sequential client sees the same faults on every
        run.  ``p=0`` turns it off.  Queued ``inject`` faults take precedence.
        """
        for kind in kinds:
            if not (kind.isdigit() or kind in ("drop", "accept_then_drop")):
                raise ValueError(f"unknown random fault kind {kind!r}")
        with self._lock:
            self._rate = (p, random.Random(seed), tuple(kinds), retry_after, method, path) if p > 0 else None

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rate = None

    def _take_fault(self, req: Request) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(req):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
            if self._rate is None:
                return None
            p, rng, kinds, retry_after, method, path = self._rate
            probe = Fault("drop", method=method, path=path)
            if not probe.matches(req) or rng.random() >= p:
                return None
            kind = rng.choice(kinds)
        if kind.isdigit():
            return Fault.http(int(kind), retry_after=retry_after)
        return Fault(kind)

    # -- records ------------------------------------------------------------
    def count_by_recipient(self) -> Counter:
        """How many messages each address (lower-cased) was delivered."""
        with self._lock:
            return Counter(d.address.lower() for d in self.delivered)

    def deliver(self, delivery: Delivery) -> None:
        with self._lock:
            self.delivered.append(delivery)

    # -- to implement -------------------------------------------------------
    def handle(self, req: Request) -> Response:
        raise NotImplementedError

    def error(self, status: int, message: str | None = None, *, retry_after: Any = DEFAULT) -> Response:
        raise NotImplementedError

    def decorate(self, req: Request, resp: Response) -> None:
        """Add headers every answer carries (rate-limit counters...)."""

    def retry_after_header(self, retry_after: Any, status: int) -> dict[str, str]:
        if retry_after == DEFAULT:
            retry_after = self.default_retry_after if status == 429 else None
        return {} if retry_after is None else {"Retry-After": str(retry_after)}

    # -- serving ------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        parts = urlsplit(h.path)
        req = Request(h.command, parts.path, parse_qs(parts.query, keep_blank_values=True), h.headers, body)
        rec = Recorded(req.method, req.path, req.query, req.headers, body)
        with self._lock:
            self.requests.append(rec)
        fault = self._take_fault(req)
        rec.fault = fault.kind if fault else None
        kind = rec.fault
        if kind == "drop" or (kind == "slow" and not fault.process):
            if kind == "slow":
                self._stopping.wait(fault.seconds)
            h.close_connection = True
            return
        if kind == "http":
            resp = self.error(fault.status, retry_after=fault.retry_after)
            if fault.body is not None:
                other = Response.text(0, fault.body) if isinstance(fault.body, str) else Response.json(0, fault.body)
                resp.body, resp.headers["Content-Type"] = other.body, other.headers["Content-Type"]
            resp.headers.update(fault.headers)
        else:
            req.fault = fault if kind == "partial" else None
            too_big = False
            try:
                with self._lock:
                    too_big = self.max_request_bytes is not None and len(body) > self.max_request_bytes
                    resp = self.error(413) if too_big else self.handle(req)
            except Exception:
                self.crashes.append(traceback.format_exc())
                print(f"{self.name} crashed:\n{self.crashes[-1]}", file=sys.stderr)
                resp = self.error(500)
            rec.processed = not too_big
            if kind == "slow":
                self._stopping.wait(fault.seconds)
            elif self.latency:
                self._stopping.wait(self.latency)
            with self._lock:
                for hook in req.after:
                    hook(resp)
            if kind == "accept_then_drop":
                h.close_connection = True
                return
        with self._lock:
            self.decorate(req, resp)
        rec.status, rec.response = resp.status, resp.body
        try:
            h.send_response(resp.status)
            for name, value in resp.headers.items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(resp.body)))
            h.end_headers()
            if req.method != "HEAD":
                h.wfile.write(resp.body)
        except OSError:  # the client gave up (timeout): nothing to do
            h.close_connection = True


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(h.rfile.read(size))
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
