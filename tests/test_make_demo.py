"""`make demo` from a fresh copy of the repository: a new virtualenv, the demo built and sent once."""

from __future__ import annotations

import email
import email.policy
import io
import os
import subprocess
import tarfile
from pathlib import Path

import feedparser
import pytest

from conftest import REPO, seed_posts

pytestmark = pytest.mark.slow


def fresh_copy(destination: Path) -> Path:
    """The files a clone would have (tracked, plus new files not ignored), symlinks kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in filter(None, listed):
            path = REPO / name.decode()
            if path.exists() or path.is_symlink():
                archive.add(path, arcname=name.decode(), recursive=False)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as archive:
        archive.extractall(destination, filter="tar")
    return destination


def make(target: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run(["make", target], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_make_demo_twice_from_a_fresh_copy(tmp_path):
    root = fresh_copy(tmp_path / "clone")
    assert not (root / ".venv").exists() and not (root / "public").exists()

    first = make("demo", root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    public = root / "public"
    assert (public / "feed.xml").is_file() and (public / "index.html").is_file()
    assert len(list(public.glob("*/index.html"))) == 5
    eml = sorted((root / "outbox" / "new").glob("*.eml"))
    assert len(eml) == 3
    newest_title = seed_posts()[0][0]
    for path in eml:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert str(message["Subject"]) == newest_title
        assert str(message["To"]).endswith("@example.org")
    feed = feedparser.parse((public / "feed.xml").read_bytes())
    assert not feed.bozo and len(feed.entries) == 5
    key_file = (root / ".env").read_text()
    assert key_file.startswith("NEWSLETTER_TOKEN_KEY=") and len(key_file.strip()) > 40

    second = make("demo", root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Nothing to send" in second.stdout and "already sent" in second.stdout
    assert sorted((root / "outbox" / "new").glob("*.eml")) == eml
    # Everything the demo generated is ignored by git: output, ledger, virtualenv, key.
    generated = ["public/feed.xml", f"outbox/new/{eml[0].name}", "newsletter.db", ".venv/bin/python", ".env"]
    assert all((root / name).exists() for name in generated)
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *generated], cwd=REPO, capture_output=True, text=True
    )
    assert ignored.stdout.split() == generated
