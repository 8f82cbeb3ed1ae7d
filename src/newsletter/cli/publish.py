"""The commands that make and check what readers see: init, new, build, preview, check, serve,
doctor, providers.  Each parses its options, calls one method of the project and prints."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EXIT_ERROR
from . import State, command, pass_state

if TYPE_CHECKING:
    from ..check import IssueCheck


@command("init")
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
    from ..scaffold import PROVIDERS, Answers, default_timezone, init_project

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


@command("new")
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


@command("build")
@click.option("--ping", is_flag=True, help="Tell the WebSub hub ([feed] websub_hub) which feeds changed.")
@pass_state
def build(state: State, ping: bool) -> None:
    """Build the feeds (Atom with RFC 5005 archives, JSON Feed, one per tag) and the web archive into public/.

    Pages are staged beside public/ as they are rendered and moved into
    place at the end, so a failure leaves public/ as it was.  Only what
    changed since the last build is parsed and rendered again.

    \b
    Examples:
      newsletter build && rsync -a public/ server:/srv/newsletter/
      newsletter build --ping      # after publishing: readers get the post at once
    """
    from .progress import progress_bar

    with progress_bar("Building", quiet=state.quiet) as progress:
        report = state.project().build(ping=ping, progress=progress)
    click.echo(f"Built {report.posts} posts into {report.public_dir} ({report.files} files).")
    if report.removed:
        shown = ", ".join(report.removed[:5]) + (", …" if len(report.removed) > 5 else "")
        click.echo(f"Removed {len(report.removed)} files no longer published: {shown}")
    if report.pinged:
        click.echo(f"Told the WebSub hub about {len(report.pinged)} changed feeds.")
    elif ping and not state.project().config.feed.websub_hub:
        click.echo("Note: --ping does nothing without [feed] websub_hub in newsletter.toml.", err=True)


@command("preview")
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

    from ..preview import has_display

    if not has_display() or not webbrowser.open(url):
        click.echo(f"No display to open a browser on: the preview is at {where}")


def echo_findings(report: IssueCheck) -> None:
    """The findings, indented under the report they belong to (stdout: a refusal is the one stderr line)."""
    for finding in report.findings:
        label = "error:  " if finding.severity == "error" else "warning:"
        click.echo(f"  {label} [{finding.code}] {finding.message}")


@command("check")
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
    from ..check import summary

    reports = state.project().check(slug, all_posts=all_posts)
    if as_json:
        click.echo(json.dumps({"issues": [r.as_dict() for r in reports]}, ensure_ascii=False, indent=2))
    else:
        for report in reports:
            click.echo(summary(report))
            echo_findings(report)
    if any(not r.passed for r in reports):
        click.get_current_context().exit(EXIT_ERROR)


@command("serve")
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
    from .. import web

    project = state.project()
    app = web.create_app(project)
    server = web.make_server(
        app, host=host, port=port, threads=threads, behind_proxy=behind_proxy, proxy_hops=proxy_hops,
        trusted_proxy=trusted_proxy, connection_limit=max_connections,
    )  # fmt: skip
    click.echo(f"Serving {project.config.public_dir} and the subscription pages on http://{host}:{server.port}/")
    server.run()


@command("doctor")
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


@command("providers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def providers_command(as_json: bool) -> None:
    """List the installed providers and what each can do.

    \b
    Example:
      newsletter providers --json
    """
    from ..providers import BrokenPlugin, available

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
        flags = " ".join(f"{key}={'yes' if row[key] else 'no'}" for key in ("idempotency", "lookup", "custom_headers"))
        family = f"family={row['family']} max_batch={batch}"
        click.echo(f"{row['name']:<10} {family} {flags} unsubscribe={row['unsubscribe']}")
