"""``newsletter subscribers …``: the local list, as the editor manages it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import click

from . import CONTEXT, STATUSES, State, group, pass_state


@group("subscribers")
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
    from ..subscribers import outcome_lines

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
    from ..subscribers import outcome_lines

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
def subscribers_import(state: State, csv_file: IO[str], source: str | None) -> None:
    """Import addresses from a CSV file (an 'email' column, else the first column).

    Exports of Buttondown, Mailchimp and Substack are read with their status:
    rows that unsubscribed, bounced or complained are recorded as suppressed,
    never active; unconfirmed rows are left out.  Invalid lines are reported and
    skipped; duplicates and suppressed addresses are counted, never re-activated.

    \b
    Example:
      newsletter subscribers import --source buttondown export.csv
    """
    from .progress import progress_bar

    book = state.project().subscribers
    with progress_bar("Importing", quiet=state.quiet) as progress:
        report = book.import_csv(csv_file, source=source or f"import:{Path(csv_file.name).name}", progress=progress)
    for line, problem in report.invalid:
        click.echo(f"Skipped {csv_file.name}:{line}: {problem}", err=True)
    left = ", ".join(f"{status} {count}" for status, count in report.left.items())
    click.echo(
        f"Imported {report.added}, duplicates {report.duplicate}, suppressed {report.suppressed},"
        f" invalid {len(report.invalid)}; recorded as suppressed: {left};"
        f" unconfirmed (not imported) {report.unconfirmed}."
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
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Write to FILE (default: stdout)."
)
@pass_state
def subscribers_export(state: State, output: IO[str]) -> None:
    """Export every subscriber as CSV.

    \b
    Example:
      newsletter subscribers export -o subscribers.csv
    """
    state.project().subscribers.export_csv(output)
