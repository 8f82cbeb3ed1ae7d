"""Start-up stays light: `--help` loads click and the error types, never the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from checks import every_command_path

HEAVY = ("premailer", "cssutils", "cmarkgfm", "nh3", "yaml", "sqlite_utils", "requests", "jinja2", "lxml",
         "feedgen", "flask", "waitress", "pygments", "PIL", "email_validator")  # fmt: skip


def modules_loaded_by(*args: str, whole_names: bool = False) -> set[str]:
    code = (
        "import sys, json\n"
        "from newsletter.cli import cli\n"
        f"try:\n    cli({list(args)!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    names = json.loads(done.stderr.strip().splitlines()[-1])
    return set(names) if whole_names else {name.split(".")[0] for name in names}


def test_help_imports_none_of_the_heavy_libraries():
    loaded = modules_loaded_by("--help")
    assert "click" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_lists_every_command_without_loading_one():
    """The listing comes from the table in cli/__init__.py, so --help imports no command module;
    once every command is loaded, click's own listing of them is the same text."""
    loaded = modules_loaded_by("--help", whole_names=True)
    assert "newsletter.cli" in loaded
    assert not {name for name in loaded if name.startswith("newsletter.cli.")}, sorted(loaded)
    assert not {"newsletter.errors", "pathlib", "dataclasses", "shutil"} & loaded

    from newsletter.cli import COMMANDS, cli

    every_command_path()  # loads every command's module
    assert set(cli.commands) == set(COMMANDS)
    for name, (module, _summary) in COMMANDS.items():
        assert cli.commands[name].callback.__module__ == f"newsletter.cli.{module}", name
    with click.Context(cli, info_name="newsletter") as context:
        ours, clicks = click.HelpFormatter(), click.HelpFormatter()
        cli.format_commands(context, ours)
        click.Group.format_commands(cli, context, clicks)
    assert ours.getvalue() == clicks.getvalue()
    assert all(f"  {name} " in ours.getvalue() for name in COMMANDS)


@pytest.mark.parametrize("columns", [None, "60", "200", "0", "-3", "wide"])
def test_help_is_as_wide_as_click_would_make_it(monkeypatch, columns):
    """The group's context reads the terminal width without shutil, with shutil's rules."""
    import shutil

    from newsletter.cli import cli, terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns
    with cli.make_context("newsletter", ["status"]) as context:
        assert context.make_formatter().width == click.HelpFormatter().width


def test_every_command_help_is_light_and_ends_with_examples():
    from click.testing import CliRunner

    from newsletter.cli import cli

    commands = every_command_path()
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "-h"])
        assert result.exit_code == 0, (command, result.output)
        assert "Example" in result.output, command
    assert not modules_loaded_by("send", "--help") & set(HEAVY)


def test_status_with_a_built_project_loads_no_parser_and_no_email_library(project):
    """`newsletter status` reads post metadata from the build cache (issue 13)."""
    config = str(project / "newsletter.toml")
    assert "cmarkgfm" in modules_loaded_by("--config", config, "build")  # two commands, as a user runs them
    assert (project / "public" / "index.html").is_file()
    loaded = modules_loaded_by("--config", config, "status")
    # The ledger (sqlite-utils) is what status is about; the parsers and the email stack are not.
    light = set(HEAVY) - {"sqlite_utils"}
    assert "newsletter" in loaded
    assert not loaded & light, sorted(loaded & light)


def test_a_build_with_nothing_changed_loads_neither_the_email_stack_nor_a_parser(project):
    """The no-change build reads the config, the build cache and the files' stats, nothing more."""
    config = str(project / "newsletter.toml")
    assert "jinja2" in modules_loaded_by("--config", config, "build")  # the first build renders
    loaded = modules_loaded_by("--config", config, "build")
    assert not loaded & {"email", "socket", *HEAVY}, sorted(loaded & {"email", "socket", *HEAVY})
