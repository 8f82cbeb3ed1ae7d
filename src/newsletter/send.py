"""Choose the issue, plan it, and deliver it chunk by chunk, recording every step.

The ledger is written before each provider call and after it (see
:mod:`newsletter.store`), so a crash leaves rows ``in_flight`` that the next
run reconciles (provider lookup or idempotent replay) before anything is sent
again.  Nothing here retries blindly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

import jinja2

from .config import Config, Secret
from .content import Post, published
from .delivery_pool import DeliveryPool, Outcome, PausedProvider, SharedPause
from .errors import (
    AlreadySent,
    ConfigError,
    DeliveryUncertain,
    NotFound,
    NothingToSend,
    ProviderError,
    ProviderRejected,
    SendConflict,
    UsageError,
)  # fmt: skip
from .providers.base import AudienceProvider, BatchProvider, ChunkRequest, DeliveryResult, Provider
from .render import Issue, Recipient, render_issue
from .retry import Attempts, RetryPolicy
from .schedule import due_posts
from .store import ACCEPTED, IN_FLIGHT, MARKED, PLANNED, REJECTED, SENT, UNKNOWN, IssueRecord, Ledger
from .templates import labels
from .tokens import UNSUBSCRIBE, make_token, unsubscribe_url

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
T = TypeVar("T")
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
    audience_local: bool = True  # False when the provider keeps the list (audience family)
    kind: str = ISSUE
    corrects: IssueRecord | None = None
    due: tuple[Post, ...] = ()  # every post this run of `send` will mail, oldest first (this one first)
    digest_of: tuple[Post, ...] = ()  # a digest: the posts it gathers, marked sent once it went out

    def describe(self) -> list[str]:
        audience = str(self.recipients) if self.audience_local else f"the {self.provider} audience"
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
            lines.append(
                f"Due:        {len(self.due)} posts not yet sent, oldest first, each once: {names}"
            )
        return lines + [f"Warning:    {w}" for w in self.issue.warnings]


@dataclass
class SendReport:
    issue_key: str
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False


def sent_record(ledger: Ledger, post: Post) -> IssueRecord | None:
    """The ledger's record that ``post`` went out (or was marked sent) under its id and its slug."""
    return next((r for r in _done_under_id(ledger, post) if r.slug == post.slug), None)


def _done_under_id(ledger: Ledger, post: Post) -> list[IssueRecord]:
    return [r for r in ledger.issues.issues_for_post(post.id) if r.status in DONE_STATES]


def audience_of(record: IssueRecord) -> str:
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
    record = next((r for r in done if r.slug == post.slug), None)
    if record is not None:
        message = f"«{post.title}» ({post.slug}) was already {_how_sent(record)}"
        if slug is None:
            raise NothingToSend(message, hint="nothing new to send; publish a new post first")
        hint = "an issue is never sent twice"
        if record.content_hash != post.content_hash:
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
    return f"sent to {audience_of(record)} via {record.provider} on {when}"


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
        hint=f"if the id was changed by accident, put back id: {earlier.post_id}; if this is a new issue, send it with"
        f" 'newsletter send --new-issue {post.slug}'; to record it as sent without mailing, 'newsletter mark-sent {post.slug}'",
    )


def _correction_of(post: Post, ledger: Ledger, record: IssueRecord | None) -> Choice:
    if record is None or record.status != SENT:
        raise AlreadySent(
            f"«{post.title}» was never mailed, so there is nothing to correct", hint="send it normally"
        )
    latest = [r for r in ledger.issues.issues_for_post(post.id) if r.status == SENT][-1]
    if latest.content_hash == post.content_hash:
        raise NothingToSend(f"«{post.title}» has not changed since it was last sent", hint="edit it first")
    return Choice(post, CORRECTION, corrects=record)


def plan_send(
    config: Config,
    ledger: Ledger,
    choice: Choice,
    env: jinja2.Environment,
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
            hint=f"set provider = \"{resuming.provider}\" until it is finished",
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
        recipients = ledger.issues.count_audience_of(choice.corrects.id)
    else:
        recipients = subscribers
    return Plan(
        post=post, issue=issue, provider=provider.name, recipients=(recipients or 0) if local else 0,
        resuming=resuming, audience_local=local, kind=choice.kind, corrects=choice.corrects, due=choice.due,
        digest_of=digest[0] if digest else (),
    )  # fmt: skip


def chunk_size(config: Config, provider: Provider) -> int:
    """Recipients per call: the provider's maximum, or less if ``[providers.NAME] batch_size`` says so."""
    largest = provider.capabilities.max_batch or 1_000_000_000
    wanted = config.provider_settings(provider.name).get("batch_size", largest)
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ConfigError(
            "must be a whole number ≥ 1", where=f"newsletter.toml: providers.{provider.name}.batch_size",
            hint=f"at most {largest}",
        )  # fmt: skip
    return min(largest, wanted)


def recipient_for(config: Config, keys: Sequence[Secret], subscriber_id: int, email: str, issued: datetime) -> Recipient:
    """A recipient with their signed unsubscribe URL (no address in the token; SEC-09)."""
    token = make_token(keys, purpose=UNSUBSCRIBE, list_id=config.email.list_id, subscriber_id=subscriber_id, issued_at=issued)
    return Recipient(subscriber_id, email, unsubscribe_url(config.email.unsubscribe_url, token))


def deliver_issue(
    config: Config,
    ledger: Ledger,
    plan: Plan,
    provider: Provider,
    keys: Sequence[Secret],
    clock: Clock,
    policy: RetryPolicy | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Send (or resume) the planned issue, one chunk at a time, recording each step.

    ``progress(done, total)`` is called after each chunk (chunks left to send this run).
    """
    policy = policy or RetryPolicy()
    post, issue = plan.post, plan.issue
    provider.preflight()  # before the ledger records anything
    record = plan.resuming or ledger.issues.plan_issue(
        key=issue.key,
        post_id=post.id,
        slug=post.slug,
        content_hash=post.content_hash,
        subject=issue.subject,
        provider=provider.name,
        chunk_size=chunk_size(config, provider),
        now=clock(),
        local_audience=plan.audience_local,
        kind=plan.kind,
        audience_of=plan.corrects.id if plan.corrects else None,
    )
    if isinstance(provider, AudienceProvider):
        return _publish_to_audience(ledger, record, issue, provider, policy, clock)
    if not isinstance(provider, BatchProvider):
        raise TypeError(f"provider {provider.name!r} is neither a batch nor an audience provider")
    # Everything personal is derived from the plan's time, so a replay is byte-identical.
    planned_at = datetime.fromisoformat(record.created_at)
    # HTTP providers take several requests at once; this thread stays the ledger's only writer.
    workers = max(1, provider.capabilities.concurrency)
    caller = PausedProvider(provider, SharedPause(policy)) if workers > 1 else provider
    failure: BaseException | None = None
    with DeliveryPool[tuple[int, dict, list]](workers) as pool:
        for number, idempotency_key in counted(ledger.sends.open_chunks(record.id), progress):
            started = _start_chunk(config, ledger, record, provider, keys, clock, policy, planned_at, number,
                                   idempotency_key, issue)  # fmt: skip
            if started is None:
                continue
            request, by_id = started
            landed: list[DeliveryResult] = []
            if workers == 1:  # what landed during a reconciliation is recorded at once
                def record_landed(found, number=number, by_id=by_id) -> None:
                    ledger.sends.settle_chunk(record.id, number, _outcomes(found, by_id), now=clock())
            else:  # a worker never writes: this thread records it with the chunk's outcome
                record_landed = landed.extend

            def call(request=request, number=number, record_landed=record_landed):
                return deliver_chunk(caller, request, policy, record_landed, chunk=number)

            for outcome in pool.submit((number, by_id, landed), call):
                failure = _record_outcome(ledger, record, outcome, clock) or failure
            if failure is not None:
                break
        for outcome in pool.drain():
            failure = _record_outcome(ledger, record, outcome, clock) or failure
    if failure is not None:
        raise failure
    finished = ledger.sends.finish_issue(record.id, now=clock())
    return SendReport(issue_key=record.key, counts=ledger.sends.delivery_counts(record.id), finished=finished)


def _start_chunk(
    config: Config, ledger: Ledger, record: IssueRecord, provider: BatchProvider, keys: Sequence[Secret],
    clock: Clock, policy: RetryPolicy, planned_at: datetime, number: int, idempotency_key: str, issue: Issue,
) -> tuple[ChunkRequest, dict[int, int]] | None:  # fmt: skip
    """Reconcile what a crash left of a chunk, then commit it ``in_flight``; ``None`` if nothing is left to send."""
    # People who left since planning are never sent to; their rows are skipped in the
    # chunk's next commit (start or settle), so reading the chunk writes nothing.
    rows = [r for r in ledger.sends.chunk_deliveries(record.id, number) if not (r.departed and r.state == PLANNED)]
    by_id = {r.subscriber_id: r.id for r in rows}
    recipients = [recipient_for(config, keys, r.subscriber_id, r.email, planned_at) for r in rows]
    request = ChunkRequest(issue=issue, recipients=recipients, idempotency_key=idempotency_key, date=planned_at)

    def record_landed(found: Sequence[DeliveryResult]) -> None:
        ledger.sends.settle_chunk(record.id, number, _outcomes(found, by_id), now=clock())

    if any(r.state in (IN_FLIGHT, UNKNOWN) for r in rows):
        try:
            request = _reconcile(provider, request, record_landed, chunk=number, policy=policy)
        except ProviderError:
            ledger.sends.mark_chunk_unknown(record.id, number, now=clock())
            raise
    if not request.recipients:
        ledger.sends.settle_chunk(record.id, number, [], now=clock())
        return None
    left = ledger.sends.start_chunk(record.id, number, now=clock())
    if left:  # unsubscribed since the rows were read: skipped in the same commit as in_flight
        request = replace(request, recipients=[r for r in request.recipients if r.subscriber_id not in left])
        if not request.recipients:
            ledger.sends.settle_chunk(record.id, number, [], now=clock())
            return None
    return request, by_id


def _record_outcome(ledger: Ledger, record: IssueRecord, outcome: Outcome, clock: Clock) -> BaseException | None:
    """Write one chunk call's outcome to the ledger (this thread only); returns its error, if any."""
    number, by_id, landed = outcome.tag
    if landed:  # found at the provider during a reconciliation inside the call
        ledger.sends.settle_chunk(record.id, number, _outcomes(landed, by_id), now=clock())
    error = outcome.error
    if error is None:
        ledger.sends.settle_chunk(record.id, number, _outcomes(outcome.value, by_id), now=clock())
        return None
    if isinstance(error, ProviderError) and not error.maybe_delivered and not landed:
        ledger.sends.release_chunk(record.id, number, now=clock())
    else:  # it may have been delivered (or nobody knows what a bug left): reconciled before any resend
        ledger.sends.mark_chunk_unknown(record.id, number, now=clock())
    return error


def counted(items: Sequence[T], progress: Progress | None) -> Iterator[T]:
    """``items`` one by one, calling ``progress(done, total)`` once each item's work is over."""
    for done, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(done, len(items))


def _publish_to_audience(
    ledger: Ledger, record: IssueRecord, issue: Issue, provider: AudienceProvider, policy: RetryPolicy, clock: Clock
) -> SendReport:
    """Audience family: one create-then-send call, retried with the same idempotency keys."""
    for number, idempotency_key in ledger.sends.open_chunks(record.id):
        ledger.sends.start_chunk(record.id, number, now=clock())
        try:
            # Idempotent provider: a replay after an uncertain failure cannot send twice.
            reference = with_retries(lambda: provider.publish(issue, idempotency_key=idempotency_key), policy)
        except ProviderError as error:
            if error.maybe_delivered:
                ledger.sends.mark_chunk_unknown(record.id, number, now=clock())
            else:
                ledger.sends.release_chunk(record.id, number, now=clock())
            raise
        ledger.sends.accept_chunk(record.id, number, reference, now=clock())
    finished = ledger.sends.finish_issue(record.id, now=clock())
    return SendReport(issue_key=record.key, counts={}, finished=finished)


def with_retries(call: Callable[[], object], policy: RetryPolicy):
    """``call()`` retried on retryable errors by the policy; only for idempotent calls."""
    attempts = Attempts(policy)
    while True:
        try:
            return call()
        except ProviderError as error:
            delay = attempts.next_wait(getattr(error, "retry_after", None)) if error.retryable else None
            if delay is None:
                raise
            attempts.sleep(delay)


def deliver_chunk(
    provider: BatchProvider,
    request: ChunkRequest,
    policy: RetryPolicy,
    record_landed: Callable[[Sequence[DeliveryResult]], None],
    *,
    chunk: int,
) -> list[DeliveryResult]:
    """One chunk through the provider, retried by the policy, never delivered twice.

    - rate limits and transient failures wait (``Retry-After`` first, else backoff) and retry;
    - auth and validation errors are raised at once;
    - a failure after which the provider may have the chunk (timeout, dropped answer) is
      reconciled before any retry: an idempotent provider gets the same request again,
      one that can look up gets only the recipients it does not have, and one that can do
      neither stops the send (:class:`DeliveryUncertain`);
    - recipients refused temporarily inside a partly failed chunk are retried alone.
    """
    attempts = Attempts(policy)
    settled: dict[int, DeliveryResult] = {}
    pending = request
    retry_round = 0
    while True:
        try:
            results = provider.send_chunk(pending)
        except ProviderError as error:
            if not error.retryable:
                raise
            if error.maybe_delivered:
                pending = _reconcile(provider, pending, record_landed, chunk=chunk, policy=policy, cause=error)
                if not pending.recipients:
                    return list(settled.values())
            delay = attempts.next_wait(getattr(error, "retry_after", None))
            if delay is None:
                raise
            attempts.sleep(delay)
            continue
        retry = set()
        for result in results:
            if not result.accepted and result.retryable:
                retry.add(result.subscriber_id)
            else:
                settled[result.subscriber_id] = result
        if not retry:
            return list(settled.values())
        delay = attempts.next_wait()
        if delay is None:
            for result in results:
                if result.subscriber_id in retry:
                    settled[result.subscriber_id] = result
            return list(settled.values())
        attempts.sleep(delay)
        retry_round += 1
        # A smaller request is a different request: it gets its own derived key.
        pending = replace(
            pending,
            recipients=[r for r in pending.recipients if r.subscriber_id in retry],
            idempotency_key=f"{request.idempotency_key}:retry{retry_round}",
        )


def _lookup(provider: BatchProvider, request: ChunkRequest, policy: RetryPolicy) -> list[DeliveryResult] | None:
    """Ask the provider what it has of a chunk, retried like a send.

    A lookup that keeps failing proves nothing either way: the error leaves saying the
    chunk may have been delivered, so it is marked ``unknown``, never released for a resend.
    """
    try:
        return with_retries(lambda: provider.lookup_chunk(request), policy)
    except ProviderError as error:
        error.maybe_delivered = True
        raise


def _reconcile(
    provider: BatchProvider,
    request: ChunkRequest,
    record_landed: Callable[[Sequence[DeliveryResult]], None],
    *,
    chunk: int,
    policy: RetryPolicy,
    cause: ProviderError | None = None,
) -> ChunkRequest:
    """What is left to send of a chunk the provider may already have; never guesses.

    A provider that can look up is asked, and what it has is recorded; otherwise an
    idempotent provider gets the identical request again; otherwise the send stops.
    """
    capabilities = provider.capabilities
    if capabilities.lookup:
        found = _lookup(provider, request, policy)
        if found is not None:
            landed = [d for d in found if d.accepted]
            if landed:
                record_landed(landed)
            done = {d.subscriber_id for d in landed}
            return replace(request, recipients=[r for r in request.recipients if r.subscriber_id not in done])
    if capabilities.idempotency:
        return request
    raise DeliveryUncertain(
        f"chunk {chunk} ({len(request.recipients)} recipients) may or may not have been delivered"
        + (f" after: {cause.message}" if cause else ""),
        where=f"provider {provider.name}",
        hint="check the provider's logs before sending again; nothing is re-sent automatically",
        maybe_delivered=True,
    )


def _outcomes(results: Sequence[DeliveryResult], by_id: dict[int, int]) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (by_id[r.subscriber_id], ACCEPTED if r.accepted else REJECTED, r.message_id, r.error)
        for r in results
        if r.subscriber_id in by_id
    ]


def send_test(
    config: Config,
    issue: Issue,
    provider: Provider,
    keys: Sequence[Secret],
    address: str,
    clock: Clock,
    policy: RetryPolicy,
) -> None:
    """One copy to ``address`` through the provider; the ledger is not touched."""
    now = clock()
    if isinstance(provider, AudienceProvider):
        audience = provider
        with_retries(lambda: audience.send_test(issue, [address]), policy)
        return
    if not isinstance(provider, BatchProvider):
        raise TypeError(f"provider {provider.name!r} is neither a batch nor an audience provider")
    recipient = recipient_for(config, keys, 0, address, now)
    key = f"{issue.key}:test:{int(now.timestamp())}"
    request = ChunkRequest(issue=issue, recipients=[recipient], idempotency_key=key, date=now)
    results = deliver_chunk(provider, request, policy, lambda found: None, chunk=0)
    refused = [r for r in results if not r.accepted]
    if refused:
        raise ProviderRejected(f"the test copy was refused: {refused[0].error}", where=f"provider {provider.name}")


def render_all(
    config: Config, ledger: Ledger, plan: Plan, keys: Sequence[Secret], clock: Clock, progress: Progress | None = None
) -> int:
    """Build every recipient's message without sending or recording anything; returns how many.

    ``progress(done, total)`` is called every 500 messages and at the end.
    """
    now = clock()
    count = 0
    total = ledger.subscribers.count_subscribers("active") if progress is not None else 0
    for row in ledger.subscribers.stream("active"):
        recipient = recipient_for(config, keys, row["id"], row["email"], now)
        plan.issue.message_bytes(recipient, date=now)
        count += 1
        if progress is not None and count % 500 == 0:
            progress(count, total)
    if progress is not None:
        progress(count, max(total, count))
    return count


def preview_recipient(config: Config, keys: Sequence[Secret] | None, now: datetime) -> Recipient:
    """A stand-in recipient for previews (a real signed URL when a key is set)."""
    if keys:
        return recipient_for(config, keys, 0, "preview@example.invalid", now)
    return Recipient(0, "preview@example.invalid", unsubscribe_url(config.email.unsubscribe_url, "PREVIEW"))


def mark_posts_sent(
    config: Config, ledger: Ledger, posts: Sequence[Post], env: jinja2.Environment, now: datetime
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
            key=issue.key, post_id=post.id, slug=post.slug, content_hash=post.content_hash, subject=issue.subject, now=now
        )
        outcomes.append((post.slug, "marked"))
    return outcomes
