"""Choose the issue, plan it, and deliver it chunk by chunk, recording every step.

The ledger is written before each provider call and after it (see
:mod:`newsletter.store`), so a crash leaves rows ``in_flight`` that the next
run reconciles (provider lookup or idempotent replay) before anything is sent
again.  Nothing here retries blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Sequence

import jinja2

from .audience import UNSUBSCRIBE, make_token, unsubscribe_url
from .config import Config, Secret
from .content import Post, published
from .errors import AlreadySent, NothingToSend, NotFound, SendConflict
from .providers.base import ChunkRequest, DeliveryResult
from .render import Issue, Recipient, render_issue
from .store import ACCEPTED, IN_FLIGHT, MARKED, REJECTED, SENDING, SENT, UNKNOWN, IssueRecord, Ledger

Clock = Callable[[], datetime]
DONE_STATES = (SENT, MARKED)


@dataclass(frozen=True)
class Plan:
    """What ``newsletter send`` is about to do, shown to the editor before anything happens."""

    post: Post
    issue: Issue
    provider: str
    recipients: int
    resuming: IssueRecord | None = None

    def describe(self) -> list[str]:
        lines = [
            f"Post:       {self.post.title} ({self.post.slug}, {self.post.date:%Y-%m-%d})",
            f"Subject:    {self.issue.subject}",
            f"Provider:   {self.provider}",
            f"Recipients: {self.recipients}",
            f"HTML size:  {self.issue.html_bytes / 1000:.1f} KB after inlining",
        ]
        if self.resuming:
            lines.append(f"Resuming:   the unfinished send started {self.resuming.created_at}")
        return lines + [f"Warning:    {w}" for w in self.issue.warnings]


@dataclass
class SendReport:
    issue_key: str
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False


def sent_record(ledger: Ledger, post: Post) -> IssueRecord | None:
    """The ledger's record that ``post`` went out (or was marked sent), if any."""
    return next((r for r in ledger.issues_for_post(post.id) if r.status in DONE_STATES), None)


def unfinished_record(ledger: Ledger, post: Post) -> IssueRecord | None:
    return next((r for r in ledger.issues_for_post(post.id) if r.status == SENDING), None)


def choose_post(posts: Sequence[Post], ledger: Ledger, now: datetime, slug: str | None = None) -> Post:
    """The post to send: ``slug`` if given, else the newest published post.

    Older unsent posts are never picked implicitly: that would mail the back
    catalogue.  A post already sent is refused, never sent twice.
    """
    candidates = published(posts, now)
    if slug is not None:
        post = next((p for p in candidates if p.slug == slug), None)
        if post is None:
            known = next((p for p in posts if p.slug == slug), None)
            reason = "is a draft or scheduled for later" if known else "matches no post"
            raise NotFound(f"slug {slug!r} {reason}", hint="run 'newsletter status' to see the posts and their slugs")
    elif not candidates:
        raise NothingToSend("no published post to send", hint="add a post without draft: true and a past date")
    else:
        post = candidates[0]
    record = sent_record(ledger, post)
    if record is not None:
        when = record.sent_at or record.created_at
        how = "marked as sent" if record.status == MARKED else f"sent to {record.recipients} via {record.provider}"
        message = f"«{post.title}» ({post.slug}) was already {how} on {when}"
        if slug is None:
            raise NothingToSend(message, hint="nothing new to send; publish a new post first")
        raise AlreadySent(message, hint="an issue is never sent twice")
    return post


def plan_send(
    config: Config,
    ledger: Ledger,
    post: Post,
    env: jinja2.Environment,
    provider,
    *,
    subscribers: int,
) -> Plan:
    """Render the issue once and describe the send; writes nothing."""
    resuming = unfinished_record(ledger, post)
    if resuming is not None and resuming.content_hash != post.content_hash:
        raise SendConflict(
            f"«{post.title}» changed while its issue was being sent",
            where=str(post.source),
            hint="restore the post as it was when the send started (git checkout), then run send again",
        )
    issue = render_issue(config, post, env)
    recipients = resuming.recipients if resuming else subscribers
    return Plan(post=post, issue=issue, provider=provider.name, recipients=recipients or 0, resuming=resuming)


def recipient_for(config: Config, keys: Sequence[Secret], subscriber_id: int, email: str, issued: datetime) -> Recipient:
    """A recipient with their signed unsubscribe URL (no address in the token; SEC-09)."""
    token = make_token(keys, purpose=UNSUBSCRIBE, list_id=config.email.list_id, subscriber_id=subscriber_id, issued_at=issued)
    return Recipient(subscriber_id, email, unsubscribe_url(config.email.unsubscribe_url, token))


def execute(
    config: Config,
    ledger: Ledger,
    plan: Plan,
    provider,
    keys: Sequence[Secret],
    clock: Clock,
) -> SendReport:
    """Send (or resume) the planned issue, one chunk at a time, recording each step."""
    post, issue = plan.post, plan.issue
    record = plan.resuming or ledger.plan_issue(
        key=issue.key,
        post_id=post.id,
        slug=post.slug,
        content_hash=post.content_hash,
        subject=issue.subject,
        provider=provider.name,
        chunk_size=provider.capabilities.max_batch or 1_000_000_000,
        now=clock(),
    )
    # Everything personal is derived from the plan's time, so a replay is byte-identical.
    planned_at = datetime.fromisoformat(record.created_at)
    for number, idempotency_key in ledger.open_chunks(record.id):
        ledger.skip_unsubscribed(record.id, number, now=clock())
        rows = ledger.chunk_deliveries(record.id, number)
        recipients = [recipient_for(config, keys, r.subscriber_id, r.email, planned_at) for r in rows]
        request = ChunkRequest(issue=issue, recipients=recipients, idempotency_key=idempotency_key, date=planned_at)
        by_id = {r.subscriber_id: r.id for r in rows}
        if any(r.state in (IN_FLIGHT, UNKNOWN) for r in rows) and provider.capabilities.lookup:
            # Reconcile first: a message the provider already has is recorded, not sent again.
            found = [d for d in provider.lookup_chunk(request) if d.accepted]
            if found:
                ledger.settle_chunk(record.id, number, _outcomes(found, by_id), now=clock())
                landed = {d.subscriber_id for d in found}
                recipients = [r for r in recipients if r.subscriber_id not in landed]
                request = ChunkRequest(issue, recipients, idempotency_key, planned_at)
        if not recipients:
            ledger.settle_chunk(record.id, number, [], now=clock())
            continue
        ledger.start_chunk(record.id, number, now=clock())
        results = provider.send_chunk(request)
        ledger.settle_chunk(record.id, number, _outcomes(results, by_id), now=clock())
    finished = ledger.finish_issue(record.id, now=clock())
    return SendReport(issue_key=record.key, counts=ledger.delivery_counts(record.id), finished=finished)


def _outcomes(results: Sequence[DeliveryResult], by_id: dict[int, int]) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (by_id[r.subscriber_id], ACCEPTED if r.accepted else REJECTED, r.message_id, r.error)
        for r in results
        if r.subscriber_id in by_id
    ]


def render_all(config: Config, ledger: Ledger, plan: Plan, keys: Sequence[Secret], clock: Clock) -> int:
    """Build every recipient's message without sending or recording anything; returns how many."""
    now = clock()
    count = 0
    for row in ledger.subscribers("active"):
        recipient = recipient_for(config, keys, row["id"], row["email"], now)
        plan.issue.message_bytes(recipient, date=now)
        count += 1
    return count


def preview_recipient(config: Config, keys: Sequence[Secret] | None, now: datetime) -> Recipient:
    """A stand-in recipient for previews (a real signed URL when a key is set)."""
    if keys:
        return recipient_for(config, keys, 0, "preview@example.invalid", now)
    return Recipient(0, "preview@example.invalid", unsubscribe_url(config.email.unsubscribe_url, "PREVIEW"))
