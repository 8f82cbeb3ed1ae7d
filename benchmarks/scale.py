"""Scale figures: build time for many posts, send time and peak memory for many subscribers.

Each scenario runs in its own process so its peak RSS is its own; the table compares them
side by side.  Not part of `make test`.

    .venv/bin/python benchmarks/scale.py            # 1k/10k posts, 10k/100k subscribers
    .venv/bin/python benchmarks/scale.py --quick    # 200/1k posts, 1k/10k subscribers
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def make_project(root: Path, posts: int) -> Path:
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    folder = root / "content" / "posts"
    folder.mkdir(parents=True)
    sample = (REPO / "content" / "posts" / "e20-petite-entreprise.md").read_text(encoding="utf-8")
    body = sample.split("---", 2)[2]
    start = datetime(2012, 1, 1, 8, tzinfo=timezone(timedelta(hours=1)))
    for n in range(posts):
        date = (start + timedelta(hours=n)).isoformat()
        folder.joinpath(f"billet-{n}.md").write_text(
            f'---\ntitle: "Billet n°{n} : « essai »"\nid: "urn:uuid:00000000-0000-4000-8000-{n:012d}"\n'
            f'date: "{date}"\n---\n{body}',
            encoding="utf-8",
        )
    return root


def scenario_build(posts: int) -> dict:
    from newsletter.config import load_config
    from newsletter.content import published, read_posts
    from newsletter.site import build_site
    from newsletter.templates import make_environment

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(make_project(Path(tmp), posts) / "newsletter.toml")
        started = time.perf_counter()
        all_posts = published(read_posts(config), NOW)
        parsed = time.perf_counter()
        files = build_site(config, all_posts, make_environment(config.templates_dir)).files
        done = time.perf_counter()
        feed_kb = len(files["feed.xml"]) / 1000
    return {"read_s": parsed - started, "build_s": done - parsed, "feed_kb": feed_kb}


class CountingProvider:
    """Builds every recipient's complete MIME message, then drops it: the engine's own cost."""

    name = "counting"

    def __init__(self):
        from newsletter.providers.base import BATCH, Capabilities

        self.capabilities = Capabilities(BATCH, 1000, True, False, True, "ours")
        self.bytes = 0

    def send_chunk(self, request):
        from newsletter.providers.base import DeliveryResult

        results = []
        for recipient in request.recipients:
            self.bytes += len(request.issue.message_bytes(recipient, date=request.date))
            results.append(DeliveryResult(recipient.subscriber_id, True, request.issue.message_id(recipient)))
        return results

    def lookup_chunk(self, request):
        return None

    def close(self):
        pass


def scenario_send(subscribers: int) -> dict:
    from newsletter.config import Secret, load_config
    from newsletter.content import read_posts
    from newsletter.send import execute, plan_send
    from newsletter.store import Ledger
    from newsletter.templates import make_environment

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
        shutil.copytree(REPO / "content", root / "content")
        config = load_config(root / "newsletter.toml")
        ledger = Ledger(config.database_path)
        with ledger.db.conn:
            ledger.db.conn.executemany(
                "INSERT INTO subscribers (email, status, source, created_at, updated_at)"
                " VALUES (?, 'active', 'bench', ?, ?)",
                ((f"reader{n}@example.org", NOW.isoformat(), NOW.isoformat()) for n in range(subscribers)),
            )
        post = read_posts(config)[0]
        provider = CountingProvider()
        started = time.perf_counter()
        plan = plan_send(config, ledger, post, make_environment(config.templates_dir), provider, subscribers=subscribers)
        rendered = time.perf_counter()
        report = execute(config, ledger, plan, provider, [Secret("k", "bench-key")], lambda: NOW)
        done = time.perf_counter()
        assert report.finished and report.counts == {"accepted": subscribers}, report
    return {
        "render_once_ms": (rendered - started) * 1000,
        "send_s": done - rendered,
        "per_message_us": (done - rendered) / subscribers * 1e6,
        "mime_mb": provider.bytes / 1e6,
    }


def child(kind: str, size: int) -> None:
    figures = scenario_build(size) if kind == "build" else scenario_send(size)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def run(kind: str, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(size)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    posts = (200, 1000) if args.quick else (1000, 10000)
    people = (1000, 10000) if args.quick else (10000, 100000)
    print(f"{'build':<8}{'posts':>8}{'read s':>10}{'build s':>10}{'feed KB':>10}{'peak MB':>10}")
    for size in posts:
        f = run("build", size)
        print(f"{'':<8}{size:>8}{f['read_s']:>10.2f}{f['build_s']:>10.2f}{f['feed_kb']:>10.0f}{f['peak_rss_mb']:>10.0f}")
    print(f"\n{'send':<8}{'people':>8}{'render ms':>10}{'send s':>10}{'µs/msg':>10}{'MIME MB':>10}{'peak MB':>10}")
    for size in people:
        f = run("send", size)
        print(
            f"{'':<8}{size:>8}{f['render_once_ms']:>10.0f}{f['send_s']:>10.2f}{f['per_message_us']:>10.0f}"
            f"{f['mime_mb']:>10.0f}{f['peak_rss_mb']:>10.0f}"
        )


if __name__ == "__main__":
    main()
