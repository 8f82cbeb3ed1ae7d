"""The ``newsletter`` command: a thin click layer over :class:`newsletter.Newsletter`.

Each command parses its options, calls one method of the project object,
prints the result, and lets :class:`NewsletterGroup` turn typed library errors
into one line on stderr and an exit code (1 bad input, 2 bad usage, 3 nothing
to send, 4 locked); ``--debug`` shows the traceback instead.

Only click and the error types are imported at start-up: a command's module
(and the library under it) loads when that command runs, so ``newsletter --help``
stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from .. import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from ..project import Newsletter

CONTEXT = {"help_option_names": ["-h", "--help"]}
STATUSES = ["pending", "active", "unsubscribed", "bounced", "complained"]

# Each command's module and the one line ``newsletter --help`` lists it with.  The listing is
# made from this table, so ``--help`` imports no command module; a command's module loads when
# it runs (or shows its own help).  A test checks the table against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "backup": ("send", "Copy the ledger to PATH, safe while sends and the service run."),
    "build": ("publish", "Build the feeds and the web archive into public/."),
    "check": ("publish", "Run an issue's preflight: exit 1 when it finds errors."),
    "doctor": ("publish", "Check the setup: Python, signing key, file modes, provider."),
    "init": ("publish", "Start a newsletter: config, a first post, .gitignore, .env."),
    "mark-sent": ("send", "Record posts as already sent without mailing anyone."),
    "new": ("publish", "Write a new post titled TITLE, with a fresh id, dated now."),
    "outgoing": ("send", "Send the queued confirmation mails now."),
    "preview": ("publish", "Write an issue's email (HTML, text, .eml) to preview/SLUG/."),
    "providers": ("publish", "List the installed providers and what each can do."),
    "resolve": ("send", "Decide what became of deliveries nothing could reconcile."),
    "send": ("send", "Send each due post as an email issue, exactly once."),
    "serve": ("publish", "Run the subscribe pages, webhooks and archive (waitress)."),
    "status": ("send", "Show each post: sent or not, when, to how many, how."),
    "subscribers": ("subscribers", "Manage the local subscriber list."),
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class State:
    """What every command shares: where the config is, the clock, and the project once opened."""

    # A plain class, not a dataclass: ``--help`` should not pay for importing dataclasses.
    def __init__(
        self, config_path: Path | None = None, directory: Path | None = None, *, debug: bool = False,
        quiet: bool = False, clock: Callable[[], datetime] = _utc_now,
    ) -> None:  # fmt: skip
        self.config_path = config_path
        self.directory = directory  # -C DIR: look for newsletter.toml from there, not the current folder
        self.debug = debug
        self.quiet = quiet
        self.clock = clock
        self._project: Newsletter | None = None

    def project(self) -> Newsletter:
        """The project, opened on first use and closed when the command ends."""
        if self._project is None:
            from ..project import Newsletter

            path = self.config_path
            if path is None and self.directory is not None:
                from ..config import find_config

                path = find_config(self.directory)
            self._project = Newsletter.open(path, clock=self.clock)
            click.get_current_context().call_on_close(self._close)
        return self._project

    def _close(self) -> None:
        if self._project is not None:
            self._project.close()
            self._project = None


class NewsletterContext(click.Context):
    """click's context, reading the terminal's width without importing :mod:`shutil` (which loads
    zlib, bz2 and lzma: a twentieth of ``newsletter --help``)."""

    def make_formatter(self) -> click.HelpFormatter:
        width = self.terminal_width
        if width is None:
            from click import formatting

            width = formatting.FORCED_WIDTH  # what click's test runner sets
            if width is None:
                width = max(min(terminal_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` gives it: ``$COLUMNS``, else that of
    standard output's terminal, else 80."""
    import os
    import sys

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class NewsletterGroup(click.Group):
    """A click group that reports library errors as one line with an exit code.

    Its commands are those of :data:`COMMANDS`, each loaded from its module on first use.
    """

    context_class = NewsletterContext

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            importlib.import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table, as click would write it from the loaded commands."""
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import EXIT_ERROR, ConfigErrors, NewsletterError, NothingToSend

        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            if _debugging(ctx):
                raise
            if isinstance(error, NothingToSend):
                click.echo(f"Nothing to send: {error.one_line()}")
            elif isinstance(error, ConfigErrors):  # every mistake of the file, one line each
                for line in error.lines():
                    click.echo(f"Error: {line}", err=True)
            else:
                click.echo(f"Error: {error.one_line()}", err=True)
            ctx.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted: the ledger records what was sent; run the command again to resume.", err=True)
            ctx.exit(130)
        except Exception as error:  # a bug, not a user mistake: say so in one line
            if _debugging(ctx):
                raise
            click.echo(f"Internal error: {type(error).__name__}: {error} (run with --debug and report it)", err=True)
            ctx.exit(EXIT_ERROR)


def _debugging(ctx: click.Context) -> bool:
    state = ctx.find_object(State)
    return bool(state and state.debug)


@click.group(cls=NewsletterGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Path of newsletter.toml (default: the nearest one from the current folder up).",
)
@click.option(
    "-C",
    "directory",
    metavar="DIR",
    type=click.Path(file_okay=False, exists=True),
    help="Run as if started in DIR (newsletter.toml is looked for from there up).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes; errors and results only.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, directory: str | None, quiet: bool, debug: bool) -> None:
    """Publish Markdown posts as an Atom feed, a web archive and email issues sent exactly once.

    Exit codes: 0 done, 1 bad input (post, config, provider, ledger),
    2 bad usage, 3 nothing new to send, 4 another send holds the lock.

    \b
    Examples:
      newsletter init my-letter        # a new project, ready to build
      newsletter new "Second issue"    # a new post, dated now
      newsletter build                 # feeds and pages into public/
      newsletter preview               # the newest issue's email into preview/
      newsletter send --dry-run        # show the plan, render every message
      newsletter send --yes            # send the newest post, exactly once
      newsletter status                # what went out, when, to how many
    """
    from pathlib import Path  # here, not at the top: ``--help`` never gets this far

    state = ctx.ensure_object(State)
    state.config_path = Path(config_path) if config_path else state.config_path
    state.directory = Path(directory) if directory else state.directory
    state.debug = debug or state.debug
    state.quiet = quiet or state.quiet
    _show_warnings(quiet=state.quiet)


def _show_warnings(*, quiet: bool) -> None:
    """The library's warnings (``logging``, logger ``newsletter``) as ``Warning: …`` lines on stderr."""
    import logging

    logger = logging.getLogger("newsletter")

    class EchoHandler(logging.Handler):
        newsletter_cli = True

        def emit(self, record: logging.LogRecord) -> None:
            click.echo(f"Warning: {record.getMessage()}", err=True)  # whatever stderr is now (tests swap it)

    logger.handlers = [handler for handler in logger.handlers if not getattr(handler, "newsletter_cli", False)]
    handler = EchoHandler(logging.ERROR if quiet else logging.WARNING)  # the logger's own level is left alone
    logger.addHandler(handler)


pass_state = click.make_pass_decorator(State, ensure=True)


def command(name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """Register the function as ``newsletter NAME``, listed with its line of :data:`COMMANDS`."""
    return cli.command(name, context_settings=CONTEXT, short_help=COMMANDS[name][1])


def group(name: str) -> Callable[[Callable[..., Any]], click.Group]:
    """Register the function as the command group ``newsletter NAME`` (see :func:`command`)."""
    return cli.group(name, context_settings=CONTEXT, short_help=COMMANDS[name][1])
