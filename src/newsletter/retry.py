"""The one retry policy of the send engine: exponential backoff, full jitter, a total deadline.

Providers never retry; they raise typed errors (:mod:`newsletter.errors`) and
:func:`newsletter.chunk_delivery.deliver_chunk` asks this policy how long to wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one chunk before giving up (and leaving it for the next run)."""

    max_attempts: int = 8
    base_delay: float = 1.0  # seconds; doubles each attempt
    max_delay: float = 60.0
    deadline: float = 600.0  # total seconds for one chunk, waits included
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to ``base · 2^attempt``, capped (AWS architecture blog)."""
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """The wait before the next attempt: the provider's ``Retry-After`` wins over backoff."""
        return max(0.0, retry_after) if retry_after is not None else self.backoff(attempt)


class Attempts:
    """Counts attempts for one chunk and says whether another one fits in the policy."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.monotonic()
        self.count = 0

    def next_wait(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before trying again, or ``None`` when attempts or time are used up."""
        self.count += 1
        if self.count >= self.policy.max_attempts:
            return None
        delay = self.policy.wait(self.count - 1, retry_after)
        if self.policy.monotonic() - self.started + delay > self.policy.deadline:
            return None
        return delay

    def sleep(self, seconds: float) -> None:
        self.policy.sleep(seconds)
