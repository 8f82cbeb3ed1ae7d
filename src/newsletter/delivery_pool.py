"""Several chunk requests in flight at once, the ledger written by one thread only.

The send engine (``send.py``) stays the ledger's only writer: it commits each chunk's
``in_flight`` mark, then hands the provider call to :class:`DeliveryPool`, which runs at most
``workers`` calls at a time and gives each one's outcome back to the engine's thread to record.
A worker never touches the ledger, so exactly-once rests on the same commits as a sequential
send: every chunk whose call may have started is ``in_flight`` in the ledger first.

:class:`SharedPause` makes a rate limit one provider-wide fact: when one call is told to wait
(``Retry-After``), no other worker starts a call before that time either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ProviderError, ProviderRateLimited
from .providers.base import ChunkRequest, DeliveryResult
from .retry import RetryPolicy

Tag = TypeVar("Tag")


@dataclass
class Outcome(Generic[Tag]):
    """What one submitted call came back with: its ``value`` or the ``error`` it raised."""

    tag: Tag
    value: Any = None
    error: BaseException | None = None


class DeliveryPool(Generic[Tag]):
    """Runs calls on up to ``workers`` threads; :meth:`submit` and :meth:`drain` return finished outcomes.

    With one worker the call runs at once on the caller's thread (no thread at all).  ``ready``
    more calls may wait for a free worker: the engine prepares the next chunk while every worker
    is busy, instead of after one is free.
    """

    def __init__(self, workers: int, *, ready: int = 0) -> None:
        self.workers = max(1, int(workers))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="deliver") if self.workers > 1 else None
        self._limit = self.workers + max(0, int(ready))
        self._pending: dict[Future, Tag] = {}

    def __enter__(self) -> DeliveryPool[Tag]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            # Calls already started finish (their outcome is lost to the ledger, which still
            # holds their chunks in_flight: a resume reconciles them); none is started anew.
            self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, tag: Tag, call: Callable[[], Any]) -> list[Outcome[Tag]]:
        """Start ``call``; returns the outcomes finished meanwhile, waiting while every worker is busy."""
        if self._executor is None:
            return [_run(tag, call)]
        self._pending[self._executor.submit(call)] = tag
        finished: list[Outcome[Tag]] = []
        while len(self._pending) >= self._limit:
            finished += self._collect(wait(self._pending, return_when=FIRST_COMPLETED).done)
        return finished

    def drain(self) -> list[Outcome[Tag]]:
        """Wait for every call in flight; their outcomes."""
        return self._collect(wait(self._pending).done) if self._pending else []

    def _collect(self, done: set[Future]) -> list[Outcome[Tag]]:
        outcomes = []
        for future in done:
            tag = self._pending.pop(future)
            error = future.exception()
            outcomes.append(Outcome(tag, error=error) if error else Outcome(tag, value=future.result()))
        return outcomes


def _run(tag: Tag, call: Callable[[], Any]) -> Outcome[Tag]:
    try:
        return Outcome(tag, value=call())
    except ProviderError as error:
        return Outcome(tag, error=error)


class SharedPause:
    """One provider-wide "not before" time: set by any rate-limited call, obeyed by every worker."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self.policy.monotonic() + max(0.0, seconds))

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._until - self.policy.monotonic()
            if left <= 0:
                return
            self.policy.sleep(left)


class PausedProvider:
    """A batch provider seen through a :class:`SharedPause`: every call waits for it, a rate limit sets it."""

    def __init__(self, provider: Any, pause: SharedPause) -> None:
        self._provider = provider
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    def send_chunk(self, request: ChunkRequest) -> list[DeliveryResult]:
        return self._paced(lambda: self._provider.send_chunk(request))

    def lookup_chunk(self, request: ChunkRequest) -> list[DeliveryResult] | None:
        return self._paced(lambda: self._provider.lookup_chunk(request))

    def _paced(self, call: Callable[[], Any]) -> Any:
        self._pause.wait()
        try:
            return call()
        except ProviderRateLimited as error:
            retry_after = getattr(error, "retry_after", None)
            if retry_after:
                self._pause.hold(float(retry_after))
            raise
