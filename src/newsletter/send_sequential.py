"""Providers that take one message per call (SMTP, SES): a chunk's messages handed over one by one.

One synchronous commit per message (its ``in_flight`` mark) capped SMTP at a few hundred
messages a second, so here a chunk of many messages is marked ``in_flight`` in one synchronous
commit, before the first call; then each message goes through its own call, and one commit
that SQLite does not sync both records the outcome of the message before and names the one
handed over next (:meth:`~newsletter.send_ledger.SendLedger.hand_over`).  Per-recipient states
stay exactly what a chunk of one would record.

After a crash, the ledger says which deliveries are uncertain: under the same boot (no power
cut, so every unsynced commit is still there) only the one being handed over; the other
``in_flight`` deliveries of the chunk never reached the provider and are sent by the resume.
After a reboot nothing is assumed: every ``in_flight`` delivery is reconciled, as in any chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .chunk_delivery import Outcomes, deliver_chunk, outcomes, reconcile, uncertain
from .errors import ProviderError
from .providers.base import BatchProvider, ChunkRequest, DeliveryResult
from .recipients import RecipientMaker
from .render import Issue
from .retry import RetryPolicy
from .send_ledger import boot_id
from .store import IN_FLIGHT, PLANNED, UNKNOWN, DeliveryRow, IssueRecord, Ledger

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class OneByOne:
    """What every chunk of one send shares."""

    ledger: Ledger
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


def send_chunk_one_by_one(send: OneByOne, number: int, chunk_key: str) -> None:
    """Reconcile what a crash left of chunk ``number``, then hand its messages over one at a time."""
    ledger, issue_id = send.ledger, send.record.id
    rows = _unsent_rows(send, number)
    if any(r.state == IN_FLIGHT for r in rows) and ledger.sends.release_unsent(
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
        ledger.sends.settle_chunk(issue_id, number, outcomes(landed, by_id), now=send.clock())
        return
    left = ledger.sends.start_chunk(issue_id, number, now=send.clock(), boot=send.boot)
    done: Outcomes = outcomes(landed, by_id)
    for row in pending:
        if row.subscriber_id in left:  # unsubscribed since the rows were read: skipped by start_chunk
            continue
        ledger.sends.hand_over(issue_id, number, row.id, done, now=send.clock())
        found: list[DeliveryResult] = []
        request = send.request(row, chunk_key)
        try:
            results = deliver_chunk(send.provider, request, send.policy, found.extend, chunk=number)
        except ProviderError as error:
            maybe = error.maybe_delivered and not found
            ledger.sends.stop_chunk(
                issue_id, number, outcomes(found, by_id), uncertain=row.id if maybe else None, now=send.clock()
            )
            raise
        done = outcomes([*found, *results], by_id)
    ledger.sends.settle_chunk(issue_id, number, done, now=send.clock())


def _unsent_rows(send: OneByOne, number: int) -> list[DeliveryRow]:
    # People who left since planning are never sent to; their rows are skipped in the chunk's
    # next commit (start or settle), so reading the chunk writes nothing.
    rows = send.ledger.sends.chunk_deliveries(send.record.id, number)
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
        send.ledger.sends.mark_chunk_unknown(send.record.id, number, now=send.clock())
        raise


def one_by_one(
    ledger: Ledger, record: IssueRecord, issue: Issue, provider: BatchProvider, make_recipient: RecipientMaker,
    clock: Clock, policy: RetryPolicy, planned_at: datetime,
) -> OneByOne:  # fmt: skip
    """The frame of a send whose provider takes one message per call, under this boot."""
    return OneByOne(ledger, record, issue, provider, make_recipient, clock, policy, planned_at, boot_id())
