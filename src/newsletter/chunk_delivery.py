"""One provider call's worth of recipients, retried by the policy and reconciled, never delivered twice.

The send engines (:mod:`newsletter.send` for whole chunks, :mod:`newsletter.send_sequential`
for one message per call) decide what is recorded and when; this module only talks to the
provider: retry what may be retried, ask what a failed call left, and stop when nothing can tell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from .errors import DeliveryUncertain, ProviderError
from .providers.base import BatchProvider, ChunkRequest, DeliveryResult
from .retry import Attempts, RetryPolicy
from .store import ACCEPTED, REJECTED

T = TypeVar("T")

Outcomes = list[tuple[int, str, str | None, str | None]]


def with_retries(call: Callable[[], T], policy: RetryPolicy) -> T:
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
                pending = reconcile(provider, pending, record_landed, chunk=chunk, policy=policy, cause=error)
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


def reconcile(
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
    raise uncertain(provider, chunk, len(request.recipients), cause)


def uncertain(provider: BatchProvider, chunk: int, count: int, cause: ProviderError | None = None) -> DeliveryUncertain:
    """The error that stops a send when nothing can tell whether ``count`` recipients got the issue."""
    return DeliveryUncertain(
        f"chunk {chunk} ({count} recipients) may or may not have been delivered"
        + (f" after: {cause.message}" if cause else ""),
        where=f"provider {provider.name}",
        hint="check the provider's logs before sending again; nothing is re-sent automatically",
        maybe_delivered=True,
    )


def outcomes(results: Sequence[DeliveryResult], by_id: dict[int, int]) -> Outcomes:
    """``(delivery id, state, provider message id, error)`` of each result, as the ledger records them."""
    return [
        (by_id[r.subscriber_id], ACCEPTED if r.accepted else REJECTED, r.message_id, r.error)
        for r in results
        if r.subscriber_id in by_id
    ]
