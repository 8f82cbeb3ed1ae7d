"""Helpers shared by the tests: the CLI's error contract, the ledger, switching providers."""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

from conftest import FIXED_NOW, TOKEN_KEY

SUBSCRIBERS = ["alice@example.org", "bruno@example.org", "camille@example.org"]
FAST_RETRIES = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "retry_deadline": 30}

# The service's environment in the web and webhook tests: the signing key and each provider's webhook secret.
MAILGUN_KEY = "mg-signing-key"
RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-secret-bytes").decode()
SERVICE_ENV = {
    "NEWSLETTER_TOKEN_KEY": TOKEN_KEY,
    "NEWSLETTER_MAILGUN_WEBHOOK_KEY": MAILGUN_KEY,
    "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": "pm-hook-password",
    "NEWSLETTER_RESEND_WEBHOOK_SECRET": RESEND_SECRET,
}


class Clock:
    """The service's injectable clock, moved by the test."""

    def __init__(self) -> None:
        self.now: datetime = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


def assert_one_line_error(outcome, *fragments: str, code: int = 1, hint: bool = True) -> str:
    """The CLI's failure contract: the exit code, one stderr line ``Error: …`` (with a hint after
    `` — ``), no traceback anywhere, and each of ``fragments`` in that line."""
    assert outcome.exit_code == code, (outcome.exit_code, outcome.stdout, outcome.stderr)
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("Error: "), line
    if hint:
        assert " — " in line, f"no hint after ' — ': {line}"
    assert "Traceback" not in outcome.stderr + outcome.stdout
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def ledger_rows(project: Path, sql: str, *params) -> list[tuple]:
    """Rows of the project's ledger, read through a connection of our own."""
    with closing(sqlite3.connect(project / "newsletter.db")) as db:
        return db.execute(sql, params).fetchall()


def subscribe(run, *addresses: str) -> None:
    outcome = run("subscribers", "add", *(addresses or SUBSCRIBERS))
    assert outcome.exit_code == 0, outcome.stderr


def import_subscribers(run, folder: Path, count: int) -> list[str]:
    """``count`` readers imported from a CSV file; returns their addresses."""
    addresses = [f"reader{n:05d}@example.org" for n in range(count)]
    path = folder / "subscribers.csv"
    path.write_text("email\n" + "".join(a + "\n" for a in addresses), encoding="utf-8")
    outcome = run("subscribers", "import", str(path))
    assert outcome.exit_code == 0 and f"Imported {count}," in outcome.stdout, outcome.stdout + outcome.stderr
    return addresses


def toml_table(settings: dict) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())


def use_provider(
    project: Path,
    name: str,
    url: str | None,
    *,
    send: dict | None = None,
    provider: dict | None = None,
    email: dict | None = None,
) -> None:
    """Switch the project to provider ``name`` at ``url``, with fast retries (``send`` overrides them)."""
    path = project / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count('provider = "outbox"') == 1 and text.count("[providers.outbox]") == 1
    text = text.replace('provider = "outbox"', f'provider = "{name}"')
    text = text.replace("[providers.outbox]", toml_table({**FAST_RETRIES, **(send or {})}) + "\n\n[providers.outbox]")
    if email:
        text = text.replace("\n[send]", "\n" + toml_table(email) + "\n\n[send]")
    table = {**({"base_url": url} if url else {}), **(provider or {})}
    path.write_text(text + f"\n[providers.{name}]\n" + toml_table(table) + "\n", encoding="utf-8")


def assert_each_once(fake, addresses) -> None:
    """By the fake's own record, each address got exactly one copy, and nobody else got any."""
    counts = fake.count_by_recipient()
    assert dict(counts) == {a.lower(): 1 for a in addresses}, {a: n for a, n in counts.items() if n != 1} or counts


def every_command_path() -> list[list[str]]:
    """Every ``newsletter`` command and ``subscribers`` subcommand, as argument lists (each loaded)."""
    import click

    from newsletter.cli import cli

    with click.Context(cli) as context:
        paths = [[name] for name in cli.list_commands(context) if cli.get_command(context, name)]
        subscribers = cli.get_command(context, "subscribers")
        assert isinstance(subscribers, click.Group)
        return paths + [["subscribers", name] for name in subscribers.list_commands(context)]
