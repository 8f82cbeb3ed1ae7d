"""Kill `newsletter send` at random moments and resume until done; count what the fake received.

Shared by tests/test_exactly_once.py (fast: ≥20 kills) and benchmarks/chaos.py (long: ≥200).
The sender is a real subprocess (the installed console script); the fake provider runs in
this process and keeps its own record of every delivery.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fakes import FakePostmark, FakeResend

REPO = Path(__file__).resolve().parent.parent
COMMAND = str(Path(sys.executable).with_name("newsletter"))
PROVIDERS = {
    # name: (fake class, key variable, key value, extra config)
    "resend": (FakeResend, "NEWSLETTER_RESEND_API_KEY", "re_test_key", ""),
    "postmark": (FakePostmark, "NEWSLETTER_POSTMARK_SERVER_TOKEN", "pm-test-token", 'message_stream = "broadcast"\n'),
}


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout`` s.

    Tests wait on what another process does, never for a fixed time: start-up alone takes
    about a second on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)  # polling interval, not a wait for the other process


def lock_holder(lock_file: Path) -> int | None:
    """The pid recorded in the send lock file, or None when it is absent, empty or half-written."""
    try:
        return json.loads(lock_file.read_text()).get("pid")
    except (OSError, ValueError):
        return None


def sending_or_done(process: subprocess.Popen, lock_file: Path) -> bool:
    """True once ``process`` holds the send lock (it is past start-up) or has already exited."""
    return process.poll() is not None or lock_holder(lock_file) == process.pid


@dataclass
class ChaosReport:
    provider: str
    subscribers: int
    kills: int = 0
    runs: int = 0
    issues: int = 1
    duplicates: int = 0
    missing: int = 0
    unknown_resolved: int = 0
    requests: int = 0
    faults: int = 0
    seconds: float = 0.0
    exit_codes: dict[int, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.provider:<9} subscribers={self.subscribers} issues={self.issues} kills={self.kills} "
            f"runs={self.runs} "
            f"duplicates={self.duplicates} missing={self.missing} unknown={self.unknown_resolved} "
            f"requests={self.requests} faults={self.faults} seconds={self.seconds:.1f}"
        )


def make_project(root: Path, provider: str, base_url: str, subscribers: int, batch_size: int) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "content", root / "content")
    fake_class, variable, value, extra = PROVIDERS[provider]
    text = (
        (REPO / "newsletter.toml")
        .read_text(encoding="utf-8")
        .replace('provider = "outbox"', f'provider = "{provider}"')
    )
    text = text.replace(
        "[providers.outbox]",
        "retry_base_delay = 0.01\nretry_max_delay = 0.1\nretry_attempts = 30\nretry_deadline = 60\n"
        "\n[providers.outbox]",
    )
    text += f'\n[providers.{provider}]\nbase_url = "{base_url}"\ntimeout = 2\nbatch_size = {batch_size}\n{extra}'
    (root / "newsletter.toml").write_text(text, encoding="utf-8")
    (root / "people.csv").write_text(
        "email\n" + "".join(f"reader{n}@example.org\n" for n in range(subscribers)), encoding="utf-8"
    )
    env = {**os.environ, "NEWSLETTER_TOKEN_KEY": "chaos-key-0123456789-ABCDEFGHIJ-abcdefghijk", variable: value}
    env.pop("NEWSLETTER_CONFIG", None)
    subprocess.run([COMMAND, "subscribers", "import", "people.csv"], cwd=root, env=env, check=True, capture_output=True)
    return env


def run_chaos(
    workdir: Path,
    provider: str,
    *,
    subscribers: int = 2000,
    kills: int = 20,
    fault_rate: float = 0.1,
    latency: float = 0.05,
    batch_size: int = 10,
    seed: int = 1,
    kill_window: tuple[float, float] = (0.0, 0.65),
    max_runs: int = 2000,
) -> ChaosReport:
    """Kill the sender ``kills`` times at random moments, then let it finish; count what the fake saw.

    Each kill moment is drawn from ``kill_window`` seconds after the sender took the send
    lock, so that the kills land in the send itself however slow start-up is.

    When an issue is fully sent before enough kills, a new post is published and the next
    issue goes through the same treatment: every subscriber must get each issue exactly once.
    """
    rng = random.Random(seed)
    fake_class = PROVIDERS[provider][0]
    report = ChaosReport(provider, subscribers)
    started = time.monotonic()
    issues = 1
    with fake_class() as fake:
        fake.latency = latency
        env = make_project(workdir, provider, fake.url, subscribers, batch_size)
        lock_file = workdir / "newsletter.db.lock"
        fake.fault_rate(fault_rate, seed=seed)
        while report.runs < max_runs:
            report.runs += 1
            process = subprocess.Popen(
                [COMMAND, "send", "--yes"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            if report.kills < kills:
                wait_until(
                    lambda p=process: sending_or_done(p, lock_file), timeout=120, what="the sender to take the lock"
                )
                try:
                    process.wait(timeout=rng.uniform(*kill_window))
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    report.kills += 1
                    continue
            _, stderr = process.communicate(timeout=600)
            code = process.returncode
            report.exit_codes[code] = report.exit_codes.get(code, 0) + 1
            if code in (0, 3):
                if report.kills >= kills:
                    break
                issues += 1
                _publish_another(workdir, issues)
            elif "may or may not have been delivered" in stderr.decode():
                # Nothing could tell: the editor's call.  Assume sent: never a duplicate.
                resolved = subprocess.run(
                    [COMMAND, "resolve", "--assume-sent", _unfinished_slug(workdir, env)],
                    cwd=workdir, env=env, capture_output=True, text=True,
                )  # fmt: skip
                found = re.match(r"(\d+) uncertain", resolved.stdout)
                report.unknown_resolved += int(found.group(1)) if found else 0
        copies = Counter((d.subject, d.address.lower()) for d in fake.delivered)
        subjects = {d.subject for d in fake.delivered}
        report.requests = len(fake.requests)
        report.faults = sum(1 for r in fake.requests if r.fault)
    expected = {f"reader{n}@example.org" for n in range(subscribers)}
    report.issues = issues
    report.duplicates = sum(n - 1 for n in copies.values() if n > 1)
    report.missing = sum(1 for subject in subjects for address in expected if (subject, address) not in copies)
    report.missing += (issues - len(subjects)) * subscribers
    report.seconds = time.monotonic() - started
    return report


def _publish_another(workdir: Path, number: int) -> None:
    (workdir / "content" / "posts" / f"chaos-{number}.md").write_text(
        f'---\ntitle: "Numéro {number} : « chaos »"\nid: "urn:uuid:00000000-0000-4000-8000-{number:012d}"\n'
        f'date: "2026-01-{number:02d}T09:00:00+01:00"\n---\nBonjour 😉\n',
        encoding="utf-8",
    )


def _unfinished_slug(workdir: Path, env: dict) -> str:
    status = subprocess.run([COMMAND, "status", "--json", "--summary"], cwd=workdir, env=env, capture_output=True)
    for post in json.loads(status.stdout)["posts"]:
        if post["state"] == "sending":
            return post["slug"]
    return "none"
