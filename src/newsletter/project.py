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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import CONFIG_FILE, Config, Secret, find_config, load_config
from .envfile import load_env_file
from .errors import NewsletterError, NotFound, NothingToSend, PreflightFailed, UsageError
from .lock import SendLock

if TYPE_CHECKING:  # the heavy modules load when a method needs them, so `--help` stays fast
    from .check import IssueCheck
    from .content import Post
    from .send import Plan, SendReport
    from .store import Ledger
    from .subscribers import SubscriberBook

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]  # (done, total)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BuildReport:
    """What :meth:`Newsletter.build` wrote."""

    posts: int
    files: int
    public_dir: Path
    removed: tuple[str, ...] = ()  # files an earlier build wrote that this one no longer generates
    changed_feeds: tuple[str, ...] = ()  # subscription documents whose bytes changed
    pinged: tuple[str, ...] = ()  # their URLs, when the WebSub hub was told


@dataclass(frozen=True)
class PreviewReport:
    """Where :meth:`Newsletter.preview` wrote an issue's email, and what to know about it."""

    post: Post
    folder: Path
    html_bytes: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class TestSendReport:
    post: Post
    address: str
    provider: str


@dataclass(frozen=True)
class ResolveReport:
    subject: str
    changed: int
    assume_sent: bool


@dataclass
class PlannedSend:
    """A plan ready to send: what :meth:`Newsletter.plan` returns and :meth:`Newsletter.send` takes.

    ``lines`` is the plan as the editor reads it.  A real plan holds the send lock
    until it is sent or the project is closed; a dry-run plan holds none.
    """

    plan: Plan
    provider: Any = field(repr=False)
    signing_keys: list[Secret] = field(repr=False)
    dry_run: bool = False
    took_over_from: int | None = None
    _resources: ExitStack = field(default_factory=ExitStack, repr=False)
    preflight: IssueCheck | None = None  # filled by Newsletter.check_planned

    @property
    def lines(self) -> list[str]:
        return self.plan.describe()

    @property
    def recipients(self) -> int:
        return self.plan.recipients


class Newsletter:
    """A newsletter project: ``Newsletter.open(path)``, then build, plan, send, status…

    Use it as a context manager (or call :meth:`close`) so the ledger, the lock
    and the provider are released.
    """

    def __init__(self, config: Config, *, clock: Clock = utc_now, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._ledger: Ledger | None = None
        self._posts: list[Post] | None = None
        self._env = None
        self._resources = ExitStack()

    @classmethod
    def open(cls, path: str | Path | Config | None = None, *, clock: Clock = utc_now) -> Newsletter:
        """Open the project at ``path``: a folder, its ``newsletter.toml``, a loaded Config, or
        ``None`` for the nearest ``newsletter.toml`` from the current folder up.  The ``.env``
        beside it is loaded into the environment, never overriding a variable already set."""
        if isinstance(path, Config):
            return cls(path, clock=clock)
        if path is None:
            file = find_config()
        else:
            file = Path(path)
            if file.is_dir():
                file = file / CONFIG_FILE
        config = load_config(file)
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
        """The same project with a ledger connection of its own, closed on exit.

        SQLite connections belong to one thread: the web service takes one per request.
        """
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

    def environment(self):
        """The Jinja2 environment: the project's templates/ first, the packaged defaults behind."""
        if self._env is None:
            from .templates import make_environment

            self._env = make_environment(self.config.templates_dir)
        return self._env

    def _provider(self, stack: ExitStack):
        from contextlib import closing

        from .providers import load_provider

        return stack.enter_context(closing(load_provider(self.config)))

    # -- publishing ---------------------------------------------------------------------------

    def build(self, *, ping: bool = False) -> BuildReport:
        """Write the feeds and the web archive into ``public/`` (atomically: a failure changes nothing).

        With ``ping`` and ``[feed] websub_hub`` set, the hub is told which feeds changed.
        """
        from .buildcache import PostCache
        from .site import build_site
        from .websub import changed_topics, topic_digests

        # Posts come through the build cache: metadata only, parsed again only when changed.
        cache = PostCache(self.config)
        now = self.clock()
        posts = [post for post in cache.read() if post.is_published(now)]
        before = topic_digests(self.config.public_dir)
        result = build_site(self.config, posts, self.environment(), cache)
        changed = tuple(changed_topics(before, result.files))
        pinged: tuple[str, ...] = ()
        if ping and self.config.feed.websub_hub:
            pinged = tuple(self.ping_hub(changed))
        return BuildReport(len(posts), len(result.names), self.config.public_dir, tuple(result.removed), changed, pinged)

    def ping_hub(self, paths: Sequence[str] = ("feed.xml", "feed.json")) -> list[str]:
        """Tell the WebSub hub that the feeds at ``paths`` (site-relative) changed; returns their URLs."""
        from .websub import ping

        hub = self.config.feed.websub_hub
        if not hub:
            return []
        return ping(hub, [self.config.site.base_url + path for path in paths], self.config.retry)

    def preview(self, slug: str | None = None) -> PreviewReport:
        """Write the email of ``slug`` (default: the newest published post) to ``preview/SLUG/``."""
        from .files import write_tree
        from .render import render_issue
        from .send import pick_post, preview_recipient

        now = self.clock()
        post = pick_post(self.posts(), now, slug)
        issue = render_issue(self.config, post, self.environment())
        try:
            signing_keys: list[Secret] | None = self.signing_keys()
        except NewsletterError:
            signing_keys = None
        recipient = preview_recipient(self.config, signing_keys, now)
        write_tree(
            self.config.preview_dir,
            {
                f"{post.slug}/email.html": issue.personal_html(recipient).encode("utf-8"),
                f"{post.slug}/email.txt": issue.personal_text(recipient).encode("utf-8"),
                f"{post.slug}/email.eml": issue.message_bytes(recipient, date=now),
            },
        )
        return PreviewReport(post, self.config.preview_dir / post.slug, issue.html_bytes, issue.warnings)

    def check(self, slug: str | None = None, *, all_posts: bool = False) -> list[IssueCheck]:
        """The preflight of ``slug`` (default: the newest published post), or of every published post."""
        from .check import check_posts
        from .send import pick_post

        if all_posts and slug:
            raise UsageError("SLUG and --all contradict each other", hint="pass one of them")
        posts = self.published() if all_posts else [pick_post(self.posts(), self.clock(), slug)]
        return check_posts(self.config, posts, self.environment())

    def check_planned(self, planned: PlannedSend) -> IssueCheck:
        """The preflight of the issue ``planned`` is about to send, exactly as rendered for it."""
        from .check import check_issue

        if planned.preflight is None:
            planned.preflight = check_issue(self.config, planned.plan.issue)
        return planned.preflight

    def refuse_failing(self, planned: PlannedSend, *, force: bool = False) -> None:
        """Raise :class:`PreflightFailed` when the preflight of ``planned`` finds errors, unless
        ``force``.  A resumed send is never refused: part of the list already has that issue."""
        report = self.check_planned(planned)
        if report.errors and not force and planned.plan.resuming is None:
            raise PreflightFailed(
                f"not sent: the preflight found {len(report.errors)} errors in «{planned.plan.post.title}»"
                f" (first: [{report.errors[0].code}] {report.errors[0].message})",
                hint=f"fix them (newsletter check {planned.plan.post.slug}) or send anyway with --force",
            )

    def live_preview(self, *, interval: float = 0.5):
        """A :class:`~newsletter.preview.LivePreview` of this project (site and every email,
        rebuilt when a post or template changes); ``start()`` or ``make_server()`` it."""
        from .preview import LivePreview

        return LivePreview(lambda: Newsletter(self.config, clock=self.clock), interval=interval)

    def screenshots(self, slug: str | None = None, *, chromium: str | None = None):
        """PNGs of the email of ``slug`` (800 and 375 px, light and dark) and of its site page,
        into ``preview/SLUG/screenshots/`` (headless Chromium)."""
        from .preview import take_screenshots

        return take_screenshots(self, slug, chromium=chromium)

    def send_test(self, address: str, slug: str | None = None) -> TestSendReport:
        """One copy, subject prefixed ``[TEST]``, to ``address`` through the provider; records nothing."""
        from .render import render_issue
        from .send import pick_post, send_test
        from .subscribers import normalize_address
        from .templates import labels

        address = normalize_address(address)
        signing_keys = self.signing_keys()
        post = pick_post(self.posts(), self.clock(), slug)
        with ExitStack() as stack:
            provider = self._provider(stack)
            prefix = labels(self.config.site.language)["test_prefix"]
            issue = render_issue(self.config, post, self.environment(), subject_prefix=prefix, variant="test")
            send_test(self.config, issue, provider, signing_keys, address, self.clock, self.config.retry)
            return TestSendReport(post, address, provider.name)

    def plan(
        self,
        slug: str | None = None,
        *,
        correction: bool = False,
        new_issue: bool = False,
        dry_run: bool = False,
        digest: bool = False,
    ) -> PlannedSend:
        """Choose and render the next send (or resume an unfinished one); records nothing.

        Unless ``dry_run``, the send lock is taken here and held by the plan, so no
        other sender can start between the plan the editor reads and the send.  With
        ``digest``, every due post goes into one issue (``templates/email/digest.*``).
        """
        from .send import choose

        if digest:
            if slug is not None or correction:
                raise UsageError(
                    "--digest gathers the due posts: it takes no SLUG or --correction", hint="newsletter send --digest"
                )
            return self._planned(dry_run=dry_run, pick=self._pick_digest)
        return self._planned(
            dry_run=dry_run,
            pick=lambda: (
                choose(self.posts(), self.ledger, self.clock(), slug, correction=correction, new_issue=new_issue),
                None,
            ),
        )

    def _planned(self, *, dry_run: bool, pick: Callable[[], tuple[Any, Any]]) -> PlannedSend:
        """The frame every plan shares: the lock (unless ``dry_run``), ``pick()`` choosing what to
        send (a :class:`~newsletter.send.Choice` and the digest, if any), the provider, the render."""
        from .send import plan_send
        from .store import ACTIVE

        signing_keys = self.signing_keys()
        stack = ExitStack()
        took_over_from = None
        try:
            if not dry_run:
                lock = stack.enter_context(SendLock(self.lock_path))
                if lock.took_over:
                    took_over_from = (lock.previous or {}).get("pid")
            choice, digest = pick()
            provider = self._provider(stack)
            subscribers = self.ledger.subscribers.count_subscribers(ACTIVE)
            plan = plan_send(
                self.config, self.ledger, choice, self.environment(), provider, subscribers=subscribers, digest=digest
            )
            if not plan.recipients and plan.audience_local:
                raise NothingToSend(
                    "no active subscribers", hint="add some with 'newsletter subscribers add' or 'subscribers import'"
                )
        except BaseException:
            stack.close()
            raise
        self._resources.push(stack)
        return PlannedSend(plan, provider, signing_keys, dry_run, took_over_from, stack)

    def _pick_digest(self) -> tuple[Any, Any]:
        """The digest of every due post (or the unfinished digest, resumed), chosen like an issue."""
        from .schedule import digest_post, due_posts, is_digest
        from .send import choose, mark_posts_sent, sent_record

        unfinished = self.ledger.issues.unfinished_issues()
        # Resuming: the digest gathers the posts that were due when it was planned, not later ones.
        as_of = self.clock()
        if unfinished and is_digest(unfinished[0].slug):
            as_of = datetime.fromisoformat(unfinished[0].created_at)
        due = tuple(due_posts(self.posts(), self.ledger, as_of))
        if not due and not unfinished:
            raise NothingToSend("no post is due", hint="publish a new post first")
        posts = list(self.posts())
        digest = None
        if due:
            post, text = digest_post(self.config, due, self.environment())
            if sent_record(self.ledger, post) is not None:  # sent, but its posts not yet marked (a crash)
                mark_posts_sent(self.config, self.ledger, due, self.environment(), self.clock())
                raise NothingToSend("the digest of these posts was already sent; its posts are now marked sent")
            posts.append(post)
            digest = (due, text)
        choice = choose(posts, self.ledger, self.clock(), posts[-1].slug if digest else None)
        if choice.post.id != posts[-1].id:
            digest = None  # an unfinished ordinary issue is finished first
        return choice, digest

    def dry_run(self, planned: PlannedSend, progress: Progress | None = None) -> int:
        """Render every recipient's message of ``planned``; sends and records nothing. Returns how many.

        ``progress(done, total)`` hears how far it got.
        """
        from .send import render_all

        try:
            return render_all(self.config, self.ledger, planned.plan, planned.signing_keys, self.clock, progress)
        finally:
            planned._resources.close()

    def send(self, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False) -> SendReport:
        """Send (or resume) ``planned`` chunk by chunk, exactly once, then release its lock.

        ``progress(done, total)`` is called after each chunk.  A new issue the preflight
        finds errors in is refused (:class:`PreflightFailed`) unless ``force``.
        """
        from .send import deliver_issue

        if planned.dry_run:
            raise UsageError("a dry-run plan cannot be sent", hint="plan again without dry_run")
        try:
            self.refuse_failing(planned, force=force)
            report = deliver_issue(
                self.config, self.ledger, planned.plan, planned.provider, planned.signing_keys, self.clock, self.config.retry,
                progress,
            )  # fmt: skip
            if report.finished and planned.plan.digest_of:  # its posts went out in it: never again alone
                from .send import mark_posts_sent

                mark_posts_sent(self.config, self.ledger, planned.plan.digest_of, self.environment(), self.clock())
            return report
        finally:
            planned._resources.close()

    def flush_outgoing(self, *, ignore_backoff: bool = False):
        """Send the confirmation mails (and audience-provider subscriptions) the service queued.

        Rows still in their retry backoff wait unless ``ignore_backoff``; returns an
        :class:`~newsletter.outgoing.OutgoingReport`.
        """
        import os

        from .outgoing import flush_outgoing

        return flush_outgoing(self.config, environ=os.environ, clock=self.clock, ignore_backoff=ignore_backoff)

    def send_due(
        self, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False
    ) -> Iterator[tuple[PlannedSend, SendReport]]:
        """Send ``planned``, then every other post its plan listed as due, oldest first, each once.

        Yields each plan with its report as it finishes.  Only posts the editor saw in the
        first plan are sent; it stops at the first unfinished send (run ``send`` again).
        """
        announced = [post.id for post in planned.plan.due]
        while True:
            report = self.send(planned, progress, force=force)
            yield planned, report
            sent = planned.plan.post.id
            rest = announced[announced.index(sent) + 1 :] if sent in announced else []
            if not report.finished or not rest:
                return
            try:
                planned = self.plan()
            except NothingToSend:
                return
            if planned.plan.post.id not in rest:  # the ledger moved under us: stop, never guess
                planned._resources.close()
                return

    @property
    def lock_path(self) -> Path:
        """The send lock lives beside the ledger it protects."""
        database = self.config.database_path
        return database.with_name(database.name + ".lock")

    def new_post(self, title: str) -> Path:
        """Write a new post titled ``title`` into ``content/``, dated now in ``site.timezone``."""
        from .scaffold import new_post

        return new_post(self.config, title, self.clock())

    # -- the ledger's view --------------------------------------------------------------------

    def doctor(self) -> list[Any]:
        """The setup's health: Python version, key strength, file modes, provider preflight."""
        from .doctor import diagnose

        return diagnose(self.config)

    def backup(self, path: str | Path | None = None) -> tuple[Path, int]:
        """Write a consistent copy of the ledger (safe while sends and the service run).

        Default: ``<ledger stem>-YYYYMMDD-HHMMSS.db`` beside the ledger.  Never overwrites a
        file.  Returns the path written and its size.
        """
        database = self.config.database_path
        target = Path(path) if path is not None else database.with_name(f"{database.stem}-{self.clock():%Y%m%d-%H%M%S}.db")
        if target.exists():
            raise UsageError(f"{target} already exists", hint="choose a new file name; a backup never overwrites a file")
        if target.resolve() == database.resolve():
            raise UsageError(f"{target} is the ledger itself", hint="choose another path")
        return target, self.ledger.backup(target)

    def status(self, *, deliveries: bool = False) -> list[dict[str, Any]]:
        """Each post with its state (sent, marked, sending, draft, scheduled, not sent) and its issues."""
        from .buildcache import PostCache
        from .status import post_statuses

        # Metadata and content hashes from the build cache: no Markdown is parsed for an unchanged post.
        posts = self._posts if self._posts is not None else PostCache(self.config).read()
        return post_statuses(posts, self.ledger, self.clock(), deliveries=deliveries)

    def mark_sent(self, slugs: Sequence[str] = (), *, all_posts: bool = False) -> list[tuple[str, str]]:
        """Record posts as sent without mailing anyone; returns ``(slug, "marked" | "already sent")``."""
        from .send import mark_posts_sent

        if not slugs and not all_posts:
            raise UsageError("name the posts to mark", hint="pass SLUG... or --all")
        candidates = self.published()
        if not all_posts:
            by_slug = {p.slug: p for p in candidates}
            missing = [s for s in slugs if s not in by_slug]
            if missing:
                raise NotFound(f"slug {missing[0]!r} matches no published post", hint="run 'newsletter status'")
            candidates = [by_slug[s] for s in slugs]
        return mark_posts_sent(self.config, self.ledger, candidates, self.environment(), self.clock())

    def resolve(self, issue: str, *, assume_sent: bool) -> ResolveReport:
        """Settle the deliveries of an unfinished ``issue`` (slug or key) that nothing could reconcile."""
        with SendLock(self.lock_path):
            records = [r for r in self.ledger.issues.unfinished_issues() if issue in (r.slug, r.key)]
            if not records:
                raise NotFound(f"no unfinished issue named {issue!r}", hint="run 'newsletter status' to see unfinished sends")
            record = records[0]
            changed = self.ledger.issues.resolve(record.id, assume_sent=assume_sent, now=self.clock())
        return ResolveReport(record.subject, changed, assume_sent)

