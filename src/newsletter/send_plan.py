"""Which send to do now, and the plan the editor reads before anything is written.

:func:`choose` picks the post (a new issue, a correction, or the unfinished send to resume)
and refuses anything that would mail an issue twice; :func:`plan_send` renders it once and
describes it.  Nothing here writes to the ledger but :func:`mark_posts_sent`, and nothing
here sends: delivery is :mod:`newsletter.send`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .config import Config
from .content import Post, published
from .errors import AlreadySent, NotFound, NothingToSend, SendConflict, UsageError
from .providers.base import BatchProvider, Provider
from .render import Issue, render_issue
from .schedule import due_posts
from .store import MARKED, SENT, IssueRecord, Ledger
from .templates import Environment, labels

DONE_STATES = (SENT, MARKED)
ISSUE, CORRECTION = "issue", "correction"


@dataclass(frozen=True)
class Plan:
    """What ``newsletter send`` is about to do, shown to the editor before anything happens."""

    post: Post
    issue: Issue
    provider: str
    recipients: int
    resuming: IssueRecord | None = None
    list_is_local: bool = True  # False when the provider keeps the list (audience family)
    kind: str = ISSUE
    corrects: IssueRecord | None = None
    due: tuple[Post, ...] = ()  # every post this run of `send` will mail, oldest first (this one first)
    digest_of: tuple[Post, ...] = ()  # a digest: the posts it gathers, marked sent once it went out

    def describe(self) -> list[str]:
        audience = str(self.recipients) if self.list_is_local else f"the {self.provider} audience"
        lines = [
            f"Post:       {self.post.title} ({self.post.slug}, {self.post.date:%Y-%m-%d})",
            f"Subject:    {self.issue.subject}",
            f"Provider:   {self.provider}",
            f"Recipients: {audience}",
            f"HTML size:  {self.issue.html_bytes / 1000:.1f} KB after inlining",
        ]
        if self.corrects:
            lines.append(f"Correcting: the issue sent {self.corrects.sent_at}, to those who received it")
        if self.resuming:
            lines.append(f"Resuming:   the unfinished send started {self.resuming.created_at}")
        if self.digest_of:
            names = ", ".join(p.slug for p in self.digest_of[:5]) + (", …" if len(self.digest_of) > 5 else "")
            lines.append(f"Digest:     {len(self.digest_of)} posts in one issue, oldest first: {names}")
        if len(self.due) > 1:
            names = ", ".join(p.slug for p in self.due[:5]) + (", …" if len(self.due) > 5 else "")
            lines.append(f"Due:        {len(self.due)} posts not yet sent, oldest first, each once: {names}")
        return lines + [f"Warning:    {w}" for w in self.issue.warnings]


def sent_record(ledger: Ledger, post: Post) -> IssueRecord | None:
    """The ledger's record that ``post`` went out (or was marked sent) under its id and its slug."""
    return next((r for r in _done_under_id(ledger, post) if r.slug == post.slug), None)


def _done_under_id(ledger: Ledger, post: Post) -> list[IssueRecord]:
    return [r for r in ledger.issues.issues_for_post(post.id) if r.status in DONE_STATES]


def recipients_shown(record: IssueRecord) -> str:
    """How many received an issue, in words (an audience provider's list is not counted here)."""
    return str(record.recipients) if record.recipients is not None else f"the {record.provider} audience"


def pick_post(posts: Sequence[Post], now: datetime, slug: str | None) -> Post:
    """Any post by slug (drafts too), or the newest published one: for previews and test sends."""
    if slug is None:
        candidates = published(posts, now)
        if not candidates:
            raise NotFound("no published post", hint="pass the SLUG of a draft to use it")
        return candidates[0]
    post = next((p for p in posts if p.slug == slug), None)
    if post is None:
        raise NotFound(f"slug {slug!r} matches no post", hint="run 'newsletter status' to list the slugs")
    return post


@dataclass(frozen=True)
class Choice:
    """What ``send`` will do: which post, as a new issue or a correction, or resuming a record."""

    post: Post
    kind: str = ISSUE
    resuming: IssueRecord | None = None
    corrects: IssueRecord | None = None
    due: tuple[Post, ...] = ()


def choose(
    posts: Sequence[Post],
    ledger: Ledger,
    now: datetime,
    slug: str | None = None,
    *,
    correction: bool = False,
    new_issue: bool = False,
) -> Choice:
    """The send to do now.

    An unfinished send is always finished first.  Otherwise ``slug``, or the
    oldest of :func:`due_posts` (each post newer than the last one sent, so none
    is dropped; the back catalogue before the first send is never picked
    implicitly), and a post already sent is refused,
    never sent twice; an edited one can be sent again only as an explicit
    correction.  A post is recognised by its id, its slug and its content: a
    sent id under a new slug, or a sent slug or content under a new id, stops
    the send (an edited ``id:`` must not mail everyone again) unless
    ``new_issue`` says the post is a new issue.
    """
    if new_issue and correction:
        raise UsageError("--new-issue and --correction contradict each other", hint="choose one of them")
    unfinished = ledger.issues.unfinished_issues()
    if unfinished:
        record = unfinished[0]
        post = next((p for p in posts if p.id == record.post_id), None)
        if post is None:
            renamed = next((p for p in posts if p.slug == record.slug), None)
            hint = "restore its post, or settle it with 'newsletter resolve'"
            if record.slug.startswith("digest-"):
                hint = "it is a digest: run 'newsletter send --digest' to finish it"
            elif renamed is not None:
                hint = f"put back id: {record.post_id} in {renamed.source.name}, or settle it with 'newsletter resolve'"
            raise SendConflict(
                f"the unfinished issue «{record.subject}» has no post any more (id {record.post_id})", hint=hint
            )
        if slug is not None and slug != post.slug:
            raise SendConflict(
                f"the send of «{post.title}» ({post.slug}) is unfinished",
                hint="run 'newsletter send' to finish it first",
            )
        return Choice(post, record.kind, resuming=record)
    candidates = published(posts, now)
    if slug is not None:
        post = next((p for p in candidates if p.slug == slug), None)
        if post is None:
            known = next((p for p in posts if p.slug == slug), None)
            reason = "is a draft or scheduled for later" if known else "matches no post"
            raise NotFound(f"slug {slug!r} {reason}", hint="run 'newsletter status' to see the posts and their slugs")
    elif correction:
        raise UsageError("--correction needs the SLUG of the edited post", hint="newsletter send --correction SLUG")
    elif not candidates:
        raise NothingToSend("no published post to send", hint="add a post without draft: true and a past date")
    else:
        due = due_posts(posts, ledger, now)
        post = due[0] if due else candidates[0]
        if len(due) > 1:
            done = _done_under_id(ledger, post)
            if not done and not new_issue:
                _refuse_sent_slug_or_content(ledger, post)
            elif done:
                raise _sent_id_under_new_slug(post, done[0])
            return Choice(post, due=tuple(due))
    done = _done_under_id(ledger, post)
    if correction:
        return _correction_of(post, ledger, done[0] if done else None)
    sent = next((r for r in done if r.slug == post.slug), None)
    if sent is not None:
        message = f"«{post.title}» ({post.slug}) was already {_how_sent(sent)}"
        if slug is None:
            raise NothingToSend(message, hint="nothing new to send; publish a new post first")
        hint = "an issue is never sent twice"
        if sent.content_hash != post.content_hash:
            hint = "it changed since; send it as a correction with 'newsletter send --correction SLUG'"
        raise AlreadySent(message, hint=hint)
    if done:
        raise _sent_id_under_new_slug(post, done[0])
    if not new_issue:
        _refuse_sent_slug_or_content(ledger, post)
    return Choice(post)


def _how_sent(record: IssueRecord) -> str:
    when = (record.sent_at or record.created_at)[:16].replace("T", " ")
    if record.status == MARKED:
        return f"marked as sent on {when}"
    return f"sent to {recipients_shown(record)} via {record.provider} on {when}"


def _sent_id_under_new_slug(post: Post, earlier: IssueRecord) -> SendConflict:
    return SendConflict(
        f"its id {post.id} is that of «{earlier.subject}», {_how_sent(earlier)} with the slug {earlier.slug!r},"
        f" but its slug is now {post.slug!r}",
        where=str(post.source),
        hint=f'a new post needs its own id (id: "urn:uuid:{uuid.uuid4()}"); if it is that post renamed, put back'
        f" slug: {earlier.slug}, or record the new slug with 'newsletter mark-sent {post.slug}'"
        f" (or mail the change with 'newsletter send --correction {post.slug}')",
    )


def _refuse_sent_slug_or_content(ledger: Ledger, post: Post) -> None:
    """A post never sent under its id whose slug or content was sent under another id: its id was
    probably edited, and sending would mail the same issue to everyone again."""
    earlier = next(
        (
            r
            for r in ledger.issues.issues_with_slug_or_content(post.slug, post.content_hash)
            if r.status in DONE_STATES and r.post_id != post.id
        ),
        None,
    )
    if earlier is None:
        return
    same = f"the slug {earlier.slug!r}" if earlier.slug == post.slug else f"the same content (as {earlier.slug!r})"
    raise SendConflict(
        f"«{earlier.subject}» was already {_how_sent(earlier)} with {same} under the id {earlier.post_id};"
        f" this post's id is now {post.id}",
        where=str(post.source),
        hint=f"if the id was changed by accident, put back id: {earlier.post_id}; if this is a new issue, send it"
        f" with 'newsletter send --new-issue {post.slug}'; to record it as sent without mailing,"
        f" 'newsletter mark-sent {post.slug}'",
    )


def _correction_of(post: Post, ledger: Ledger, record: IssueRecord | None) -> Choice:
    if record is None or record.status != SENT:
        raise AlreadySent(f"«{post.title}» was never mailed, so there is nothing to correct", hint="send it normally")
    latest = [r for r in ledger.issues.issues_for_post(post.id) if r.status == SENT][-1]
    if latest.content_hash == post.content_hash:
        raise NothingToSend(f"«{post.title}» has not changed since it was last sent", hint="edit it first")
    return Choice(post, CORRECTION, corrects=record)


def plan_send(
    config: Config,
    ledger: Ledger,
    choice: Choice,
    env: Environment,
    provider: Provider,
    *,
    subscribers: int,
    digest: tuple[tuple[Post, ...], str] | None = None,
) -> Plan:
    """Render the issue once and describe the send; writes nothing.

    ``digest`` is ``(posts, text body)`` when ``choice.post`` is a digest of those posts.
    """
    post, resuming = choice.post, choice.resuming
    if resuming is not None and resuming.content_hash != post.content_hash:
        raise SendConflict(
            f"«{post.title}» changed while its issue was being sent",
            where=str(post.source),
            hint="restore the post as it was when the send started (git checkout), then run send again",
        )
    if resuming is not None and resuming.provider != provider.name:
        raise SendConflict(
            f"the unfinished send of «{post.title}» started through {resuming.provider}",
            where="newsletter.toml: send.provider",
            hint=f'set provider = "{resuming.provider}" until it is finished',
        )
    if choice.kind == CORRECTION:
        prefix = labels(config.site.language)["correction"]
        issue = render_issue(config, post, env, subject_prefix=prefix, variant=f"correction:{post.content_hash}")
    elif digest is not None:
        issue = render_issue(config, post, env, text_body=digest[1])
    else:
        issue = render_issue(config, post, env)
    local = isinstance(provider, BatchProvider)
    if resuming:
        recipients = resuming.recipients
    elif choice.corrects:
        recipients = ledger.issues.count_recipients_of(choice.corrects.id)
    else:
        recipients = subscribers
    return Plan(
        post=post, issue=issue, provider=provider.name, recipients=(recipients or 0) if local else 0,
        resuming=resuming, list_is_local=local, kind=choice.kind, corrects=choice.corrects, due=choice.due,
        digest_of=digest[0] if digest else (),
    )  # fmt: skip


def mark_posts_sent(
    config: Config, ledger: Ledger, posts: Sequence[Post], env: Environment, now: datetime
) -> list[tuple[str, str]]:
    """Record ``posts`` as sent without mailing anyone; ``(slug, "marked" | "already sent")`` each."""
    outcomes = []
    for post in posts:
        if sent_record(ledger, post) is not None:
            outcomes.append((post.slug, "already sent"))
            continue
        # Keyed by slug too: a renamed post is marked again under the same id and content.
        issue = render_issue(config, post, env, variant=f"mark-sent:{post.slug}")
        ledger.issues.mark_issue(
            key=issue.key,
            post_id=post.id,
            slug=post.slug,
            content_hash=post.content_hash,
            subject=issue.subject,
            now=now,
        )
        outcomes.append((post.slug, "marked"))
    return outcomes
