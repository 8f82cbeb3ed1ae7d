"""Start-up and first-render figures (issue 13): ``newsletter --help`` and ``newsletter status``
against ``python -c pass``, and one issue rendered, inlined and made into MIME in a fresh process.

Each command runs ``--runs`` times in alternation with the baseline (A B A B), so a busy
machine slows both alike; the medians and their ratio are printed.  Not part of ``make test``;
``make bench`` runs it.

    .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY = "benchmark-signing-key-0123456789-ABCDEFGHIJ-abcdefghij"

# Run in a fresh interpreter: imports, then the first render of the newest demo post, timed apart.
FIRST_RENDER = """
import json, sys, time
started = time.perf_counter()
from datetime import UTC, datetime
from newsletter.config import load_config
from newsletter.content import read_posts
from newsletter.render import Recipient, render_issue
from newsletter.templates import make_environment
imported = time.perf_counter()
config = load_config(sys.argv[1])
post = read_posts(config)[0]
env = make_environment(config.templates_dir)
ready = time.perf_counter()
issue = render_issue(config, post, env)
message = issue.message_bytes(Recipient(1, "ann@example.org", "https://example.org/u/TOKEN"), date=datetime.now(UTC))
done = time.perf_counter()
print(json.dumps({"imports": imported - started, "first_render": done - ready, "bytes": len(message)}))
"""


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def paired(label: str, command: list[str], baseline: list[str], runs: int, cwd: Path, env: dict[str, str]) -> None:
    ours, base = [], []
    for _ in range(runs):
        ours.append(timed(command, cwd, env))
        base.append(timed(baseline, cwd, env))
    a, b = statistics.median(ours), statistics.median(base)
    print(f"{label:<28} {a * 1000:7.0f} ms   python -c pass {b * 1000:5.0f} ms   ratio {a / b:4.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    env = {**os.environ, "NEWSLETTER_TOKEN_KEY": KEY}
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "demo"
        shutil.copytree(REPO / "content", project / "content")
        shutil.copy(REPO / "newsletter.toml", project / "newsletter.toml")
        newsletter = str(BIN / "newsletter")
        baseline = [sys.executable, "-c", "pass"]
        print(f"start-up, median of {options.runs} alternating runs (goal: --help <= 60 ms and <= 4x python -c pass)")
        paired("newsletter --help", [newsletter, "--help"], baseline, options.runs, project, env)
        subprocess.run([newsletter, "status"], cwd=project, env=env, check=True, capture_output=True)  # ledger made
        paired("newsletter status", [newsletter, "status"], baseline, options.runs, project, env)
        renders = []
        for _ in range(max(3, options.runs // 3)):
            out = subprocess.run([sys.executable, "-c", FIRST_RENDER, str(project / "newsletter.toml")], cwd=project,
                                 env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
            renders.append(json.loads(out))
        first = statistics.median(r["first_render"] for r in renders)
        imports = statistics.median(r["imports"] for r in renders)
        print(
            f"first issue render + inline + MIME in a fresh process: {first * 1000:.0f} ms"
            f" (imports before it {imports * 1000:.0f} ms; goal <= 50 ms)"
        )


if __name__ == "__main__":
    main()
