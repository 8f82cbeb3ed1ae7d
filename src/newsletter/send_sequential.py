"""Providers that take one message per call (SMTP, SES): a chunk's messages handed over one by one.

One synchronous commit per message (its ``in_flight`` mark) capped SMTP at a few hundred
messages a second, so here a chunk of many messages is marked ``in_flight`` in one synchronous
commit, before the first call; then each message goes through its own call, and one commit
that SQLite does not sync both records the outcome of the message before and names the one
handed over next (:meth:`~newsletter.send_ledger.SendLedger.hand_over`).  Per-recipient states
stay exactly what a chunk of one would record.

A provider that takes several calls at once (``capabilities.concurrency``, SMTP's
``connections``) gets that many chunks in progress side by side, each on a worker thread of
its own, each chunk's messages in ascending order; the chunks themselves finish in any order.
The ledger stays on the engine's thread (:class:`~newsletter.delivery_pool.LedgerDesk`): a
worker's commits run there one at a time, and each still precedes the call it records.

After a crash, the ledger says which deliveries are uncertain: under the same boot (no power
cut, so every unsynced commit is still there) only the one being handed over in each chunk in
progress, so at most one per worker, each named by its chunk; the other ``in_flight`` deliveries
never reached the provider and go back to ``planned`` before the resume sends anything.  After a
reboot nothing is assumed: every ``in_flight`` delivery is reconciled, as in any chunk.  When one
worker's call fails, the others finish the message in hand, record their chunk
(:meth:`~newsletter.send_ledger.ChunkOutcomes.stop_chunk`) and stop; the first error is the
send's, and the resume sends exactly what no one took.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .chunk_delivery import Outcomes, deliver_chunk, outcomes, reconcile, uncertain
from .delivery_pool import LedgerDesk
from .errors import DeliveryUncertain, ProviderError
from .providers.base import BatchProvider, ChunkRequest, DeliveryResult
from .recipients import RecipientMaker
from .render import Issue
from .retry import RetryPolicy
from .send_ledger import SendLedger, boot_id
from .store import IN_FLIGHT, PLANNED, UNKNOWN, DeliveryRow, IssueRecord, Ledger

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class OneByOne:
    """What every chunk of one send shares."""

    sends: SendLedger
    record: IssueRecord
    issue: Issue
    provider: BatchProvider
    make_recipient: RecipientMaker
    clock: Clock
    policy: RetryPolicy
    planned_at: datetime
    boot: str | None

    def request(self, row: DeliveryRow, chunk_key: str) -> ChunkRequest:
        """One message's call, with its own idempotency key (the same on every replay)."""
        recipient = self.make_recipient(row.subscriber_id, row.email)
        key = f"{chunk_key}:{row.subscriber_id}"
        return ChunkRequest(issue=self.issue, recipients=[recipient], idempotency_key=key, date=self.planned_at)


def send_one_by_one(
    send: OneByOne, chunks: Sequence[tuple[int, str]], *, workers: int = 1, progress: Progress | None = None
) -> None:
    """Every chunk of ``chunks`` (``(number, key)``), ``workers`` of them in progress at once.

    ``progress(done, total)`` is called, on this thread, after each chunk.
    """
    for number in send.sends.in_flight_chunks(send.record.id):  # see release_unsent: left by a crash
        send.sends.release_unsent(send.record.id, number, boot=send.boot, now=send.clock())
    # What a crash left in doubt is reconciled first, one chunk at a time: a provider that cannot
    # tell what it has (SMTP) stops the send there, before any worker sends anything new, and
    # after every chunk in doubt is marked so (the editor's ``resolve`` settles them all).
    in_doubt = set(send.sends.chunks_in_doubt(send.record.id))
    doubtful = [chunk for chunk in chunks if chunk[0] in in_doubt]
    rest = [chunk for chunk in chunks if chunk[0] not in in_doubt]
    alone = workers <= 1 or len(rest) <= 1
    refusals: list[tuple[int, DeliveryUncertain]] = []
    done = 0
    for number, chunk_key in (doubtful + rest) if alone else doubtful:
        if refusals and number not in in_doubt:
            break
        try:
            send_chunk_one_by_one(send, number, chunk_key)
        except DeliveryUncertain as error:
            if number not in in_doubt:
                raise
            refusals.append((number, error))
            continue
        done += 1
        if progress is not None:
            progress(done, len(chunks))
    if refusals:
        raise _refusal(send, refusals)
    if not alone:
        counted = None if progress is None else (lambda finished, _total: progress(done + finished, len(chunks)))
        _side_by_side(send, rest, min(workers, len(rest)), counted)


def _refusal(send: OneByOne, refusals: Sequence[tuple[int, DeliveryUncertain]]) -> DeliveryUncertain:
    """One error for every chunk in doubt, each now marked ``unknown``: ``newsletter resolve``
    settles them all, so the line the editor decides from names them all."""
    first = refusals[0][1]
    if len(refusals) == 1:
        return first
    others = []
    for number, _error in refusals[1:]:
        count = sum(row.state == UNKNOWN for row in send.sends.chunk_deliveries(send.record.id, number))
        others.append(f"chunk {number} ({count} recipients)")
    return DeliveryUncertain(
        f"{first.message}; so may {', '.join(others)}", where=first.where, hint=first.hint, maybe_delivered=True
    )


def _side_by_side(send: OneByOne, chunks: Sequence[tuple[int, str]], workers: int, progress: Progress | None) -> None:
    """``workers`` threads, each taking the next chunk until none is left or one of them failed."""
    desk, stop = LedgerDesk(), threading.Event()
    worker_send = replace(send, sends=desk.forward(send.sends))
    queued = iter(chunks)
    take_lock = threading.Lock()
    failures: list[BaseException] = []  # in the order they happened: the first is the send's
    finished = [0]

    def take() -> tuple[int, str] | None:
        with take_lock:
            return None if stop.is_set() else next(queued, None)

    def chunk_done() -> None:  # on the desk's thread
        finished[0] += 1
        if progress is not None:
            progress(finished[0], len(chunks))

    def work() -> None:
        try:
            while (item := take()) is not None:
                send_chunk_one_by_one(worker_send, *item, stop=stop)
                if not stop.is_set():  # a chunk stopped half-way is not done
                    desk.run(chunk_done)
        except BaseException as error:
            failures.append(error)
            stop.set()
        finally:
            desk.leave()

    threads = [threading.Thread(target=work, name=f"deliver-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        interrupted = desk.serve(workers, stop)
    finally:
        for thread in threads:
            thread.join()
    if interrupted is not None:
        raise interrupted
    if failures:
        raise failures[0]


def send_chunk_one_by_one(send: OneByOne, number: int, chunk_key: str, *, stop: threading.Event | None = None) -> None:
    """Reconcile what a crash left of chunk ``number``, then hand its messages over one at a time.

    Once ``stop`` is set (another worker failed), the message in hand is recorded and the rest of
    the chunk goes back to ``planned``.
    """
    sends, issue_id = send.sends, send.record.id
    rows = _unsent_rows(send, number)
    if any(r.state == IN_FLIGHT for r in rows) and sends.release_unsent(
        issue_id, number, boot=send.boot, now=send.clock()
    ):
        rows = _unsent_rows(send, number)
    by_id = {r.subscriber_id: r.id for r in rows}
    landed: list[DeliveryResult] = []
    pending = [r for r in rows if r.state == PLANNED]
    maybe_sent = [r for r in rows if r.state in (IN_FLIGHT, UNKNOWN)]
    if maybe_sent:
        pending += _reconciled(send, number, chunk_key, maybe_sent, landed)
        pending.sort(key=lambda r: r.subscriber_id)
    if not pending:
        sends.settle_chunk(issue_id, number, outcomes(landed, by_id), now=send.clock())
        return
    left = sends.start_chunk(issue_id, number, now=send.clock(), boot=send.boot)
    done: Outcomes = outcomes(landed, by_id)
    for row in pending:
        if row.subscriber_id in left:  # unsubscribed since the rows were read: skipped by start_chunk
            continue
        if stop is not None and stop.is_set():
            sends.stop_chunk(issue_id, number, done, uncertain=None, now=send.clock())
            return
        sends.hand_over(issue_id, number, row.id, done, now=send.clock())
        found: list[DeliveryResult] = []
        request = send.request(row, chunk_key)
        try:
            results = deliver_chunk(send.provider, request, send.policy, found.extend, chunk=number)
        except ProviderError as error:
            maybe = error.maybe_delivered and not found
            sends.stop_chunk(
                issue_id, number, outcomes(found, by_id), uncertain=row.id if maybe else None, now=send.clock()
            )
            raise
        done = outcomes([*found, *results], by_id)
    sends.settle_chunk(issue_id, number, done, now=send.clock())


def _unsent_rows(send: OneByOne, number: int) -> list[DeliveryRow]:
    # People who left since planning are never sent to; their rows are skipped in the chunk's
    # next commit (start or settle), so reading the chunk writes nothing.
    rows = send.sends.chunk_deliveries(send.record.id, number)
    return [r for r in rows if not (r.departed and r.state == PLANNED)]


def _reconciled(
    send: OneByOne, number: int, chunk_key: str, maybe_sent: Sequence[DeliveryRow], landed: list[DeliveryResult]
) -> list[DeliveryRow]:
    """Of the deliveries the provider may have, those to send again; what it has goes to ``landed``.

    Each message was its own call, so each is looked up or replayed under its own key; a
    provider that can do neither (SMTP) stops the send, naming them all.
    """
    capabilities = send.provider.capabilities
    try:
        if not (capabilities.lookup or capabilities.idempotency):
            raise uncertain(send.provider, number, len(maybe_sent))
        again = []
        for row in maybe_sent:
            request = send.request(row, chunk_key)
            if reconcile(send.provider, request, landed.extend, chunk=number, policy=send.policy).recipients:
                again.append(row)
        return again
    except ProviderError:
        send.sends.mark_chunk_unknown(send.record.id, number, now=send.clock())
        raise


def one_by_one(
    ledger: Ledger, record: IssueRecord, issue: Issue, provider: BatchProvider, make_recipient: RecipientMaker,
    clock: Clock, policy: RetryPolicy, planned_at: datetime,
) -> OneByOne:  # fmt: skip
    """The frame of a send whose provider takes one message per call, under this boot."""
    return OneByOne(ledger.sends, record, issue, provider, make_recipient, clock, policy, planned_at, boot_id())
