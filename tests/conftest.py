"""Shared fixtures: a throwaway copy of the demo project, a fixed clock, a CLI runner."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import State, cli
from newsletter.config import load_config

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "tests" / "data" / "seed.txt"
FIXED_NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# 43 base64url characters, as secrets.token_urlsafe(32) makes: 258 bits, the least accepted is 256.
TOKEN_KEY = "fixture-signing-key_NOT-a-secret-0123456789"
# File names of the photos of the original posts: the seed keeps the names, not the images.
SEED_IMAGE_NAMES = {"unique", "12principles-hires-1-1", "Motor_Manufacturing"} | {f"IMG_{n}" for n in range(1563, 1604)}
# A caption glued to the next paragraph in the seed ("…Claude SuperQuand Jon…"): a lower-case
# letter directly followed by a capitalised word.  Both sides must arrive; split there.
GLUED = re.compile(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Ý][a-zà-ÿ])")


@pytest.fixture(autouse=True)
def token_key(monkeypatch):
    """Every test has a signing key unless it removes it to test the error."""
    monkeypatch.setenv("NEWSLETTER_TOKEN_KEY", TOKEN_KEY)
    monkeypatch.delenv("NEWSLETTER_TOKEN_KEY_OLD", raising=False)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    return TOKEN_KEY


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the demo newsletter (config and posts) in a temporary folder.

    Templates are not copied: the packaged defaults serve, as for a new user.
    """
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(REPO / "content", root / "content")
    return root


@pytest.fixture
def config(project):
    return load_config(project / "newsletter.toml")


@pytest.fixture
def built(project, run) -> bytes:
    """A good build first, so a failing one can be shown to leave public/ untouched: returns its feed."""
    outcome = run("build")
    assert outcome.exit_code == 0, outcome.stderr
    return (project / "public" / "feed.xml").read_bytes()


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run(project):
    """Invoke the real click CLI in-process against ``project`` with the fixed clock."""

    def invoke(*args: str, input: str | None = None, now: datetime = FIXED_NOW, root: Path | None = None) -> Outcome:
        runner = CliRunner()
        state = State(clock=lambda: now)
        config_path = (root or project) / "newsletter.toml"
        result = runner.invoke(cli, ["--config", str(config_path), *args], obj=state, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return invoke


def write_post(folder: Path, slug: str, *, body: str = "Bonjour.", **fields) -> Path:
    """Write a post with sensible defaults; ``fields`` override front matter (None removes a field)."""
    meta = {
        "title": f'"Titre {slug}"',
        "slug": slug,
        "id": f'"urn:uuid:00000000-0000-4000-8000-{abs(hash(slug)) % 10**12:012d}"',
        "date": '"2024-05-01T10:00:00+02:00"',
        "author": '"Claude Super"',
    }
    meta.update({k: v for k, v in fields.items()})
    lines = ["---"] + [f"{k}: {v}" for k, v in meta.items() if v is not None] + ["---", body, ""]
    path = folder / f"{slug}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def seed_posts() -> list[tuple[str, list[str]]]:
    """The seed file as ``(title, [text lines])``, newest first: every word of the user's posts.

    Each title is followed by two blank lines in the seed; bullets and numbers are stripped
    from list lines so the text can be compared with any rendering.  Only the photo file
    names are left out (the photos are not in the seed); their captions stay.  A line
    where the seed glued a caption to the next paragraph comes as its two pieces.
    """
    text = SEED.read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[^\n]+\n\n\n)", "\n" + text)
    posts = []
    for block in blocks:
        block = block.strip("\n")
        if not block:
            continue
        title, _, body = block.partition("\n\n\n")
        lines = []
        for raw in body.split("\n"):
            line = re.sub(r"^\s*(•|\d+\.)\s+", "", raw).rstrip()
            if line.strip() in SEED_IMAGE_NAMES:
                continue
            first, _, rest = line.partition(" ")
            line = rest if first in SEED_IMAGE_NAMES else line  # "IMG_1603 Anthony Poncier…": name, caption
            lines += [piece for piece in GLUED.split(line) if piece.strip()]
        posts.append((title.strip(), lines))
    return posts


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate and key for the loopback SMTP server (one per test module)."""
    from smtp_server import make_certificate

    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_password(monkeypatch):
    """The SMTP password, from the environment as a deployment gives it."""
    from smtp_server import PASSWORD

    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
