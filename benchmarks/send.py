"""Send figures: 10k and 100k subscribers through the outbox, SMTP and a batch HTTP provider.

Each row runs in its own process (its peak RSS is its own) through the public API
(``Newsletter.open(...).plan()`` then ``.send(...)``), against lean local sinks:

- SMTP: an aiosmtpd server on loopback, in a process of its own, that accepts and drops every message
  (it reads DATA line by line and is slower than the sender); ``smtp_lean``: the same send to a
  sink that speaks just enough SMTP, so the sender's own rate shows;
- HTTP: a Mailgun-shaped endpoint (1,000 recipients per call), in a process of its own, that
  answers after 50 ms, standing in for the network round trip; it keeps nothing (the test
  fakes' per-recipient bookkeeping would be measured instead of us);
- personalisation: each recipient's complete MIME message (token signing included), in memory.

"plan s" is the plan and its preflight (what ``newsletter send`` shows before the editor says
yes); "send s" is the delivery; "conns" the SMTP connections used side by side (``[providers.smtp]
connections``: its default unless ``--connections`` says otherwise).  Not part of ``make test``;
``make bench`` runs it.  ``--quick`` runs 1k and 10k.

    .venv/bin/python benchmarks/send.py [--quick] [--only outbox,smtp,smtp_lean,http,personalise] [--connections N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)
RTT_SECONDS = 0.050
# 258 bits (the send refuses a signing key under 256), fixed so runs compare.
TOKEN_KEY = "bench-key-0123456789-ABCDEFGHIJ-abcdefghijk"
GOALS = {  # issue 13's table
    "outbox": "100k <= 30 s",
    "smtp": ">= 1,000 msg/s",
    "smtp_lean": ">= 1,000 msg/s (the sender alone)",
    "http": "100k <= 2 s",
    "personalise": ">= 10,000 msg/s",
}
KINDS = tuple(GOALS)


def make_project(root: Path, subscribers: int, provider: str, table: str) -> Path:
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    config = root / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace('provider = "outbox"', f'provider = "{provider}"')
    if provider != "outbox":  # the outbox's table is already there
        text += f"\n[providers.{provider}]\n{table}\n"
    config.write_text(text, encoding="utf-8")
    from newsletter.store import Ledger

    ledger = Ledger(root / "newsletter.db")
    stamp = NOW.isoformat()
    with ledger.db.conn:
        ledger.db.conn.executemany(
            "INSERT INTO subscribers (email, status, source, created_at, updated_at, consent_at, confirmed_at)"
            " VALUES (?, 'active', 'bench', ?, ?, ?, ?)",
            ((f"reader{n}@example.org", stamp, stamp, stamp, stamp) for n in range(subscribers)),
        )
    ledger.close()
    return root


def send_through(root: Path) -> dict:
    from newsletter import Newsletter

    with Newsletter.open(root, clock=lambda: NOW) as project:
        started = time.perf_counter()
        planned = project.plan()
        # As `newsletter send` does: the plan and its preflight are shown before the editor says
        # yes, so they are timed apart ("plan s"); "send s" is the delivery of every message.
        project.check_planned(planned)
        planned_at = time.perf_counter()
        cpu_before = _cpu_seconds()
        report = project.send(planned)
        done = time.perf_counter()
        cpu = _cpu_seconds() - cpu_before
        side_by_side = planned.provider.capabilities.concurrency
    accepted = report.counts.get("accepted", 0)
    assert report.finished, report
    return {"messages": accepted, "plan_s": planned_at - started, "send_s": done - planned_at, "cpu_s": cpu,
            "concurrency": side_by_side}  # fmt: skip


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (every sink runs in a process of its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scenario_outbox(root: Path, size: int) -> dict:
    make_project(root, size, "outbox", 'path = "outbox"')
    figures = send_through(root)
    figures["files"] = sum(1 for _ in (root / "outbox" / "new").iterdir())
    return figures


def scenario_smtp(root: Path, size: int, sink: str = "--smtp-sink") -> dict:
    # The sink runs in its own process: aiosmtpd reads DATA line by line in Python, which
    # costs more than the sender's own work per message, and in this process it would
    # share the sender's interpreter lock (and its peak RSS).
    sink = subprocess.Popen([sys.executable, __file__, sink], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        port = int(sink.stdout.readline().split()[1])
        table = f'host = "127.0.0.1"\nport = {port}\nsecurity = "none"'
        if os.environ.get("BENCH_SMTP_CONNECTIONS"):  # otherwise the provider's default
            table += f"\nconnections = {int(os.environ['BENCH_SMTP_CONNECTIONS'])}"
        make_project(root, size, "smtp", table)
        figures = send_through(root)
    finally:
        sink.stdin.close()  # the sink's signal to stop and count
        figures_line = sink.stdout.readline()
        sink.wait()
    figures["received"] = int(figures_line.split()[1])
    return figures


def scenario_smtp_lean(root: Path, size: int) -> dict:
    return scenario_smtp(root, size, sink="--lean-smtp-sink")


def lean_smtp_sink() -> None:
    """Just enough SMTP to take messages: DATA is read up to its end marker in one search, not line
    by line as aiosmtpd does (which costs more than the sender per message).  Like :func:`smtp_sink`."""
    import asyncio

    received = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        writer.write(b"220 lean ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-lean\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")  # dot-stuffing keeps this marker out of the message
                received += 1
                writer.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, limit=2**24)
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(f"received {received}", flush=True)

    asyncio.run(main())


def smtp_sink() -> None:
    """An aiosmtpd server on a free loopback port that accepts and drops every message.

    Prints ``port N``, serves until its stdin closes, then prints ``received N``.
    """
    from aiosmtpd.controller import Controller

    class Sink:
        received = 0

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
            Sink.received += 1
            return "250 OK"

    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()
    controller.stop()
    print(f"received {Sink.received}", flush=True)


class LeanMailgun(BaseHTTPRequestHandler):
    """Answers a Mailgun send after RTT_SECONDS; counts recipients by the ``to`` parts, keeps nothing."""

    recipients = 0
    calls = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's hook name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(RTT_SECONDS)
        with LeanMailgun.lock:
            LeanMailgun.calls += 1
            LeanMailgun.recipients += body.count(b'name="to"')
        answer = json.dumps({"id": f"<{time.monotonic_ns()}@bench.example.org>", "message": "Queued."}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def http_sink() -> None:
    """The lean Mailgun-shaped server on a free loopback port, in a process of its own (a real
    provider is not in the sender's process, nor under its interpreter lock).

    Prints ``port N``, serves until its stdin closes, then prints ``calls N received N``.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), LeanMailgun)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    print(f"calls {LeanMailgun.calls} received {LeanMailgun.recipients}", flush=True)


def scenario_http(root: Path, size: int) -> dict:
    sink = subprocess.Popen([sys.executable, __file__, "--http-sink"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{int(sink.stdout.readline().split()[1])}"
        os.environ["NEWSLETTER_MAILGUN_API_KEY"] = "bench-key"
        make_project(root, size, "mailgun", f'domain = "mg.example.org"\nbase_url = "{url}"')
        figures = send_through(root)
    finally:
        sink.stdin.close()  # the sink's signal to stop and count
        counted = sink.stdout.readline().split()
        sink.wait()
    figures.update(calls=int(counted[1]), received=int(counted[3]))
    return figures


def scenario_personalise(root: Path, size: int) -> dict:
    from newsletter.config import Secret, load_config
    from newsletter.content import read_posts
    from newsletter.recipients import RecipientMaker
    from newsletter.render import render_issue
    from newsletter.templates import make_environment

    make_project(root, 0, "outbox", 'path = "outbox"')
    config = load_config(root / "newsletter.toml")
    issue = render_issue(config, read_posts(config)[0], make_environment(config.templates_dir))
    make_recipient = RecipientMaker(config, [Secret("k", TOKEN_KEY)], NOW)  # as the send engine signs
    started = time.perf_counter()
    octets = 0
    for n in range(1, size + 1):
        octets += len(issue.message_bytes(make_recipient(n, f"reader{n}@example.org"), date=NOW))
    done = time.perf_counter()
    return {"messages": size, "send_s": done - started, "plan_s": 0.0, "mime_mb": octets / 1e6}


def child(kind: str, size: int) -> None:
    os.environ["NEWSLETTER_TOKEN_KEY"] = TOKEN_KEY
    with tempfile.TemporaryDirectory() as folder:
        figures = globals()[f"scenario_{kind}"](Path(folder), size)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def run(kind: str, size: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(size)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k and 10k instead of 10k and 100k")
    parser.add_argument("--sizes", help="comma-separated subscriber counts (instead of 10k and 100k)")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--connections", type=int, help="SMTP connections side by side (default: the provider's)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--smtp-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lean-smtp-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.http_sink:
        http_sink()
        return
    if args.smtp_sink:
        smtp_sink()
        return
    if args.lean_smtp_sink:
        lean_smtp_sink()
        return
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if args.connections is not None:
        os.environ["BENCH_SMTP_CONNECTIONS"] = str(args.connections)  # read by the child processes
    sizes = (1000, 10000) if args.quick else (10000, 100000)
    if args.sizes:
        sizes = tuple(int(size) for size in args.sizes.split(","))
    print(f"{'send':<12}{'people':>8}{'plan s':>9}{'send s':>9}{'cpu s':>8}{'msg/s':>10}{'peak MB':>9}"
          f"{'conns':>6}  goal")  # fmt: skip
    for kind in args.only.split(","):
        for size in sizes:
            f = run(kind, size)
            if "error" in f:
                print(f"{kind:<12}{size:>8}  failed: {f['error']}")
                continue
            rate = f["messages"] / f["send_s"] if f["send_s"] else float("inf")
            conns = f.get("concurrency", "-") if kind.startswith("smtp") else "-"
            print(f"{kind:<12}{size:>8}{f['plan_s']:>9.2f}{f['send_s']:>9.2f}{f.get('cpu_s', f['send_s']):>8.2f}"
                  f"{rate:>10.0f}{f['peak_rss_mb']:>9.0f}{conns:>6}  {GOALS[kind]}")  # fmt: skip
            sys.stdout.flush()


if __name__ == "__main__":
    main()
