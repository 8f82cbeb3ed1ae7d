"""``newsletter init`` and ``newsletter new``: a new project, a new post.

A project starts with everything a first issue needs and nothing that must stay
private can reach git: ``.gitignore`` keeps out the signing key (``.env``), the
ledger (subscribers and their consent), the outbox, previews and build output.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import CONFIG_FILE, Config, parse_config
from .envfile import ENV_FILE
from .errors import ConfigError, UsageError
from .textutil import is_email_address

PROVIDERS = ("outbox", "smtp", "mailgun", "postmark", "resend", "buttondown", "ses")
TOKEN_KEY_ENV = "NEWSLETTER_TOKEN_KEY"
# What each provider needs in [providers.NAME] and in .env, written as comments to fill in.
_PROVIDER_STUBS = {
    "outbox": ('path = "outbox"', ""),
    "smtp": ('host = "smtp.example.org"\n# port = 587\n# username = "news@example.org"', "NEWSLETTER_SMTP_PASSWORD"),
    "mailgun": ('domain = "mg.example.org"\n# region = "eu"', "NEWSLETTER_MAILGUN_API_KEY"),
    "postmark": ('# message_stream = "broadcast"', "NEWSLETTER_POSTMARK_SERVER_TOKEN"),
    "resend": ("# batch_size = 100", "NEWSLETTER_RESEND_API_KEY"),
    "buttondown": ('# api_version = "2024-08-15"', "NEWSLETTER_BUTTONDOWN_API_KEY"),
    "ses": ('region = "eu-west-1"', "AWS_SECRET_ACCESS_KEY"),
}
GITIGNORE = """\
# Secrets: the signing key and provider credentials (newsletter.toml only names them).
.env
.env.*
!.env.example
# The ledger: subscribers, their consent and every delivery. Back it up with 'newsletter backup'.
*.db
*.db-*
*.db.lock
# What newsletter writes: sent mail, previews, the built site.
outbox/
preview/
public/
# Caches and virtualenvs.
.newsletter-cache/
__pycache__/
.cache/
.venv/
"""
TEMPLATES_NOTE = """\
# Your templates

Empty on purpose: newsletter uses its packaged templates until a file here
overrides one of the same name.  To change the email, copy the packaged file
and edit it:

    python -c "import newsletter, pathlib; print(pathlib.Path(newsletter.__file__).parent / 'templates')"
    mkdir -p templates/email && cp <that folder>/email/issue.html templates/email/

Site pages live under `site/`, emails under `email/` (`issue.html`, `issue.txt`,
and `digest.html`, `digest.txt` for `newsletter send --digest`).
"""


@dataclass(frozen=True)
class Answers:
    """What ``init`` asks for; every field has a default a first run can live with."""

    title: str = "My newsletter"
    url: str = "https://example.org/"
    language: str = "en"
    from_address: str = "news@example.org"
    from_name: str = ""
    postal_address: str = "Your name, street, postcode, city, country"
    provider: str = "outbox"
    timezone: str = "UTC"


@dataclass(frozen=True)
class InitReport:
    root: Path
    written: tuple[str, ...]


def default_timezone() -> str:
    """The machine's IANA zone when it can be told (``TZ``, ``/etc/localtime``), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(str(Path("/etc/localtime").resolve()).split("zoneinfo/", 1)[1])
    except (IndexError, OSError):
        pass
    for name in candidates:
        try:
            if name:
                ZoneInfo(name)
                return name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return "UTC"


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def config_text(answers: Answers, feed_id: str) -> str:
    """The ``newsletter.toml`` of a new project."""
    name = answers.from_name or answers.title
    stub, _ = _PROVIDER_STUBS[answers.provider]
    base = answers.url if answers.url.endswith("/") else answers.url + "/"
    return f"""\
# Written by 'newsletter init'. Secrets never go here: .env holds them (and stays out of git).

[site]
title = {_toml(answers.title)}
# Permanent feed id: minted once, never change it (feed readers key on it).
id = {_toml(feed_id)}
base_url = {_toml(base)}
language = {_toml(answers.language)}
timezone = {_toml(answers.timezone)}
author = {_toml(name)}
description = ""

[email]
from_name = {_toml(name)}
from_address = {_toml(answers.from_address)}
# Required by anti-spam law (CAN-SPAM) in the footer of every issue.
postal_address = {_toml(answers.postal_address)}

[send]
provider = {_toml(answers.provider)}
database = "newsletter.db"
# The HMAC key that signs unsubscribe links: its value is in .env.
token_key_env = "{TOKEN_KEY_ENV}"

[providers.{answers.provider}]
{stub}

[paths]
content = "content/posts"
public = "public"
templates = "templates"
preview = "preview"
"""


def first_post_text(title: str, now: datetime, *, body: str) -> str:
    """A post with a fresh permanent id, dated ``now`` (with its offset)."""
    return (
        f'---\ntitle: {_toml(title)}\nid: "urn:uuid:{uuid.uuid4()}"\n'
        f'date: "{now.replace(microsecond=0).isoformat()}"\n---\n{body}'
    )


# Letters NFKD does not split into a base letter and an accent.
_LIGATURES = str.maketrans({"ß": "ss", "œ": "oe", "æ": "ae", "ø": "o", "đ": "d", "ł": "l", "þ": "th"})


def slugify(title: str) -> str:
    """A slug from a title: accents folded (é → e), lowercase words joined by hyphens."""
    folded = unicodedata.normalize("NFKD", title.lower().translate(_LIGATURES))
    ascii_text = folded.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:80].rstrip("-") or "post"


def _write_new(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file that must not exist yet (never overwrite an editor's work)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)  # the umask must not widen or narrow it


def check_answers(answers: Answers) -> Config:
    """Validate the answers as the config they become, every mistake at once (nothing written yet)."""
    import tomllib

    if answers.provider not in PROVIDERS:
        raise UsageError(f"unknown provider {answers.provider!r}", hint=f"choose one of: {', '.join(PROVIDERS)}")
    if not is_email_address(answers.from_address):
        raise UsageError(f"{answers.from_address!r} is not an email address", hint="e.g. --from news@example.org")
    text = config_text(answers, f"urn:uuid:{uuid.uuid4()}")
    return parse_config(tomllib.loads(text), root=Path("."), source="--options of newsletter init")


def init_project(root: Path, answers: Answers, now: datetime) -> InitReport:
    """Write a new project into ``root`` (created if needed); refuses a folder that has one."""
    root = Path(root)
    if (root / CONFIG_FILE).exists():
        raise UsageError(
            f"{root / CONFIG_FILE} already exists", hint="init never overwrites a project; choose an empty folder"
        )
    taken = [name for name in (ENV_FILE, ".gitignore") if (root / name).exists()]
    if taken:
        raise UsageError(f"{root / taken[0]} already exists", hint="move it aside, or run init in an empty folder")
    config = check_answers(answers)
    local_now = now.astimezone(config.site.timezone)
    written = []

    def write(name: str, text: str, mode: int = 0o644) -> None:
        _write_new(root / name, text, mode)
        written.append(name)

    write(CONFIG_FILE, config_text(answers, f"urn:uuid:{uuid.uuid4()}"))
    _, provider_secret = _PROVIDER_STUBS[answers.provider]
    env = f"# Secrets for newsletter (mode 0600, never in git).\n{TOKEN_KEY_ENV}={secrets.token_urlsafe(32)}\n"
    if provider_secret:
        env += f"# The {answers.provider} credential newsletter.toml names:\n# {provider_secret}=\n"
    write(ENV_FILE, env, 0o600)
    write(".gitignore", GITIGNORE)
    write("templates/README.md", TEMPLATES_NOTE)
    body = (
        f"Welcome to {answers.title}.\n\nEdit this post, then `newsletter build` for the site and"
        ' `newsletter preview` for the email. Add posts with `newsletter new "Title"`.\n'
    )
    write("content/posts/welcome.md", first_post_text(f"Welcome to {answers.title}", local_now, body=body))
    return InitReport(root, tuple(written))


def new_post(config: Config, title: str, now: datetime) -> Path:
    """Write ``content/posts/<slug>.md`` dated ``now`` in ``site.timezone``; returns its path."""
    if not title.strip() or any(c in title for c in "\r\n\0"):
        raise UsageError("the title must be one non-empty line", hint='newsletter new "My second issue"')
    base = slugify(title)
    folder = config.content_dir
    slug, number = base, 1
    while (folder / f"{slug}.md").exists() or (folder / slug).exists():
        number += 1
        slug = f"{base}-{number}"
    path = folder / f"{slug}.md"
    text = first_post_text(title.strip(), now.astimezone(config.site.timezone), body="Write your post here.\n")
    try:
        _write_new(path, text.replace("\n---\n", f"\nslug: {slug}\n---\n", 1))
    except OSError as exc:
        hint = "check paths.content in newsletter.toml"
        raise ConfigError(f"cannot write the post ({exc.strerror})", where=str(path), hint=hint) from None
    return path
