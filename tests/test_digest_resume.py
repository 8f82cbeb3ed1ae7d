"""Issue 14: a digest interrupted mid-send resumes on the next ``send --digest``, exactly once.

The sender is the installed ``newsletter`` command in a subprocess; the provider is a local fake
HTTP API (tests/fakes/) in this process, which keeps its own record of every delivery.  The
interruption is either a SIGKILL while chunks are in flight, or the provider starting to refuse
every request (HTTP 401) half-way.  Each test waits on what the fake has received, never for a
fixed time.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from chaos import COMMAND, PROVIDERS, make_project, wait_until
from fakes import Fault

SUBSCRIBERS = 300
EXPECTED = {f"reader{n}@example.org" for n in range(SUBSCRIBERS)}
POSTS = {  # slug: (title, id, date): both newer than the demo's newest post, both due now
    "premiere-breve": ("Première brève", "urn:uuid:5d1c2f7e-1111-4c1e-9d0a-000000000001", "2026-11-20T08:00:00+01:00"),
    "seconde-breve": ("Seconde brève", "urn:uuid:5d1c2f7e-2222-4c1e-9d0a-000000000002", "2026-11-21T08:00:00+01:00"),
}
DIGEST_SUBJECT = "Première brève · Seconde brève"
FIRST_SUBJECT = "Social Business : un parcours singulier à conjuguer au pluriel\u00a0!"  # the first send: the newest
SEND_PATHS = {"postmark": r"^/email/batch$", "resend": r"^/emails/batch$"}


def newsletter(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([COMMAND, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)


def digest_copies(fake) -> Counter:
    """How many copies of the digest each address received, by the fake's own record."""
    return Counter(d.address.lower() for d in fake.delivered if d.subject == DIGEST_SUBJECT)


def project_with_two_due_posts(root: Path, provider: str, fake) -> dict:
    """The demo project on ``fake``, its newest post already sent, then two new posts due."""
    env = make_project(root, provider, fake.url, SUBSCRIBERS, batch_size=10)
    first = newsletter(root, env, "send", "--yes")
    assert first.returncode == 0, first.stderr
    for slug, (title, post_id, date) in POSTS.items():
        (root / "content" / "posts" / f"{slug}.md").write_text(
            f'---\ntitle: "{title}"\nid: "{post_id}"\ndate: "{date}"\n---\nBonjour, {title.lower()}.\n',
            encoding="utf-8",
        )
    planned = newsletter(root, env, "send", "--digest", "--dry-run")
    assert "2 posts in one issue" in planned.stdout, planned.stdout + planned.stderr
    fake.latency = 0.1  # network and provider time: the send takes long enough to be interrupted
    return env


def start_digest(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [COMMAND, "send", "--digest", "--yes"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_for_part_of_the_digest(process: subprocess.Popen, fake) -> None:
    """Until a quarter of the readers have the digest; the send must still be running then."""
    wait_until(lambda: len(digest_copies(fake)) >= SUBSCRIBERS // 4 or process.poll() is not None,
               timeout=120, what="a quarter of the digest to be delivered")  # fmt: skip
    assert process.poll() is None, "the digest finished before it could be interrupted"


def assert_resumed_exactly_once(root: Path, env: dict, fake) -> None:
    resumed = newsletter(root, env, "send", "--digest", "--yes")
    assert resumed.returncode == 0, resumed.stderr
    copies = digest_copies(fake)
    assert set(copies) == EXPECTED, f"missing: {sorted(EXPECTED - set(copies))[:5]}"
    assert [a for a, n in copies.items() if n > 1] == []  # no duplicates
    # The two posts went out in the digest only, never on their own.
    assert {d.subject for d in fake.delivered} == {FIRST_SUBJECT, DIGEST_SUBJECT}
    # The digest's posts count as sent: status says so, and neither send mails them again.
    status = json.loads(newsletter(root, env, "status", "--json", "--summary").stdout)["posts"]
    states = {p["slug"]: p for p in status}
    assert states["premiere-breve"]["state"] == states["seconde-breve"]["state"] == "marked"
    (row,) = [p for p in status if p["slug"].startswith("digest-")]
    assert row["state"] == "sent" and row["title"] == DIGEST_SUBJECT
    (digest,) = row["issues"]
    assert digest["status"] == "sent" and digest["counts"] == {"accepted": SUBSCRIBERS}
    shown = newsletter(root, env, "status").stdout
    assert any(line.startswith("sent") and row["slug"] in line and f"delivered {SUBSCRIBERS}, rejected 0" in line
               for line in shown.splitlines()), shown  # fmt: skip
    for again in (("send", "--yes"), ("send", "--digest", "--yes")):
        outcome = newsletter(root, env, *again)
        assert outcome.returncode == 3, outcome.stdout + outcome.stderr  # EXIT_NOTHING_TO_SEND
    assert digest_copies(fake) == copies


@pytest.mark.parametrize("provider", ["postmark", "resend"])
def test_a_digest_killed_mid_send_resumes_and_each_reader_gets_it_once(tmp_path, provider):
    """Postmark can be asked what it accepted (lookup); Resend replays an idempotency key."""
    fake_class = PROVIDERS[provider][0]
    with fake_class() as fake:
        root = tmp_path / "site"
        env = project_with_two_due_posts(root, provider, fake)
        process = start_digest(root, env)
        wait_for_part_of_the_digest(process, fake)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        at_kill = len(digest_copies(fake))
        assert 0 < at_kill < SUBSCRIBERS
        fake.latency = 0.0
        assert_resumed_exactly_once(root, env, fake)


def test_a_digest_the_provider_starts_refusing_mid_send_resumes_with_the_rest_once(tmp_path):
    """Half-way, every send request gets HTTP 401 (a key revoked): the send stops with one line,
    having recorded what was accepted; once the key works again, the next run sends the rest."""
    with PROVIDERS["postmark"][0]() as fake:
        root = tmp_path / "site"
        env = project_with_two_due_posts(root, "postmark", fake)
        process = start_digest(root, env)
        wait_for_part_of_the_digest(process, fake)
        fake.inject(Fault.http(401, times=None, method="POST", path=SEND_PATHS["postmark"]))
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 1, stderr
        assert len(stderr.strip().splitlines()) == 1 and "401" in stderr and "Traceback" not in stderr
        assert 0 < len(digest_copies(fake)) < SUBSCRIBERS
        fake.clear_faults()
        fake.latency = 0.0
        assert_resumed_exactly_once(root, env, fake)
