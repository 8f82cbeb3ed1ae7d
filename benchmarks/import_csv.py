"""Time ``subscribers import`` of a 100,000-line CSV (issue 13 item 8: goal ≤ 3 s).

Run: ``.venv/bin/python benchmarks/import_csv.py [LINES]``.  Prints the wall time of the
library call (``import_csv``) into a fresh ledger, then of a second import of the same file
(every line a duplicate), then of the whole CLI command in its own process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from newsletter.store import Ledger
from newsletter.subscribers import import_csv


def main(lines: int) -> None:
    text = "email,status\n" + "".join(
        f"reader{n}@example.org,{'unsubscribed' if n % 50 == 0 else 'active'}\n" for n in range(lines)
    )
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "ledger.db")
        for label in ("fresh ledger", "all duplicates"):
            started = time.perf_counter()
            report = import_csv(ledger, io.StringIO(text), source="bench", now=now)
            elapsed = time.perf_counter() - started
            left = ", ".join(f"{status.value} {count}" for status, count in report.left.items())
            print(f"import_csv {lines} lines, {label}: {elapsed:.2f} s ({lines / elapsed:,.0f} lines/s);"
                  f" added {report.added}, duplicates {report.duplicate}, suppressed ({left})")  # fmt: skip
        ledger.close()
        project = Path(folder) / "site"
        project.mkdir()
        repo = Path(__file__).resolve().parent.parent
        (project / "newsletter.toml").write_text((repo / "newsletter.toml").read_text(encoding="utf-8"))
        (project / "people.csv").write_text(text)
        command = Path(sys.executable).with_name("newsletter")
        env = {**os.environ, "NEWSLETTER_TOKEN_KEY": "benchmark-key-0123456789-ABCDEFGHIJ-abcdefg"}
        started = time.perf_counter()
        done = subprocess.run([str(command), "subscribers", "import", "people.csv"], cwd=project, env=env,
                              capture_output=True, text=True)  # fmt: skip
        elapsed = time.perf_counter() - started
        print(f"newsletter subscribers import ({lines} lines, whole process): {elapsed:.2f} s — {done.stdout.strip()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
