"""A send session: the lock, the choice of what to send, the plan the editor reads, the
preflight, then delivery exactly once (one issue, every due post in turn, or a digest).

Plain functions of a :class:`~newsletter.project.Newsletter`; its methods of the same names
call them.  Chunking, rendering per recipient and the ledger's steps live in :mod:`newsletter.send`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .config import Secret
from .errors import NothingToSend, UsageError
from .lock import SendLock

if TYPE_CHECKING:
    from .check import IssueCheck
    from .content import Post
    from .outgoing import OutgoingReport
    from .project import Newsletter, Progress
    from .send import SendReport
    from .send_plan import Plan


@dataclass(frozen=True)
class TestSendReport:
    """Which post went, as a ``[TEST]`` copy, to whom and through which provider."""

    post: Post
    address: str
    provider: str


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

    def release(self) -> None:
        """Release the send lock and the provider this plan holds."""
        self._resources.close()


def send_test(project: Newsletter, address: str, slug: str | None = None) -> TestSendReport:
    """One copy, subject prefixed ``[TEST]``, to ``address`` through the provider; records nothing."""
    from .render import render_issue
    from .send import send_test
    from .send_plan import pick_post
    from .subscribers import normalize_address
    from .templates import labels

    address = normalize_address(address)
    signing_keys = project.signing_keys()
    post = pick_post(project.posts(), project.clock(), slug)
    with ExitStack() as stack:
        provider = project.open_provider(stack)
        prefix = labels(project.config.site.language)["test_prefix"]
        issue = render_issue(project.config, post, project.environment(), subject_prefix=prefix, variant="test")
        send_test(project.config, issue, provider, signing_keys, address, project.clock, project.config.retry)
        return TestSendReport(post, address, provider.name)


def plan(
    project: Newsletter,
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
    from .send_plan import choose

    if digest:
        if slug is not None or correction:
            raise UsageError(
                "--digest gathers the due posts: it takes no SLUG or --correction", hint="newsletter send --digest"
            )
        return _planned(project, dry_run=dry_run, pick=lambda: _pick_digest(project))
    return _planned(
        project,
        dry_run=dry_run,
        pick=lambda: (
            choose(project.posts(), project.ledger, project.clock(), slug, correction=correction, new_issue=new_issue),
            None,
        ),
    )


def _planned(project: Newsletter, *, dry_run: bool, pick: Callable[[], tuple[Any, Any]]) -> PlannedSend:
    """The frame every plan shares: the lock (unless ``dry_run``), ``pick()`` choosing what to
    send (a :class:`~newsletter.send_plan.Choice` and the digest, if any), the provider, the render."""
    from .send_plan import plan_send
    from .store import ACTIVE

    signing_keys = project.signing_keys()
    stack = ExitStack()
    took_over_from = None
    try:
        if not dry_run:
            lock = stack.enter_context(SendLock(project.lock_path))
            if lock.took_over:
                took_over_from = (lock.previous or {}).get("pid")
        choice, digest = pick()
        provider = project.open_provider(stack)
        subscribers = project.ledger.subscribers.count_subscribers(ACTIVE)
        plan = plan_send(
            project.config,
            project.ledger,
            choice,
            project.environment(),
            provider,
            subscribers=subscribers,
            digest=digest,
        )
        if not plan.recipients and plan.list_is_local:
            raise NothingToSend(
                "no active subscribers", hint="add some with 'newsletter subscribers add' or 'subscribers import'"
            )
    except BaseException:
        stack.close()
        raise
    project.hold(stack)
    return PlannedSend(plan, provider, signing_keys, dry_run, took_over_from, stack)


def _pick_digest(project: Newsletter) -> tuple[Any, Any]:
    """The digest of every due post (or the unfinished digest, resumed), chosen like an issue."""
    from .schedule import digest_post, due_posts, is_digest
    from .send_plan import choose, mark_posts_sent, sent_record

    unfinished = project.ledger.issues.unfinished_issues()
    # Resuming: the digest gathers the posts that were due when it was planned, not later ones.
    as_of = project.clock()
    if unfinished and is_digest(unfinished[0].slug):
        as_of = datetime.fromisoformat(unfinished[0].created_at)
    due = tuple(due_posts(project.posts(), project.ledger, as_of))
    if not due and not unfinished:
        raise NothingToSend("no post is due", hint="publish a new post first")
    posts = list(project.posts())
    digest = None
    if due:
        post, text = digest_post(project.config, due, project.environment())
        if sent_record(project.ledger, post) is not None:  # sent, but its posts not yet marked (a crash)
            mark_posts_sent(project.config, project.ledger, due, project.environment(), project.clock())
            raise NothingToSend("the digest of these posts was already sent; its posts are now marked sent")
        posts.append(post)
        digest = (due, text)
    choice = choose(posts, project.ledger, project.clock(), posts[-1].slug if digest else None)
    if choice.post.id != posts[-1].id:
        digest = None  # an unfinished ordinary issue is finished first
    return choice, digest


def dry_run(project: Newsletter, planned: PlannedSend, progress: Progress | None = None) -> int:
    """Render every recipient's message of ``planned``; sends and records nothing. Returns how many.

    ``progress(done, total)`` hears how far it got.
    """
    from .send import render_all

    try:
        return render_all(project.config, project.ledger, planned.plan, planned.signing_keys, project.clock, progress)
    finally:
        planned.release()


def send(
    project: Newsletter, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False
) -> SendReport:
    """Send (or resume) ``planned`` chunk by chunk, exactly once, then release its lock.

    ``progress(done, total)`` is called after each chunk.  A new issue the preflight
    finds errors in is refused (:class:`PreflightFailed`) unless ``force``.
    """
    from .send import deliver_issue

    if planned.dry_run:
        raise UsageError("a dry-run plan cannot be sent", hint="plan again without dry_run")
    try:
        project.refuse_failing(planned, force=force)
        config = project.config
        report = deliver_issue(
            config,
            project.ledger,
            planned.plan,
            planned.provider,
            planned.signing_keys,
            project.clock,
            config.retry,
            progress,
        )
        if report.finished and planned.plan.digest_of:  # its posts went out in it: never again alone
            from .send_plan import mark_posts_sent

            mark_posts_sent(
                project.config, project.ledger, planned.plan.digest_of, project.environment(), project.clock()
            )
        return report
    finally:
        planned.release()


def send_due(
    project: Newsletter, planned: PlannedSend, progress: Progress | None = None, *, force: bool = False
) -> Iterator[tuple[PlannedSend, SendReport]]:
    """Send ``planned``, then every other post its plan listed as due, oldest first, each once.

    Yields each plan with its report as it finishes.  Only posts the editor saw in the
    first plan are sent; it stops at the first unfinished send (run ``send`` again).
    """
    announced = [post.id for post in planned.plan.due]
    while True:
        report = project.send(planned, progress, force=force)
        yield planned, report
        sent = planned.plan.post.id
        rest = announced[announced.index(sent) + 1 :] if sent in announced else []
        if not report.finished or not rest:
            return
        try:
            planned = project.plan()
        except NothingToSend:
            return
        if planned.plan.post.id not in rest:  # the ledger moved under us: stop, never guess
            planned.release()
            return


def flush_outgoing(project: Newsletter, *, ignore_backoff: bool = False) -> OutgoingReport:
    """See :meth:`Newsletter.flush_outgoing`."""
    from .outgoing import flush_outgoing

    # The project's environment (the real one unless a caller gave its own), as every other call uses.
    return flush_outgoing(project.config, environ=project.environ, clock=project.clock, ignore_backoff=ignore_backoff)
