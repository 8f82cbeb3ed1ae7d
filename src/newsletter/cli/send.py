"""The commands that send and keep the ledger: send, resolve, status, mark-sent, backup, outgoing.
Each parses its options, calls the project and prints."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EXIT_ERROR, NewsletterError, UsageError
from . import State, command, pass_state
from .publish import echo_findings

if TYPE_CHECKING:
    from ..outgoing import OutgoingReport
    from ..project import Newsletter, PlannedSend


@command("send")
@click.argument("slug", required=False)
@click.option("--yes", "-y", is_flag=True, help="Send without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Render every message; send and record nothing.")
@click.option(
    "--test-to", metavar="ADDRESS", help="Send one copy, subject prefixed [TEST], to ADDRESS; record nothing."
)
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
        click.echo(f"Test copy of «{tested.post.title}» sent to {tested.address} through {tested.provider};"
                   " nothing recorded.")  # fmt: skip
        return
    if not dry_run:  # confirmations the service could not send yet go out first, even with nothing new
        _echo_outgoing(project.flush_outgoing(), only_if_any=True)
    planned = project.plan(slug, correction=correction, new_issue=new_issue, dry_run=dry_run, digest=digest)
    started = time.monotonic()
    _echo_plan(project, planned)
    if dry_run:
        _dry_run(project, planned, started, quiet=state.quiet)
        return
    project.refuse_failing(planned, force=force)  # before the prompt: no "yes" to a refused issue
    _confirm(planned, yes=yes)
    _send_due(project, planned, started, quiet=state.quiet, force=force)


def _echo_outgoing(report: OutgoingReport, *, only_if_any: bool = False) -> None:
    if report.sent or report.deferred or report.failed or not only_if_any:
        click.echo(f"Outgoing messages: {report.describe()}.")


def _echo_plan(project: Newsletter, planned: PlannedSend) -> None:
    """The plan as the editor reads it before saying yes, then the preflight's findings."""
    if planned.took_over_from is not None:
        click.echo(f"Note: took over the lock left by pid {planned.took_over_from}, which is gone.", err=True)
    for line in planned.lines:
        click.echo(line)
    echo_findings(project.check_planned(planned))


def _dry_run(project: Newsletter, planned: PlannedSend, started: float, *, quiet: bool) -> None:
    from .progress import elapsed, progress_bar

    with progress_bar("Rendering", quiet=quiet) as progress:
        built = project.dry_run(planned, progress)
    click.echo(f"Dry run: {built} messages rendered in {elapsed(started)}; nothing sent, nothing recorded.")


def _confirm(planned: PlannedSend, *, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("not sent: no terminal to confirm on", hint="add --yes to send without a prompt")
    due = len(planned.plan.due)
    click.confirm("Send this issue now?" if due < 2 else f"Send these {due} issues now?", abort=True)


def _counts(counts: dict[str, int], default: str) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or default


def _send_due(project: Newsletter, planned: PlannedSend, started: float, *, quiet: bool, force: bool) -> None:
    """Send every due issue with a progress bar, one line per issue, then the totals."""
    from .progress import elapsed, progress_bar

    totals: dict[str, int] = {}
    issues = 0
    with progress_bar("Sending", quiet=quiet) as progress:
        for sent, report in project.send_due(planned, progress, force=force):
            counts = _counts(report.counts, "delivered by the provider")
            progress.clear()
            if not report.finished:
                click.echo(f"Not finished: {counts}. Run 'newsletter send' again to resume.", err=True)
                click.get_current_context().exit(EXIT_ERROR)
            issues += 1
            for name, n in report.counts.items():
                totals[name] = totals.get(name, 0) + n
            click.echo(f"Sent «{sent.plan.post.title}» through {sent.plan.provider}: {counts}.")
    summary = _counts(totals, "handed to the provider")
    click.echo(f"Done: {issues} issue{'s' if issues != 1 else ''}, {summary}, in {elapsed(started)}.")
    if project.config.feed.websub_hub:
        try:
            click.echo(f"Told the WebSub hub about {len(project.ping_hub())} feeds.")
        except NewsletterError as error:  # the issue went out; a missed ping only delays feed readers
            click.echo(f"Warning: {error.one_line()}", err=True)


@command("resolve")
@click.argument("issue")
@click.option(
    "--assume-sent", "decision", flag_value="assume-sent", help="Count the uncertain deliveries as delivered."
)
@click.option("--resend", "decision", flag_value="resend", help="Send the uncertain deliveries again on the next send.")
@click.option("--chunk", "chunks", type=click.IntRange(min=0), multiple=True, metavar="N",
              help="Only the deliveries of chunk N, as the send's refusal names it (repeatable).")  # fmt: skip
@pass_state
def resolve(state: State, issue: str, decision: str | None, chunks: tuple[int, ...]) -> None:
    """Decide what became of deliveries nothing could reconcile.

    ISSUE is the slug of the post (or the issue key).  After a crash the
    provider is asked first; only when it cannot tell does a send stop and
    leave the decision here.  --assume-sent risks that some never got it;
    --resend risks that some get it twice.  With several connections, each
    chunk in doubt is named, and each can be decided on its own with --chunk.
    Then run 'newsletter send'.

    \b
    Examples:
      newsletter resolve e20-petite-entreprise --assume-sent && newsletter send --yes
      newsletter resolve e20-petite-entreprise --assume-sent --chunk 3
      newsletter resolve e20-petite-entreprise --resend --chunk 4
    """
    if decision is None:
        raise UsageError("choose --assume-sent or --resend", hint="see 'newsletter resolve --help'")
    report = state.project().resolve(issue, assume_sent=decision == "assume-sent", chunks=chunks)
    verb = "counted as delivered" if report.assume_sent else "queued to be sent again"
    click.echo(f"{report.changed} uncertain deliveries of «{report.subject}» {verb}. Run 'newsletter send' to finish.")


@command("status")
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
    from ..status import status_line

    rows = state.project().status(deliveries=as_json and not summary)
    if as_json:
        click.echo(json.dumps({"posts": rows}, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(status_line(row))


@command("mark-sent")
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


@command("backup")
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


@command("outgoing")
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
    _echo_outgoing(report)
    if report.deferred or report.failed:
        click.get_current_context().exit(EXIT_ERROR)
