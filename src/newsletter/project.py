"""The Python API: one :class:`Newsletter` object per project.

It owns the config, the ledger, the send lock and the provider's lifetime; the
``newsletter`` command and the web service are thin layers over it.  Every
method returns plain data (dataclasses, dicts) and raises the typed errors of
:mod:`newsletter.errors`; nothing here prints.

    >>> from newsletter import Newsletter
    >>> with Newsletter.open("path/to/project") as nl:      # doctest: +SKIP
    ...     nl.build()
    ...     plan = nl.plan()
    ...     report = nl.send(plan)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The collaborators hold the work; they import their heavy modules inside each function, so
# `--help` stays fast.
from . import ledger_admin, publishing, send_session
from .config import Config, Secret, config_file_of, find_config, load_config
from .envfile import load_env_file
from .ledger_admin import ResolveReport
from .publishing import BuildReport, PreviewReport
from .send_session import PlannedSend, TestSendReport

if TYPE_CHECKING:
    from .check import IssueCheck
    from .content import Post
    from .outgoing import OutgoingReport
    from .preview import LivePreview, Screenshots
    from .providers.base import Provider
    from .send import SendReport
    from .store import Ledger
    from .subscribers import SubscriberBook
    from .templates import Environment

__all__ = ["BuildReport", "Newsletter", "PlannedSend", "PreviewReport", "ResolveReport", "TestSendReport"]

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]  # (done, total)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Newsletter:
    """A newsletter project: ``Newsletter.open(path)``, then build, plan, send, status…  Use it as a
    context manager (or call :meth:`close`) so the ledger, the lock and the provider are released."""

    def __init__(self, config: Config, *, clock: Clock = utc_now, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._ledger: Ledger | None = None
        self._posts: list[Post] | None = None
        self._env: Any = None  # a jinja2 Environment, made on first use
        self._resources = ExitStack()

    @classmethod
    def open(cls, path: str | Path | Config | None = None, *, clock: Clock = utc_now) -> Newsletter:
        """Open the project at ``path``: a folder, its ``newsletter.toml``, a loaded Config, or
        ``None`` for the nearest ``newsletter.toml`` from the current folder up.  The ``.env``
        beside it is loaded into the environment, never overriding a variable already set."""
        if isinstance(path, Config):
            return cls(path, clock=clock)
        config = load_config(find_config() if path is None else config_file_of(Path(path)))
        load_env_file(config.root)  # .env beside newsletter.toml; the real environment wins
        return cls(config, clock=clock)

    def __enter__(self) -> Newsletter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the ledger, a held send lock and an open provider."""
        self._resources.close()
        self._ledger = None

    # -- what the project holds -------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The SQLite ledger, opened (and migrated) on first use."""
        if self._ledger is None:
            from .store import Ledger

            self._ledger = Ledger(self.config.database_path)
            self._resources.callback(self._ledger.close)
        return self._ledger

    def posts(self) -> list[Post]:
        """Every post of ``content/``, drafts included, newest first (read once)."""
        if self._posts is None:
            from .content import read_posts

            self._posts = read_posts(self.config)
        return self._posts

    def published(self) -> list[Post]:
        """The posts that are out: not drafts, dated in the past (by the project's clock)."""
        from .content import published

        return published(self.posts(), self.clock())

    def signing_keys(self) -> list[Secret]:
        """The unsubscribe/confirm token signing keys from the environment: the current one first."""
        return self.config.token_keys(self.environ)

    @contextmanager
    def for_thread(self) -> Iterator[Newsletter]:
        """The same project with a ledger connection of its own, closed on exit (SQLite connections
        belong to one thread: the web service takes one per request)."""
        other = Newsletter(self.config, clock=self.clock, environ=self.environ)
        try:
            yield other
        finally:
            other.close()

    @property
    def subscribers(self) -> SubscriberBook:
        """The local subscriber list: ``add``, ``remove``, ``list``, ``import_csv``, ``export_csv``."""
        from .subscribers import SubscriberBook

        return SubscriberBook(self)

    def environment(self) -> Environment:
        """The Jinja2 environment: the project's templates/ first, the packaged defaults behind."""
        if self._env is None:
            from .templates import make_environment

            self._env = make_environment(self.config.templates_dir)
        return self._env

    def open_provider(self, stack: ExitStack) -> Provider:
        """The configured provider, opened and closed with ``stack``."""
        from contextlib import closing

        from .providers import load_provider

        return stack.enter_context(closing(load_provider(self.config)))

    def hold(self, stack: ExitStack) -> None:
        """Keep ``stack`` (a plan's lock and provider) open until the project closes."""
        self._resources.push(stack)

    def posts_if_read(self) -> list[Post] | None:
        """The posts when :meth:`posts` already read them, else ``None`` (nothing is parsed)."""
        return self._posts

    @property
    def lock_path(self) -> Path:
        """The send lock lives beside the ledger it protects."""
        database = self.config.database_path
        return database.with_name(database.name + ".lock")

    # -- publishing (newsletter.publishing) -------------------------------------------------

    def build(self, *, ping: bool = False, progress: Progress | None = None) -> BuildReport:
        """Write the feeds and the web archive into ``public/`` (atomically: a failure changes
        nothing); with ``ping`` and ``[feed] websub_hub`` set, tell the hub which feeds changed."""
        return publishing.build(self, ping=ping, progress=progress)

    def ping_hub(self, paths: Sequence[str] = ("feed.xml", "feed.json")) -> list[str]:
        """Tell the WebSub hub that the feeds at ``paths`` (site-relative) changed; returns their URLs."""
        return publishing.ping_hub(self, paths)

    def preview(self, slug: str | None = None) -> PreviewReport:
        """Write the email of ``slug`` (default: the newest published post) to ``preview/SLUG/``."""
        return publishing.preview(self, slug)

    def check(self, slug: str | None = None, *, all_posts: bool = False) -> list[IssueCheck]:
        """The preflight of ``slug`` (default: the newest published post), or of every published post."""
        return publishing.check(self, slug, all_posts=all_posts)

    def check_planned(self, planned: PlannedSend) -> IssueCheck:
        """The preflight of the issue ``planned`` is about to send, exactly as rendered for it."""
        return publishing.check_planned(self, planned)

    def refuse_failing(self, planned: PlannedSend, *, force: bool = False) -> None:
        """Raise :class:`PreflightFailed` when the preflight of ``planned`` finds errors, unless
        ``force``.  A resumed send is never refused: part of the list already has that issue."""
        publishing.refuse_failing(self, planned, force=force)

    def live_preview(self, *, interval: float = 0.5) -> LivePreview:
        """A :class:`~newsletter.preview.LivePreview` of this project (site and every email,
        rebuilt when a post or template changes); ``start()`` or ``make_server()`` it."""
        return publishing.live_preview(self, interval=interval)

    def screenshots(self, slug: str | None = None, *, chromium: str | None = None) -> Screenshots:
        """PNGs of the email of ``slug`` (800 and 375 px, light and dark) and of its site page,
        into ``preview/SLUG/screenshots/`` (headless Chromium)."""
        return publishing.screenshots(self, slug, chromium=chromium)

    def new_post(self, title: str) -> Path:
        """Write a new post titled ``title`` into ``content/``, dated now in ``site.timezone``."""
        return publishing.new_post(self, title)

    # -- sending (newsletter.send_session) ---------------------------------------------------

    def send_test(self, address: str, slug: str | None = None) -> TestSendReport:
        """One copy, subject prefixed ``[TEST]``, to ``address`` through the provider; records nothing."""
        return send_session.send_test(self, address, slug)

    def plan(
        self, slug: str | None = None, *, correction: bool = False, new_issue: bool = False, dry_run: bool = False,
        digest: bool = False,
    ) -> PlannedSend:  # fmt: skip
        """Choose and render the next send (or resume an unfinished one); records nothing.  Unless
        ``dry_run`` the plan holds the send lock, so no other sender starts between the plan the
        editor reads and the send.  ``digest`` puts every due post into one issue."""
        return send_session.plan(self, slug, correction=correction, new_issue=new_issue, dry_run=dry_run, digest=digest)

    def dry_run(self, planned: PlannedSend, progress: Progress | None = None) -> int:
        """Render every recipient's message of ``planned``; sends and records nothing. Returns how many."""
        return send_session.dry_run(self, planned, progress)

    def send(self, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False) -> SendReport:
        """Send (or resume) ``planned`` chunk by chunk, exactly once, then release its lock;
        ``progress(done, total)`` hears each chunk.  A new issue failing the preflight is refused
        (:class:`PreflightFailed`) unless ``force``."""
        return send_session.send(self, planned, progress, force=force)

    def send_due(
        self, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False
    ) -> Iterator[tuple[PlannedSend, SendReport]]:
        """Send ``planned``, then every other post its plan listed as due, oldest first, each once,
        yielding each plan with its report; stops at the first unfinished send."""
        return send_session.send_due(self, planned, progress, force=force)

    def flush_outgoing(self, *, ignore_backoff: bool = False) -> OutgoingReport:
        """Send the confirmation mails (and audience-provider subscriptions) the service queued;
        rows in their retry backoff wait unless ``ignore_backoff``.  Returns an ``OutgoingReport``."""
        return send_session.flush_outgoing(self, ignore_backoff=ignore_backoff)

    # -- the ledger's view (newsletter.ledger_admin) ----------------------------------------

    def doctor(self) -> list[Any]:
        """The setup's health: Python version, key strength, file modes, provider preflight."""
        return ledger_admin.doctor(self)

    def backup(self, path: str | Path | None = None) -> tuple[Path, int]:
        """Write a consistent copy of the ledger (safe while sends and the service run) to ``path``
        (default: ``<stem>-YYYYMMDD-HHMMSS.db`` beside it), never over a file; returns path and size."""
        return ledger_admin.backup(self, path)

    def status(self, *, deliveries: bool = False) -> list[dict[str, Any]]:
        """Each post with its state (sent, marked, sending, draft, scheduled, not sent) and its issues."""
        return ledger_admin.status(self, deliveries=deliveries)

    def mark_sent(self, slugs: Sequence[str] = (), *, all_posts: bool = False) -> list[tuple[str, str]]:
        """Record posts as sent without mailing anyone; returns ``(slug, "marked" | "already sent")``."""
        return ledger_admin.mark_sent(self, slugs, all_posts=all_posts)

    def resolve(self, issue: str, *, assume_sent: bool, chunks: Sequence[int] = ()) -> ResolveReport:
        """Settle the deliveries of an unfinished ``issue`` (slug or key) that nothing could reconcile
        (only those of ``chunks``, when given: the refusal of a send names each chunk in doubt)."""
        return ledger_admin.resolve(self, issue, assume_sent=assume_sent, chunks=chunks)
