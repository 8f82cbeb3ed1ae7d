"""The installed `newsletter` command as a user runs it: help, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from checks import every_command_path
from newsletter.cli import cli

COMMAND = str(Path(sys.executable).with_name("newsletter"))


def newsletter(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run([COMMAND, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


def test_every_command_has_help():
    """--help is documentation: every command and group explains itself."""
    runner = CliRunner()
    commands = every_command_path()
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0
        summary = result.stdout.split("\n\n")[1].strip()
        assert len(summary) > 20, path


@pytest.mark.parametrize(
    "mistake, args, expected",
    [
        ("no config here", ["build"], "newsletter.toml"),
        ("unknown slug", ["preview", "nope"], "nope"),
        ("bad front matter", ["build"], "invalid YAML"),
        ("missing key", ["send", "--yes"], "NEWSLETTER_TOKEN_KEY"),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(tmp_path, project, mistake, args, expected):
    cwd = project
    env = {}
    if mistake == "no config here":
        cwd = tmp_path / "empty"
        cwd.mkdir()
    if mistake == "bad front matter":
        (project / "content" / "posts" / "cassé.md").write_text("---\ntitle: [oops\n---\nx\n", encoding="utf-8")
    if mistake == "missing key":
        env = {"NEWSLETTER_TOKEN_KEY": ""}
        newsletter("subscribers", "add", "a@example.org", cwd=cwd)
    result = newsletter(*args, cwd=cwd, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0]
    assert " — " in lines[0]  # every error carries a fix-it hint


def test_debug_shows_the_traceback(tmp_path):
    result = newsletter("--debug", "build", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_bad_usage_exits_2(project):
    result = newsletter("send", "--no-such-option", cwd=project)
    assert result.returncode == 2


def test_providers_lists_the_outbox_with_its_capabilities(project):
    result = newsletter("providers", cwd=project)
    assert result.returncode == 0
    assert "outbox" in result.stdout and "family=batch" in result.stdout and "idempotency=yes" in result.stdout


def test_unknown_provider_names_the_known_ones(run, project):
    config = project / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('provider = "outbox"', 'provider = "carrier-pigeon"'))
    run("subscribers", "add", "a@example.org")
    outcome = run("send", "--yes")
    assert outcome.exit_code == 1
    assert "carrier-pigeon" in outcome.stderr and "outbox" in outcome.stderr
    assert not (project / "outbox").exists()


def test_console_script_is_installed():
    assert shutil.which(COMMAND)
