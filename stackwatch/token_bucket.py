"""A token bucket with an injected clock (pure): the rate limits of the gateway and the ack API.

`rate` tokens per second, at most `burst` saved; each request (a frame, an API call) takes one.
Time is an argument (monotonic seconds), so limits are tested without sleeping.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; one token per request."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst ≥ 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one will be (none taken)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket is back to `burst` (its key can be forgotten)."""
        self._refill(now)
        return self._tokens >= self.burst
