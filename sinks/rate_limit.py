"""A token-bucket rate limiter per key (person or client IP) with an injected clock.

Why a bucket: a person may click a few times at once (``burst``) but not hammer the API; a
client guessing tokens is slowed down by its IP's bucket before it is authenticated. The
clock is an argument (monotonic seconds), so limits are tested without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from stackwatch.token_bucket import TokenBucket

__all__ = ["RateLimiter"]


class RateLimiter:
    """``burst`` requests at once, refilled at ``per_minute`` per minute, per key."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("rate limit needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str) -> float:
        """Take one request for ``key``: 0.0 when allowed, else the seconds until one is."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:  # bounded memory: forget full buckets
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def retry_after(self, wait_s: float) -> str:
        """``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()
