"""The ``newsletter`` command: a thin click layer over the library.

Only this module turns typed library errors into one line on stderr and an
exit code (1 bad input, 2 bad usage, 3 nothing to send); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, closing
import webbrowser
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import click

from . import __version__
from .audience import export_csv, import_csv, normalize_address
from .config import Config, find_config, load_config
from .content import Post, published, read_posts
from .errors import EXIT_ERROR, NewsletterError, NothingToSend, NotFound, UsageError
from .files import write_tree
from .providers import available, load_provider
from .render import render_issue
from .lock import SendLock
from .send import choose, execute, pick_post, plan_send, preview_recipient, render_all, send_test, sent_record
from .site import build_site
from .store import ACTIVE, Ledger
from .templates import make_environment


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class State:
    """What every command shares: where the config is, the clock, and lazily opened resources."""

    config_path: Path | None = None
    debug: bool = False
    clock: Callable[[], datetime] = _utc_now
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path or find_config())
        return self._config

    def ledger(self) -> Ledger:
        return Ledger(self.config.database_path)

    def posts(self) -> list[Post]:
        return read_posts(self.config)


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


@click.group(cls=NewsletterGroup)
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Path of newsletter.toml (default: ./newsletter.toml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Publish Markdown posts as an Atom feed, a web archive and email issues sent exactly once.

    Run the commands in the folder that holds newsletter.toml.  Exit codes:
    0 done, 1 bad input (post, config, provider, ledger), 2 bad usage,
    3 nothing new to send.
    """
    state = ctx.ensure_object(State)
    state.config_path = config_path or state.config_path
    state.debug = debug or state.debug


pass_state = click.make_pass_decorator(State, ensure=True)


@cli.command()
@pass_state
def build(state: State) -> None:
    """Build the Atom feed and the web archive into public/.

    Every page is rendered in memory first and each file is replaced
    atomically, so a failure leaves public/ as it was.
    """
    config = state.config
    posts = published(state.posts(), state.clock())
    env = make_environment(config.templates_dir)
    files = build_site(config, posts, env)
    click.echo(f"Built {len(posts)} posts into {config.public_dir} ({len(files)} files).")


@cli.command()
@click.argument("slug", required=False)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML preview in a web browser.")
@pass_state
def preview(state: State, slug: str | None, open_browser: bool) -> None:
    """Write an issue's email (HTML, text and .eml) to preview/SLUG/ for reading.

    Without SLUG, previews the newest published post.  Nothing is sent or recorded.
    """
    config = state.config
    now = state.clock()
    post = pick_post(state.posts(), now, slug)
    issue = render_issue(config, post, make_environment(config.templates_dir))
    try:
        keys = config.token_keys()
    except NewsletterError:
        keys = None
    recipient = preview_recipient(config, keys, now)
    write_tree(
        config.preview_dir,
        {
            f"{post.slug}/email.html": issue.personal_html(recipient).encode("utf-8"),
            f"{post.slug}/email.txt": issue.personal_text(recipient).encode("utf-8"),
            f"{post.slug}/email.eml": issue.message_bytes(recipient, date=now),
        },
    )
    folder = config.preview_dir / post.slug
    click.echo(f"Preview of «{post.title}» in {folder} (HTML {issue.html_bytes / 1000:.1f} KB).")
    for warning in issue.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if open_browser:
        webbrowser.open((folder / "email.html").resolve().as_uri())


@cli.command()
@click.argument("slug", required=False)
@click.option("--yes", "-y", is_flag=True, help="Send without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Render every message; send and record nothing.")
@click.option("--test-to", metavar="ADDRESS", help="Send one copy, subject prefixed [TEST], to ADDRESS; record nothing.")
@click.option("--correction", is_flag=True, help="Send SLUG again, marked as a correction, to those who received it.")
@pass_state
def send(state: State, slug: str | None, yes: bool, dry_run: bool, test_to: str | None, correction: bool) -> None:
    """Send the newest published post as an email issue, exactly once.

    Prints the plan (post, subject, provider, recipients) and sends only with
    --yes or after an interactive yes.  A post already sent is refused (exit 3
    when there is nothing new, 1 when SLUG names a sent post).  An interrupted
    send is always finished first, never re-sending what the ledger records as
    delivered.  One send runs at a time: a second one exits at once (exit 4).
    With --test-to, any post (drafts too) goes to one address through the
    configured provider and nothing is marked sent.
    """
    config = state.config
    posts = state.posts()
    keys = config.token_keys()
    if test_to is not None:
        address = normalize_address(test_to)
        post = pick_post(posts, state.clock(), slug)
        with closing(load_provider(config)) as provider:
            issue = render_issue(
                config, post, make_environment(config.templates_dir), subject_prefix="[TEST] ", variant="test"
            )
            send_test(config, issue, provider, keys, address, state.clock, config.retry)
        click.echo(f"Test copy of «{post.title}» sent to {address} through {provider.name}; nothing recorded.")
        return
    with ExitStack() as stack:
        if not dry_run:
            lock = stack.enter_context(SendLock(lock_path(config)))
            if lock.took_over:
                click.echo(f"Note: took over the lock left by pid {lock.previous.get('pid')}, which is gone.", err=True)
        ledger = stack.enter_context(closing(state.ledger()))
        choice = choose(posts, ledger, state.clock(), slug, correction=correction)
        provider = stack.enter_context(closing(load_provider(config)))
        env = make_environment(config.templates_dir)
        plan = plan_send(config, ledger, choice, env, provider, subscribers=ledger.count_subscribers(ACTIVE))
        if not plan.recipients and plan.audience_local:
            raise NothingToSend(
                "no active subscribers", hint="add some with 'newsletter subscribers add' or 'subscribers import'"
            )
        for line in plan.describe():
            click.echo(line)
        if dry_run:
            built = render_all(config, ledger, plan, keys, state.clock)
            click.echo(f"Dry run: {built} messages rendered; nothing sent, nothing recorded.")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("not sent: no terminal to confirm on", hint="add --yes to send without a prompt")
            click.confirm("Send this issue now?", abort=True)
        report = execute(config, ledger, plan, provider, keys, state.clock, config.retry)
    counts = ", ".join(f"{n} {name}" for name, n in sorted(report.counts.items())) or "delivered by the provider"
    if not report.finished:
        click.echo(f"Not finished: {counts}. Run 'newsletter send' again to resume.", err=True)
        click.get_current_context().exit(EXIT_ERROR)
    click.echo(f"Sent «{plan.post.title}» through {provider.name}: {counts}.")


def lock_path(config: Config) -> Path:
    """The send lock lives beside the ledger it protects."""
    return config.database_path.with_name(config.database_path.name + ".lock")


@cli.command()
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
    """
    if decision is None:
        raise UsageError("choose --assume-sent or --resend", hint="see 'newsletter resolve --help'")
    with SendLock(lock_path(state.config)), closing(state.ledger()) as ledger:
        records = [r for r in ledger.unfinished_issues() if issue in (r.slug, r.key)]
        if not records:
            raise NotFound(f"no unfinished issue named {issue!r}", hint="run 'newsletter status' to see unfinished sends")
        record = records[0]
        changed = ledger.resolve(record.id, assume_sent=decision == "assume-sent", now=state.clock())
    verb = "counted as delivered" if decision == "assume-sent" else "queued to be sent again"
    click.echo(f"{changed} uncertain deliveries of «{record.subject}» {verb}. Run 'newsletter send' to finish.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--summary", is_flag=True, help="With --json: counts only, no per-recipient deliveries.")
@pass_state
def status(state: State, as_json: bool, summary: bool) -> None:
    """Show each post: sent or not, when, to how many, through which provider."""
    now = state.clock()
    ledger = state.ledger()
    try:
        rows = []
        for post in state.posts():
            issues = []
            for record in ledger.issues_for_post(post.id):
                entry = {
                    "key": record.key,
                    "kind": record.kind,
                    "status": record.status,
                    "provider": record.provider,
                    "recipients": record.recipients,
                    "created_at": record.created_at,
                    "sent_at": record.sent_at,
                    "changed_since_sent": record.content_hash != post.content_hash,
                    "counts": ledger.delivery_counts(record.id),
                }
                if as_json and not summary:
                    entry["deliveries"] = [
                        {k: d[k] for k in ("email", "state", "provider_message_id", "error", "updated_at")}
                        for d in ledger.deliveries(record.id)
                    ]
                issues.append(entry)
            rows.append(
                {
                    "slug": post.slug,
                    "id": post.id,
                    "title": post.title,
                    "date": post.date.isoformat(),
                    "state": _post_state(post, issues, now),
                    "issues": issues,
                }
            )
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps({"posts": rows}, ensure_ascii=False, indent=2))
        return
    for row in rows:
        line = f"{row['state']:<9} {row['date'][:10]}  {row['slug']}"
        done = next((i for i in reversed(row["issues"]) if i["status"] in ("sent", "marked")), None)
        if done and done["status"] == "sent":
            what = "correction sent" if done["kind"] == "correction" else "sent"
            audience = done["recipients"] if done["recipients"] is not None else f"the {done['provider']} audience"
            line += f"  {what} {done['sent_at'][:16]} to {audience} via {done['provider']}"
            if done["changed_since_sent"]:
                line += " (changed since sent)"
        elif done:
            line += f"  marked sent {done['sent_at'][:16]}"
        click.echo(line)


def _post_state(post: Post, issues: list[dict], now: datetime) -> str:
    statuses = {i["status"] for i in issues}
    if "sent" in statuses:
        return "sent"
    if "marked" in statuses:
        return "marked"
    if "sending" in statuses:
        return "sending"
    if post.draft:
        return "draft"
    if post.date > now:
        return "scheduled"
    return "not sent"


@cli.command("mark-sent")
@click.argument("slugs", nargs=-1)
@click.option("--all", "all_posts", is_flag=True, help="Mark every published post as sent.")
@pass_state
def mark_sent(state: State, slugs: tuple[str, ...], all_posts: bool) -> None:
    """Record posts as already sent without mailing anyone.

    Run it once with --all when you point newsletter at an existing archive,
    so the back catalogue is never mailed.
    """
    if not slugs and not all_posts:
        raise UsageError("name the posts to mark", hint="pass SLUG... or --all")
    config = state.config
    now = state.clock()
    candidates = published(state.posts(), now)
    if not all_posts:
        by_slug = {p.slug: p for p in candidates}
        missing = [s for s in slugs if s not in by_slug]
        if missing:
            raise NotFound(f"slug {missing[0]!r} matches no published post", hint="run 'newsletter status'")
        candidates = [by_slug[s] for s in slugs]
    env = make_environment(config.templates_dir)
    ledger = state.ledger()
    try:
        for post in candidates:
            if sent_record(ledger, post) is not None:
                click.echo(f"already sent   {post.slug}")
                continue
            issue = render_issue(config, post, env)
            ledger.mark_issue(
                key=issue.key, post_id=post.id, slug=post.slug, content_hash=post.content_hash,
                subject=issue.subject, now=now,
            )  # fmt: skip
            click.echo(f"marked sent    {post.slug}")
    finally:
        ledger.close()


@cli.group()
def subscribers() -> None:
    """Manage the local subscriber list (for providers where we keep the list)."""


@subscribers.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--source", default="cli", show_default=True, help="Where the subscriber came from.")
@pass_state
def subscribers_add(state: State, emails: tuple[str, ...], source: str) -> None:
    """Add one or more addresses as active subscribers (you vouch for their consent).

    Addresses that unsubscribed, bounced or complained are never re-added here;
    they can subscribe again through the form, which asks them to confirm.
    """
    addresses = [normalize_address(e) for e in emails]
    ledger = state.ledger()
    try:
        for address in addresses:
            _, outcome = ledger.add_subscriber(address, source=source, now=state.clock())
            label = {"added": "added", "known": "already subscribed", "suppressed": "suppressed, not added"}[outcome]
            click.echo(f"{label}  {address}")
    finally:
        ledger.close()


@subscribers.command("remove")
@click.argument("emails", nargs=-1, required=True)
@pass_state
def subscribers_remove(state: State, emails: tuple[str, ...]) -> None:
    """Unsubscribe addresses.  They stay in the ledger, marked unsubscribed, so no import re-adds them."""
    addresses = [normalize_address(e) for e in emails]
    ledger = state.ledger()
    try:
        for address in addresses:
            row = ledger.subscriber_by_email(address)
            if row is None:
                raise NotFound(f"{address} is not a subscriber", hint="run 'newsletter subscribers list'")
            changed = ledger.unsubscribe(row["id"], now=state.clock())
            click.echo(f"{'unsubscribed' if changed else 'already unsubscribed'}  {address}")
    finally:
        ledger.close()


@subscribers.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced", "complained"]), help="Only this status."
)
@pass_state
def subscribers_list(state: State, status: str | None) -> None:
    """List subscribers: address, status, source, date added."""
    ledger = state.ledger()
    try:
        for row in ledger.subscribers(status):
            click.echo(f"{row['email']}\t{row['status']}\t{row['source']}\t{row['created_at'][:10]}")
    finally:
        ledger.close()


@subscribers.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--source", default=None, help="Recorded as where these subscribers came from (default: the file name).")
@pass_state
def subscribers_import(state: State, csv_file, source: str | None) -> None:
    """Import addresses from a CSV file (an 'email' column, else the first column).

    Invalid lines are reported and skipped; duplicates and suppressed addresses
    (unsubscribed, bounced, complained) are skipped and counted, never re-activated.
    """
    ledger = state.ledger()
    try:
        try:
            report = import_csv(ledger, csv_file, source=source or f"import:{Path(csv_file.name).name}", now=state.clock())
        except UnicodeDecodeError:
            raise NewsletterError("not valid UTF-8", where=csv_file.name, hint="save the CSV as UTF-8")
    finally:
        ledger.close()
    for line, raw in report.invalid:
        click.echo(f"Skipped {csv_file.name}:{line}: {raw!r} is not a valid address", err=True)
    click.echo(
        f"Imported {report.added}, duplicates {report.duplicate}, suppressed {report.suppressed},"
        f" invalid {len(report.invalid)}."
    )


@subscribers.command("export")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Write to FILE (default: stdout).")
@pass_state
def subscribers_export(state: State, output) -> None:
    """Export every subscriber as CSV."""
    ledger = state.ledger()
    try:
        export_csv(ledger.subscribers(), output)
    finally:
        ledger.close()


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
@click.option("--behind-proxy", is_flag=True, help="Trust X-Forwarded-For/-Proto from one reverse proxy (nginx).")
@pass_state
def serve_command(state: State, host: str, port: int, threads: int, behind_proxy: bool) -> None:
    """Run the subscribe, confirm and unsubscribe pages, bounce webhooks and the archive (waitress).

    GET links only show a page; their button's POST acts.  One-click
    unsubscribe (RFC 8058) POSTs are answered 200, no redirect, no cookie.
    """
    from . import web

    app = web.create_app(state.config, clock=state.clock)
    click.echo(f"Serving {state.config.public_dir} and the subscription pages on http://{host}:{port}/")
    web.serve(app, host=host, port=port, threads=threads, behind_proxy=behind_proxy)


@cli.command("providers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def providers_command(as_json: bool) -> None:
    """List the installed providers and what each can do."""
    rows = []
    for name, factory in available().items():
        caps = getattr(factory, "capabilities", None)
        rows.append({"name": name, **(caps.__dict__ if caps else {"error": "failed to load"})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']:<10} (failed to load)")
            continue
        batch = row["max_batch"] or "whole list"
        click.echo(
            f"{row['name']:<10} family={row['family']} max_batch={batch} idempotency={'yes' if row['idempotency'] else 'no'}"
            f" lookup={'yes' if row['lookup'] else 'no'} custom_headers={'yes' if row['custom_headers'] else 'no'}"
            f" unsubscribe={row['unsubscribe']}"
        )


def main() -> None:
    cli(obj=State())
