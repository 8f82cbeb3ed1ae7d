"""Deliver a planned issue chunk by chunk, recording every step in the ledger.

The ledger is written before each provider call and after it (see
:mod:`newsletter.store`), so a crash leaves rows ``in_flight`` that the next
run reconciles (provider lookup or idempotent replay) before anything is sent
again.  Nothing here retries blindly.  Which issue to send, and its plan, come
from :mod:`newsletter.send_plan`; one call's retries and reconciliation from
:mod:`newsletter.chunk_delivery`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar, cast

from .chunk_delivery import deliver_chunk, outcomes, reconcile, with_retries
from .config import Config, Secret
from .delivery_pool import DeliveryPool, Outcome, PausedProvider, SharedPause
from .errors import ConfigError, ProviderError, ProviderRejected
from .providers.base import AudienceProvider, BatchProvider, ChunkRequest, DeliveryResult, Provider
from .recipients import RecipientMaker, recipient_for
from .render import Issue
from .retry import RetryPolicy
from .send_plan import Plan
from .send_sequential import one_by_one, send_one_by_one
from .store import IN_FLIGHT, PLANNED, UNKNOWN, IssueRecord, Ledger

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class SendReport:
    issue_key: str
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False


# Messages per chunk for a provider that takes one message per call (SMTP): one synchronous
# commit marks them all in_flight, so a power cut can leave at most this many uncertain.
ONE_BY_ONE_CHUNK = 100


def chunk_size(config: Config, provider: Provider) -> int:
    """Recipients per chunk, each chunk marked ``in_flight`` by one synchronous commit.

    A batch provider's chunk is one call: its maximum per call.  A provider that takes one
    message per call gets :data:`ONE_BY_ONE_CHUNK` messages per chunk.  ``[providers.NAME]
    batch_size`` may lower either.
    """
    largest = provider.capabilities.max_batch or 1_000_000_000
    if largest == 1:
        largest = ONE_BY_ONE_CHUNK
    wanted = config.provider_settings(provider.name).get("batch_size", largest)
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ConfigError(
            "must be a whole number ≥ 1", where=f"newsletter.toml: providers.{provider.name}.batch_size",
            hint=f"at most {largest}",
        )  # fmt: skip
    return min(largest, wanted)


def deliver_issue(
    config: Config,
    ledger: Ledger,
    plan: Plan,
    provider: Provider,
    signing_keys: Sequence[Secret],
    clock: Clock,
    policy: RetryPolicy | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Send (or resume) the planned issue chunk by chunk (a few at once where the provider allows), recording each step.

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
        list_is_local=plan.list_is_local,
        kind=plan.kind,
        recipients_of_issue=plan.corrects.id if plan.corrects else None,
    )
    if isinstance(provider, AudienceProvider):
        return _publish_to_audience(ledger, record, issue, provider, policy, clock)
    if not isinstance(provider, BatchProvider):
        raise TypeError(f"provider {provider.name!r} is neither a batch nor an audience provider")
    # Everything personal is derived from the plan's time, so a replay is byte-identical.
    planned_at = datetime.fromisoformat(record.created_at)
    make_recipient = RecipientMaker(config, signing_keys, planned_at)
    chunks = ledger.sends.open_chunks(record.id)
    # What exists now (modules, config, the rendered issue) lives as long as the send: kept out
    # of the collector's full passes, which a send's many short-lived rows set off again and again.
    gc.freeze()
    try:
        if provider.capabilities.max_batch == 1:
            send = one_by_one(ledger, record, issue, provider, make_recipient, clock, policy, planned_at)
            send_one_by_one(send, chunks, workers=provider.capabilities.concurrency, progress=progress)
        else:
            _deliver_chunks(ledger, record, issue, provider, make_recipient, clock, policy, planned_at,
                            counted(chunks, progress))  # fmt: skip
    finally:
        gc.unfreeze()
    finished = ledger.sends.finish_issue(record.id, now=clock())
    return SendReport(issue_key=record.key, counts=ledger.sends.delivery_counts(record.id), finished=finished)


@dataclass
class _Started:
    """A chunk committed ``in_flight``: how to build its request, and its deliveries by subscriber."""

    number: int
    by_id: dict[int, int]
    request: Callable[[], ChunkRequest]
    landed: list[DeliveryResult] = field(default_factory=list)  # found by a reconciliation inside the call


def _deliver_chunks(
    ledger: Ledger, record: IssueRecord, issue: Issue, provider: BatchProvider, make_recipient: RecipientMaker,
    clock: Clock, policy: RetryPolicy, planned_at: datetime, chunks: Iterator[tuple[int, str]],
) -> None:  # fmt: skip
    """Batch providers: each chunk one call (retried, reconciled), several in flight when the provider allows.

    This thread is the ledger's only writer.  While the workers wait on the provider it
    commits the next chunk ``in_flight``, so a worker that frees finds one ready; the workers
    sign the recipients' tokens and build the requests.
    """
    workers = max(1, provider.capabilities.concurrency)
    caller = PausedProvider(provider, SharedPause(policy)) if workers > 1 else provider
    failure: BaseException | None = None
    with DeliveryPool[_Started](workers, ready=1 if workers > 1 else 0) as pool:
        for number, chunk_key in chunks:
            started = _start_chunk(ledger, record, issue, provider, make_recipient, clock, policy, planned_at,
                                   number, chunk_key)  # fmt: skip
            if started is None:
                continue
            record_landed: Callable[[Sequence[DeliveryResult]], None]
            if workers == 1:  # what landed during a reconciliation is recorded at once
                record_landed = partial(_settle_landed, ledger, record, started, clock)
            else:  # a worker never writes: this thread records it with the chunk's outcome
                record_landed = started.landed.extend

            def call(
                started: _Started = started,
                record_landed: Callable[[Sequence[DeliveryResult]], None] = record_landed,
            ) -> list[DeliveryResult]:
                return deliver_chunk(cast(BatchProvider, caller), started.request(), policy, record_landed,
                                     chunk=started.number)  # fmt: skip

            for outcome in pool.submit(started, call):
                failure = _record_outcome(ledger, record, outcome, clock) or failure
            if failure is not None:
                break
        for outcome in pool.drain():
            failure = _record_outcome(ledger, record, outcome, clock) or failure
    if failure is not None:
        raise failure


def _start_chunk(
    ledger: Ledger, record: IssueRecord, issue: Issue, provider: BatchProvider, make_recipient: RecipientMaker,
    clock: Clock, policy: RetryPolicy, planned_at: datetime, number: int, chunk_key: str,
) -> _Started | None:  # fmt: skip
    """Reconcile what a crash left of a chunk, then commit it ``in_flight``; ``None`` if nothing is left to send."""
    # People who left since planning are never sent to; their rows are skipped in the
    # chunk's next commit (start or settle), so reading the chunk writes nothing.
    rows = [r for r in ledger.sends.chunk_deliveries(record.id, number) if not (r.departed and r.state == PLANNED)]
    by_id = {r.subscriber_id: r.id for r in rows}
    people = [(r.subscriber_id, r.email) for r in rows]
    if any(r.state in (IN_FLIGHT, UNKNOWN) for r in rows):
        request = ChunkRequest(issue, [make_recipient(*person) for person in people], chunk_key, planned_at)

        def record_landed(found: Sequence[DeliveryResult]) -> None:
            ledger.sends.settle_chunk(record.id, number, outcomes(found, by_id), now=clock())

        try:
            request = reconcile(provider, request, record_landed, chunk=number, policy=policy)
        except ProviderError:
            ledger.sends.mark_chunk_unknown(record.id, number, now=clock())
            raise
        people = [(r.subscriber_id, r.email) for r in request.recipients]
    if not people:
        ledger.sends.settle_chunk(record.id, number, [], now=clock())
        return None
    left = ledger.sends.start_chunk(record.id, number, now=clock())
    if left:  # unsubscribed since the rows were read: skipped in the same commit as in_flight
        people = [person for person in people if person[0] not in left]
        if not people:
            ledger.sends.settle_chunk(record.id, number, [], now=clock())
            return None

    def request_of_chunk() -> ChunkRequest:
        return ChunkRequest(issue, [make_recipient(*person) for person in people], chunk_key, planned_at)

    return _Started(number, by_id, request_of_chunk)


def _settle_landed(
    ledger: Ledger, record: IssueRecord, started: _Started, clock: Clock, found: Sequence[DeliveryResult]
) -> None:
    ledger.sends.settle_chunk(record.id, started.number, outcomes(found, started.by_id), now=clock())


def _record_outcome(
    ledger: Ledger, record: IssueRecord, outcome: Outcome[_Started], clock: Clock
) -> BaseException | None:
    """Write one chunk call's outcome to the ledger (this thread only); returns its error, if any."""
    number, by_id, landed = outcome.tag.number, outcome.tag.by_id, outcome.tag.landed
    if landed:  # found at the provider during a reconciliation inside the call
        ledger.sends.settle_chunk(record.id, number, outcomes(landed, by_id), now=clock())
    error = outcome.error
    if error is None:
        ledger.sends.settle_chunk(record.id, number, outcomes(outcome.value, by_id), now=clock())
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
            reference = with_retries(partial(provider.publish, issue, idempotency_key=idempotency_key), policy)
        except ProviderError as error:
            if error.maybe_delivered:
                ledger.sends.mark_chunk_unknown(record.id, number, now=clock())
            else:
                ledger.sends.release_chunk(record.id, number, now=clock())
            raise
        ledger.sends.accept_chunk(record.id, number, reference, now=clock())
    finished = ledger.sends.finish_issue(record.id, now=clock())
    return SendReport(issue_key=record.key, counts={}, finished=finished)


def send_test(
    config: Config,
    issue: Issue,
    provider: Provider,
    signing_keys: Sequence[Secret],
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
    recipient = recipient_for(config, signing_keys, 0, address, now)
    key = f"{issue.key}:test:{int(now.timestamp())}"
    request = ChunkRequest(issue=issue, recipients=[recipient], idempotency_key=key, date=now)
    results = deliver_chunk(provider, request, policy, lambda found: None, chunk=0)
    refused = [r for r in results if not r.accepted]
    if refused:
        raise ProviderRejected(f"the test copy was refused: {refused[0].error}", where=f"provider {provider.name}")


def render_all(
    config: Config,
    ledger: Ledger,
    plan: Plan,
    signing_keys: Sequence[Secret],
    clock: Clock,
    progress: Progress | None = None,
) -> int:
    """Build every recipient's message without sending or recording anything; returns how many.

    ``progress(done, total)`` is called every 500 messages and at the end.
    """
    now = clock()
    make_recipient = RecipientMaker(config, signing_keys, now)
    count = 0
    total = ledger.subscribers.count_subscribers("active") if progress is not None else 0
    for row in ledger.subscribers.stream("active"):
        plan.issue.message_bytes(make_recipient(row["id"], row["email"]), date=now)
        count += 1
        if progress is not None and count % 500 == 0:
            progress(count, total)
    if progress is not None:
        progress(count, max(total, count))
    return count
