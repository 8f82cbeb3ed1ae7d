"""Several chunk requests in flight at once, the ledger written by one thread only.

The send engine (``send.py``) stays the ledger's only writer: it commits each chunk's
``in_flight`` mark, then hands the provider call to :class:`DeliveryPool`, which runs at most
``workers`` calls at a time and gives each one's outcome back to the engine's thread to record.
A worker never touches the ledger, so exactly-once rests on the same commits as a sequential
send: every chunk whose call may have started is ``in_flight`` in the ledger first.

:class:`SharedPause` makes a rate limit one provider-wide fact: when one call is told to wait
(``Retry-After``), no other worker starts a call before that time either.

Providers taking one message per call (SMTP) record each message before it is handed over, so
their workers need the ledger between calls: a :class:`LedgerDesk` runs those writes on the
engine's thread, one at a time, while the worker that asked waits for the answer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar, cast

from .errors import ProviderError, ProviderRateLimited
from .providers.base import ChunkRequest, DeliveryResult
from .retry import RetryPolicy

Tag = TypeVar("Tag")
T = TypeVar("T")


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


class DeskClosed(RuntimeError):
    """The engine's thread stopped serving (interrupted twice): a worker's ledger call was not run."""


class _Ticket:
    """One call handed to the desk; the asking worker waits on it."""

    __slots__ = ("call", "value", "error", "_done")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()  # released once the call has run: a lock is the cheapest one-shot signal

    def settle(self) -> None:
        try:
            self.value = self.call()
        except Exception as error:  # the worker's to handle, as if it had made the call itself
            self.error = error
        except BaseException:  # an interrupt of the serving thread is that thread's own
            self.error = DeskClosed("interrupted")
            raise
        finally:
            self._done.release()

    def wait(self) -> Any:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.value


class LedgerDesk:
    """Runs the workers' ledger calls on the thread that made the desk (the ledger's connection
    belongs to one thread), one at a time, in the order they are asked.

    A worker calls :meth:`run` and waits for the answer; the engine's thread calls :meth:`serve`
    until each of ``workers`` has called :meth:`leave`.  A first interrupt of the serving thread
    sets ``stop`` and keeps serving, so every worker finishes its message and records its chunk;
    a second one closes the desk: calls still waiting raise :class:`DeskClosed`.
    """

    def __init__(self) -> None:
        self._owner = threading.get_ident()
        self._calls: queue.SimpleQueue[_Ticket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` on the desk's thread (at once when that is this thread); its value or its error."""
        if threading.get_ident() == self._owner:
            return call()
        ticket = _Ticket(call)
        with self._lock:
            if self._closed:
                raise DeskClosed("the ledger's thread stopped")
            self._calls.put(ticket)
        return ticket.wait()

    def forward(self, target: T) -> T:
        """``target`` seen from a worker: each of its methods runs through :meth:`run`."""
        return cast(T, _Forwarded(self, target))  # the same methods, each run on the desk's thread

    def leave(self) -> None:
        """A worker is done (each calls this once, last)."""
        self._calls.put(None)

    def serve(self, workers: int, stop: threading.Event) -> BaseException | None:
        """Run the calls of ``workers`` threads until each has left; the interrupt that came meanwhile, if any."""
        interrupted: BaseException | None = None
        left = workers
        while left:
            try:
                ticket = self._calls.get()
                if ticket is None:
                    left -= 1
                else:
                    ticket.settle()
            except BaseException as error:
                stop.set()
                if interrupted is not None:
                    self._close()
                    raise
                interrupted = error
        return interrupted

    def _close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                ticket = self._calls.get_nowait()
            except queue.Empty:
                return
            if ticket is not None:
                ticket.error = DeskClosed("the ledger's thread stopped")
                ticket._done.release()


class _Forwarded:
    def __init__(self, desk: LedgerDesk, target: Any) -> None:
        self._desk = desk
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        return lambda *args, **kwargs: self._desk.run(partial(method, *args, **kwargs))
