"""The ``newsletter`` command: a thin click layer over :class:`newsletter.Newsletter`.

Each command parses its options, calls one method of the project object,
prints the result, and lets :class:`NewsletterGroup` turn typed library errors
into one line on stderr and an exit code (1 bad input, 2 bad usage, 3 nothing
to send, 4 locked); ``--debug`` shows the traceback instead.

Only click and the error types are imported at start-up: the library loads
when a command runs, so ``newsletter --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .errors import EXIT_ERROR, ConfigErrors, NewsletterError, NothingToSend, UsageError

if TYPE_CHECKING:
    from .project import Newsletter

CONTEXT = {"help_option_names": ["-h", "--help"]}
STATUSES = ["pending", "active", "unsubscribed", "bounced", "complained"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class State:
    """What every command shares: where the config is, the clock, and the project once opened."""

    config_path: Path | None = None
    directory: Path | None = None  # -C DIR: look for newsletter.toml from there, not the current folder
    debug: bool = False
    quiet: bool = False
    clock: Callable[[], datetime] = _utc_now
    _project: Newsletter | None = field(default=None, repr=False)

    def project(self) -> Newsletter:
        """The project, opened on first use and closed when the command ends."""
        if self._project is None:
            from .project import Newsletter

            path = self.config_path
            if path is None and self.directory is not None:
                from .config import find_config

                path = find_config(self.directory)
            self._project = Newsletter.open(path, clock=self.clock)
            click.get_current_context().call_on_close(self._close)
        return self._project

    def _close(self) -> None:
        if self._project is not None:
            self._project.close()
            self._project = None


class NewsletterGroup(click.Group):
    """A click group that reports library errors as one line with an exit code."""

    def invoke(self, ctx: click.Context):
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
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Path of newsletter.toml (default: the nearest one from the current folder up).",
)
@click.option(
    "-C",
    "directory",
    metavar="DIR",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Run as if started in DIR (newsletter.toml is looked for from there up).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes; errors and results only.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, directory: Path | None, quiet: bool, debug: bool) -> None:
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
    state = ctx.ensure_object(State)
    state.config_path = config_path or state.config_path
    state.directory = directory or state.directory
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


@cli.command("init", context_settings=CONTEXT)
@click.argument("directory", required=False, default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--title", help="The newsletter's name.")
@click.option("--url", help="Where the site will live, e.g. https://news.example.org/.")
@click.option("--language", help="BCP 47 language tag of the posts, e.g. en or fr.")
@click.option("--from", "from_address", metavar="ADDRESS", help="The sender address of every issue.")
@click.option("--postal-address", help="Your postal address, required in every issue's footer by anti-spam law.")
@click.option("--provider", help="outbox (files, to try it out), smtp, mailgun, postmark, resend, buttondown or ses.")
@click.option("--timezone", help="IANA time zone of your post dates (default: this machine's).")
@pass_state
def init_command(
    state: State, directory: Path, title: str | None, url: str | None, language: str | None,
    from_address: str | None, postal_address: str | None, provider: str | None, timezone: str | None,
) -> None:  # fmt: skip
    """Start a newsletter in DIRECTORY (default: here): config, a first post, .gitignore and .env.

    At a terminal it asks for what the options do not give; without one (CI,
    scripts) it uses the defaults.  .env gets a fresh signing key (mode 0600)
    and .gitignore keeps it, the ledger, the outbox and build output out of git.

    \b
    Examples:
      newsletter init my-letter
      newsletter init --title "Field notes" --url https://notes.example.org/ --from news@example.org
    """
    from .scaffold import PROVIDERS, Answers, default_timezone, init_project

    defaults = Answers(timezone=default_timezone())
    given = {
        "title": title, "url": url, "language": language, "from_address": from_address,
        "postal_address": postal_address, "provider": provider, "timezone": timezone,
    }  # fmt: skip
    interactive = sys.stdin.isatty() and not state.quiet
    prompts = {
        "title": "Title", "url": "Site URL", "language": "Language", "from_address": "Sender address",
        "postal_address": "Postal address (footer)", "provider": f"Provider ({', '.join(PROVIDERS)})",
        "timezone": "Time zone",
    }  # fmt: skip
    answers = {}
    for name, value in given.items():
        if value is None:
            default = getattr(defaults, name)
            value = click.prompt(prompts[name], default=default) if interactive else default
        answers[name] = value
    report = init_project(directory, Answers(**answers), state.clock())
    click.echo(f"Started a newsletter in {report.root.resolve()}: {', '.join(report.written)}.")
    if not state.quiet:
        where = "" if directory == Path(".") else f"cd {directory} && "
        click.echo(f"Next: {where}newsletter build && newsletter preview && newsletter send --dry-run")


@cli.command("new", context_settings=CONTEXT)
@click.argument("title")
@pass_state
def new_command(state: State, title: str) -> None:
    """Write a new post titled TITLE into content/posts/, with a fresh id, dated now.

    The slug comes from the title (accents folded: "Été à Paris" → ete-a-paris);
    the date is now in site.timezone.  Edit the file, then build and send.

    \b
    Examples:
      newsletter new "Second issue"
      $EDITOR "$(newsletter new -q 'Notes from the road')"
    """
    path = state.project().new_post(title)
    if state.quiet:
        click.echo(str(path))
    else:
        click.echo(f"Wrote {path}")


@cli.command(context_settings=CONTEXT)
@click.option("--ping", is_flag=True, help="Tell the WebSub hub ([feed] websub_hub) which feeds changed.")
@pass_state
def build(state: State, ping: bool) -> None:
    """Build the feeds (Atom with RFC 5005 archives, JSON Feed, one per tag) and the web archive into public/.

    Every page is rendered in memory first and each file is replaced
    atomically, so a failure leaves public/ as it was.

    \b
    Examples:
      newsletter build && rsync -a public/ server:/srv/newsletter/
      newsletter build --ping      # after publishing: readers get the post at once
    """
    report = state.project().build(ping=ping)
    click.echo(f"Built {report.posts} posts into {report.public_dir} ({report.files} files).")
    if report.removed:
        shown = ", ".join(report.removed[:5]) + (", …" if len(report.removed) > 5 else "")
        click.echo(f"Removed {len(report.removed)} files no longer published: {shown}")
    if report.pinged:
        click.echo(f"Told the WebSub hub about {len(report.pinged)} changed feeds.")
    elif ping and not state.project().config.feed.websub_hub:
        click.echo("Note: --ping does nothing without [feed] websub_hub in newsletter.toml.", err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("slug", required=False)
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a web browser (or say where it is).")
@click.option("--serve", is_flag=True, help="Serve the site and every email locally; reload on changes.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port for --serve (127.0.0.1).")
@click.option("--screenshots", is_flag=True, help="PNGs of the email (800/375 px, light/dark) and its site page.")
@click.option("--chromium", metavar="PATH", help="The Chromium for --screenshots (default: the one on PATH).")
@pass_state
def preview(
    state: State, slug: str | None, open_browser: bool, serve: bool, port: int, screenshots: bool, chromium: str | None
) -> None:
    """Write an issue's email (HTML, text and .eml) to preview/SLUG/ for reading.

    Without SLUG, previews the newest published post.  Nothing is sent or
    recorded.  --serve runs a local server with the site and every issue's
    email, HTML and text, and reloads the browser when a post or template
    changes (Ctrl-C stops it).  --screenshots renders the email with headless
    Chromium at 800 and 375 px, light and dark, and the post's site page at
    both widths, into preview/SLUG/screenshots/.

    \b
    Examples:
      newsletter preview
      newsletter preview e20-petite-entreprise --open
      newsletter preview --serve --open
      newsletter preview --screenshots
    """
    project = state.project()
    if serve:
        live = project.live_preview()
        server, url = live.start("127.0.0.1", port)
        click.echo(f"Previewing on {url} (site and every issue's email); reloads on changes. Ctrl-C stops.")
        if open_browser:
            _open_in_browser(url, url)
        import threading

        try:
            threading.Event().wait()  # nobody sets it: the server runs until Ctrl-C
        except KeyboardInterrupt:
            click.echo("Stopped.")
        finally:
            live.stop()
            server.shutdown()
        return
    report = project.preview(slug)
    click.echo(f"Preview of «{report.post.title}» in {report.folder} (HTML {report.html_bytes / 1000:.1f} KB).")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if screenshots:
        shots = project.screenshots(slug, chromium=chromium)
        click.echo(f"Screenshots in {shots.folder}: {', '.join(path.name for path in shots.files.values())}")
    if open_browser:
        page = (report.folder / "email.html").resolve()
        _open_in_browser(page.as_uri(), f"{page} (text: {report.folder / 'email.txt'})")


def _open_in_browser(url: str, where: str) -> None:
    """Open ``url``; without a display (or a browser), say where the preview is instead."""
    import webbrowser

    from .preview import has_display

    if not has_display() or not webbrowser.open(url):
        click.echo(f"No display to open a browser on: the preview is at {where}")


@cli.command(context_settings=CONTEXT)
@click.argument("slug", required=False)
@click.option("--yes", "-y", is_flag=True, help="Send without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Render every message; send and record nothing.")
@click.option("--test-to", metavar="ADDRESS", help="Send one copy, subject prefixed [TEST], to ADDRESS; record nothing.")
@click.option("--correction", is_flag=True, help="Send SLUG again, marked as a correction, to those who received it.")
@click.option("--new-issue", is_flag=True, help="Send a post whose slug or content was already sent under another id.")
@click.option("--digest", is_flag=True, help="Gather every due post into one issue (templates/email/digest.*).")
@click.option("--force", is_flag=True, help="Send even when the preflight ('newsletter check') finds errors.")
@pass_state
def send(
    state: State, slug: str | None, yes: bool, dry_run: bool, test_to: str | None, correction: bool, new_issue: bool,
    digest: bool, force: bool,
) -> None:  # fmt: skip
    """Send each due post as an email issue, exactly once.

    Without SLUG, every published post not yet sent that is newer than the last
    one sent is due, and they go oldest first, each once (so two posts published
    between two timer runs are both mailed).  Before the first send only the
    newest is due: run 'newsletter mark-sent --all' once on an existing archive.

    Prints the plan (post, subject, provider, recipients) and sends only with
    --yes or after an interactive yes.  A post already sent is refused (exit 3
    when there is nothing new, 1 when SLUG names a sent post).  An interrupted
    send is always finished first, never re-sending what the ledger records as
    delivered.  One send runs at a time: a second one exits at once (exit 4).
    With --test-to, any post (drafts too) goes to one address through the
    configured provider and nothing is marked sent.  A post whose id was sent
    under another slug, or whose slug or content was sent under another id,
    is refused (an edited id must not mail everyone again); --new-issue says
    it really is a new issue.  --digest gathers the due posts into one issue
    and records each of them as sent once it went out.  The preflight of
    'newsletter check' runs first: a new issue with errors is refused unless
    --force (a resumed send only shows them: part of the list already has it).

    \b
    Examples:
      newsletter send --test-to me@example.org   # a [TEST] copy to yourself
      newsletter send --dry-run                  # the plan, nothing sent
      newsletter send --yes                      # from cron or CI
      newsletter send --digest --yes             # every due post in one issue
      newsletter send --correction SLUG --yes    # an edited post, again
      newsletter send --new-issue SLUG --yes     # a new issue reusing a sent slug
    """
    project = state.project()
    if test_to is not None:
        tested = project.send_test(test_to, slug)
        click.echo(f"Test copy of «{tested.post.title}» sent to {tested.address} through {tested.provider}; nothing recorded.")
        return
    if not dry_run:  # confirmations the service could not send yet go out first, even with nothing new
        flushed = project.flush_outgoing()
        if flushed.sent or flushed.deferred or flushed.failed:
            click.echo(f"Outgoing messages: {flushed.describe()}.")
    planned = project.plan(slug, correction=correction, new_issue=new_issue, dry_run=dry_run, digest=digest)
    if planned.took_over_from is not None:
        click.echo(f"Note: took over the lock left by pid {planned.took_over_from}, which is gone.", err=True)
    for line in planned.lines:
        click.echo(line)
    from .progress import elapsed, progress_bar

    started = time.monotonic()
    _echo_findings(project.check_planned(planned))
    if not dry_run:
        project.refuse_failing(planned, force=force)  # before the prompt: no "yes" to a refused issue
    if dry_run:
        with progress_bar("Rendering", quiet=state.quiet) as progress:
            built = project.dry_run(planned, progress)
        click.echo(f"Dry run: {built} messages rendered in {elapsed(started)}; nothing sent, nothing recorded.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("not sent: no terminal to confirm on", hint="add --yes to send without a prompt")
        due = len(planned.plan.due)
        question = "Send this issue now?" if due < 2 else f"Send these {due} issues now?"
        click.confirm(question, abort=True)
    totals: dict[str, int] = {}
    issues = 0
    with progress_bar("Sending", quiet=state.quiet) as progress:
        for sent, report in project.send_due(planned, progress, force=force):
            counts = ", ".join(f"{n} {name}" for name, n in sorted(report.counts.items()))
            counts = counts or "delivered by the provider"
            progress.clear()
            if not report.finished:
                click.echo(f"Not finished: {counts}. Run 'newsletter send' again to resume.", err=True)
                click.get_current_context().exit(EXIT_ERROR)
            issues += 1
            for name, n in report.counts.items():
                totals[name] = totals.get(name, 0) + n
            click.echo(f"Sent «{sent.plan.post.title}» through {sent.plan.provider}: {counts}.")
    summary = ", ".join(f"{n} {name}" for name, n in sorted(totals.items())) or "handed to the provider"
    click.echo(f"Done: {issues} issue{'s' if issues != 1 else ''}, {summary}, in {elapsed(started)}.")
    if project.config.feed.websub_hub:
        try:
            click.echo(f"Told the WebSub hub about {len(project.ping_hub())} feeds.")
        except NewsletterError as error:  # the issue went out; a missed ping only delays feed readers
            click.echo(f"Warning: {error.one_line()}", err=True)


def _echo_findings(report) -> None:
    """The findings, indented under the report they belong to (stdout: a refusal is the one stderr line)."""
    for finding in report.findings:
        label = "error:  " if finding.severity == "error" else "warning:"
        click.echo(f"  {label} [{finding.code}] {finding.message}")


@cli.command(context_settings=CONTEXT)
@click.argument("slug", required=False)
@click.option("--all", "all_posts", is_flag=True, help="Check every published post, not only the newest.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def check(state: State, slug: str | None, all_posts: bool, as_json: bool) -> None:
    """The preflight of an issue, before sending it: exit 1 when it finds errors.

    Without SLUG, checks the newest published post (what 'send' would send).
    Errors: HTML over Gmail's 102 KB clip, no unsubscribe link or postal
    address in a part, a relative link or image, an image without alt text,
    text below WCAG AA contrast (light or dark), an empty subject.  Warnings:
    CSS that Gmail, Apple Mail, Outlook.com or Outlook for Windows do not
    render (after caniemail.com), a link to the site with no built file
    behind it, a long or all-caps subject, no preheader, a plain-text part
    much shorter than the HTML, oversized images.  'send' runs the
    same checks and refuses errors unless --force.

    \b
    Examples:
      newsletter build && newsletter check
      newsletter check e20-petite-entreprise --json | jq '.issues[0].findings'
      newsletter check --all               # in CI, every published post
    """
    from .check import summary

    reports = state.project().check(slug, all_posts=all_posts)
    if as_json:
        click.echo(json.dumps({"issues": [r.as_dict() for r in reports]}, ensure_ascii=False, indent=2))
    else:
        for report in reports:
            click.echo(summary(report))
            _echo_findings(report)
    if any(not r.passed for r in reports):
        click.get_current_context().exit(EXIT_ERROR)


@cli.command(context_settings=CONTEXT)
@click.argument("issue")
@click.option("--assume-sent", "decision", flag_value="assume-sent", help="Count the uncertain deliveries as delivered.")
@click.option("--resend", "decision", flag_value="resend", help="Send the uncertain deliveries again on the next send.")
@pass_state
def resolve(state: State, issue: str, decision: str | None) -> None:
    """Decide what became of deliveries nothing could reconcile.

    ISSUE is the slug of the post (or the issue key).  After a crash the
    provider is asked first; only when it cannot tell does a send stop and
    leave the decision here.  --assume-sent risks that some never got it;
    --resend risks that some get it twice.  Then run 'newsletter send'.

    \b
    Example:
      newsletter resolve e20-petite-entreprise --assume-sent && newsletter send --yes
    """
    if decision is None:
        raise UsageError("choose --assume-sent or --resend", hint="see 'newsletter resolve --help'")
    report = state.project().resolve(issue, assume_sent=decision == "assume-sent")
    verb = "counted as delivered" if report.assume_sent else "queued to be sent again"
    click.echo(f"{report.changed} uncertain deliveries of «{report.subject}» {verb}. Run 'newsletter send' to finish.")


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--summary", is_flag=True, help="With --json: counts only, no per-recipient deliveries.")
@pass_state
def status(state: State, as_json: bool, summary: bool) -> None:
    """Show each post: sent or not, when, to how many, through which provider.

    \b
    Examples:
      newsletter status
      newsletter status --json --summary | jq '.posts[0].state'
    """
    from .status import status_line

    rows = state.project().status(deliveries=as_json and not summary)
    if as_json:
        click.echo(json.dumps({"posts": rows}, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(status_line(row))


@cli.command("mark-sent", context_settings=CONTEXT)
@click.argument("slugs", nargs=-1)
@click.option("--all", "all_posts", is_flag=True, help="Mark every published post as sent.")
@pass_state
def mark_sent(state: State, slugs: tuple[str, ...], all_posts: bool) -> None:
    """Record posts as already sent without mailing anyone.

    Run it once with --all when you point newsletter at an existing archive,
    so the back catalogue is never mailed.

    \b
    Examples:
      newsletter mark-sent --all
      newsletter mark-sent e20-petite-entreprise
    """
    for slug, outcome in state.project().mark_sent(slugs, all_posts=all_posts):
        click.echo(f"{'already sent' if outcome == 'already sent' else 'marked sent':<15}{slug}")


@cli.group(context_settings=CONTEXT)
def subscribers() -> None:
    """Manage the local subscriber list (for providers where we keep the list).

    \b
    Examples:
      newsletter subscribers add alice@example.org
      newsletter subscribers import buttondown-export.csv
      newsletter subscribers list --status active
    """


@subscribers.command("add", context_settings=CONTEXT)
@click.argument("emails", nargs=-1, required=True)
@click.option("--source", default="cli", show_default=True, help="Where the subscriber came from.")
@pass_state
def subscribers_add(state: State, emails: tuple[str, ...], source: str) -> None:
    """Add one or more addresses as active subscribers (you vouch for their consent).

    Addresses that unsubscribed, bounced or complained are never re-added here;
    they can subscribe again through the form, which asks them to confirm.

    \b
    Example:
      newsletter subscribers add --source conference alice@example.org bruno@example.org
    """
    from .subscribers import outcome_lines

    for line in outcome_lines(state.project().subscribers.add(emails, source=source)):
        click.echo(line)


@subscribers.command("remove", context_settings=CONTEXT)
@click.argument("emails", nargs=-1, required=True)
@pass_state
def subscribers_remove(state: State, emails: tuple[str, ...]) -> None:
    """Unsubscribe addresses.  They stay in the ledger, marked unsubscribed, so no import re-adds them.

    \b
    Example:
      newsletter subscribers remove alice@example.org
    """
    from .subscribers import outcome_lines

    for line in outcome_lines(state.project().subscribers.remove(emails)):
        click.echo(line)


@subscribers.command("list", context_settings=CONTEXT)
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one JSON array.")
@pass_state
def subscribers_list(state: State, status: str | None, as_json: bool) -> None:
    """List subscribers: address, status, source, date added.

    \b
    Examples:
      newsletter subscribers list --status bounced
      newsletter subscribers list --json | jq -r '.[].email'
    """
    rows = state.project().subscribers.list(status)
    if as_json:  # streamed row by row: a million subscribers never sit in memory at once
        click.echo("[", nl=False)
        for number, row in enumerate(rows):
            shown = {k: row.get(k) for k in ("email", "status", "source", "created_at")}
            click.echo(("," if number else "") + "\n  " + json.dumps(shown, ensure_ascii=False), nl=False)
        click.echo("\n]")
        return
    for row in rows:
        click.echo(f"{row['email']}\t{row['status']}\t{row['source']}\t{row['created_at'][:10]}")


@subscribers.command("import", context_settings=CONTEXT)
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--source", default=None, help="Recorded as where these subscribers came from (default: the file name).")
@pass_state
def subscribers_import(state: State, csv_file, source: str | None) -> None:
    """Import addresses from a CSV file (an 'email' column, else the first column).

    Exports of Buttondown, Mailchimp and Substack are read with their status:
    rows that unsubscribed, bounced or complained are recorded as suppressed,
    never active; unconfirmed rows are left out.  Invalid lines are reported and
    skipped; duplicates and suppressed addresses are counted, never re-activated.

    \b
    Example:
      newsletter subscribers import --source buttondown export.csv
    """
    book = state.project().subscribers
    report = book.import_csv(csv_file, source=source or f"import:{Path(csv_file.name).name}")
    for line, problem in report.invalid:
        click.echo(f"Skipped {csv_file.name}:{line}: {problem}", err=True)
    left = ", ".join(f"{status} {count}" for status, count in report.left.items())
    click.echo(
        f"Imported {report.added}, duplicates {report.duplicate}, suppressed {report.suppressed},"
        f" invalid {len(report.invalid)}; recorded as suppressed: {left}; unconfirmed (not imported) {report.unconfirmed}."
    )


@subscribers.command("reactivate", context_settings=CONTEXT)
@click.argument("email")
@click.option("--override-unsubscribe", is_flag=True, help="Lift an unsubscribe (the person asked to come back).")
@click.option("--override-bounce", is_flag=True, help="Lift a bounce (the address works again).")
@click.option("--override-complaint", is_flag=True, help="Lift a spam complaint (the person withdrew it).")
@pass_state
def subscribers_reactivate(
    state: State, email: str, override_unsubscribe: bool, override_bounce: bool, override_complaint: bool
) -> None:
    """Make a suppressed address active again: the only way, and it names what it overrides.

    Confirmations, new requests, imports and webhooks never lift a suppression.

    \b
    Example:
      newsletter subscribers reactivate alice@example.org --override-unsubscribe
    """
    overrides = {"unsubscribed": override_unsubscribe, "bounced": override_bounce, "complained": override_complaint}
    change = state.project().subscribers.reactivate(email, overrides=[k for k, v in overrides.items() if v])
    click.echo(f"{change.outcome}  {change.address}")


@subscribers.command("export", context_settings=CONTEXT)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Write to FILE (default: stdout).")
@pass_state
def subscribers_export(state: State, output) -> None:
    """Export every subscriber as CSV.

    \b
    Example:
      newsletter subscribers export -o subscribers.csv
    """
    state.project().subscribers.export_csv(output)


@cli.command("backup", context_settings=CONTEXT)
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@pass_state
def backup_command(state: State, path: Path | None) -> None:
    """Write a consistent copy of the ledger to PATH, safe while sends and the service run.

    Default PATH: newsletter-YYYYMMDD-HHMMSS.db next to the ledger.  To restore, stop
    the service and any send, then copy the backup over send.database (and delete the
    ledger's -wal and -shm files); the next 'newsletter send' resumes from it.

    \b
    Example:
      newsletter backup /var/backups/newsletter/ledger.db
    """
    target, size = state.project().backup(path)
    click.echo(f"Backed up the ledger to {target} ({size} bytes).")


@cli.command("serve", context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads.")
@click.option("--behind-proxy", is_flag=True, help="Take the client address from X-Forwarded-For (nginx in front).")
@click.option("--proxy-hops", default=1, show_default=True, type=click.IntRange(1, 10),
              help="How many proxies in front add to X-Forwarded-For (with --behind-proxy).")  # fmt: skip
@click.option("--trusted-proxy", default="127.0.0.1", show_default=True,
              help="Address the proxy connects from (with --behind-proxy); '*' trusts any.")  # fmt: skip
@click.option("--max-connections", default=1000, show_default=True, type=click.IntRange(10, 100_000),
              help="Open connections accepted at once (idle ones included).")  # fmt: skip
@pass_state
def serve_command(
    state: State, host: str, port: int, threads: int, behind_proxy: bool, proxy_hops: int, trusted_proxy: str,
    max_connections: int,
) -> None:  # fmt: skip
    """Run the subscribe, confirm and unsubscribe pages, bounce webhooks and the archive (waitress).

    GET links only show a page; their button's POST acts.  One-click
    unsubscribe (RFC 8058) POSTs are answered 200, no redirect, no cookie.
    The subscribe form only records the request; a background worker sends
    the confirmation mail (retried while the provider is down).

    \b
    Example:
      newsletter serve --host 127.0.0.1 --port 8080 --behind-proxy
    """
    from . import web

    project = state.project()
    app = web.create_app(project)
    server = web.make_server(
        app, host=host, port=port, threads=threads, behind_proxy=behind_proxy, proxy_hops=proxy_hops,
        trusted_proxy=trusted_proxy, connection_limit=max_connections,
    )  # fmt: skip
    click.echo(f"Serving {project.config.public_dir} and the subscription pages on http://{host}:{server.port}/")
    server.run()


@cli.command("outgoing", context_settings=CONTEXT)
@pass_state
def outgoing_command(state: State) -> None:
    """Send the queued confirmation mails (and audience-provider subscriptions) now.

    'newsletter serve' sends them in the background and 'newsletter send'
    before each issue; this is for when the service is not running.

    \b
    Example:
      newsletter outgoing
    """
    report = state.project().flush_outgoing(ignore_backoff=True)
    click.echo(f"Outgoing messages: {report.describe()}.")
    if report.deferred or report.failed:
        click.get_current_context().exit(EXIT_ERROR)


@cli.command("doctor", context_settings=CONTEXT)
@pass_state
def doctor_command(state: State) -> None:
    """Check the setup: Python version, signing key strength, file modes, the provider's preflight.

    Exits 1 when a check finds a problem (warnings alone exit 0).

    \b
    Example:
      newsletter doctor
    """
    findings = state.project().doctor()
    for finding in findings:
        click.echo(finding.line())
    if any(finding.level == "problem" for finding in findings):
        click.get_current_context().exit(EXIT_ERROR)


@cli.command("providers", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def providers_command(as_json: bool) -> None:
    """List the installed providers and what each can do.

    \b
    Example:
      newsletter providers --json
    """
    from .providers import BrokenPlugin, available

    rows = []
    for name, factory in available().items():
        if isinstance(factory, BrokenPlugin):
            rows.append({"name": name, "error": factory.error})
        else:
            rows.append({"name": name, **dataclasses.asdict(factory.capabilities)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']:<10} (failed to load: {row['error']})")
            continue
        batch = row["max_batch"] or "whole list"
        click.echo(
            f"{row['name']:<10} family={row['family']} max_batch={batch} idempotency={'yes' if row['idempotency'] else 'no'}"
            f" lookup={'yes' if row['lookup'] else 'no'} custom_headers={'yes' if row['custom_headers'] else 'no'}"
            f" unsubscribe={row['unsubscribe']}"
        )


def main() -> None:
    cli(obj=State())
