"""The one back-off schedule of every retry loop (issue #17), run by tenacity.

Used by the storage writers' retry loop (``sinks/retry.py``), the durable notification outbox
(which stores the next attempt time instead of sleeping) and the simulated data logger's
reconnects. Pure: no I/O, no clock.

wait after failed attempt n = min(max_s, initial_s × multiplier^(n−1)) × (1 − jitter + 2·jitter·u),
u uniform in [0, 1), capped again at max_s (at the cap the jitter may only shorten the wait).
With ``jitter`` 0, or u = 0.5, the wait is exactly the capped exponential.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState

__all__ = ["BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with bounded jitter; :meth:`wait` is its tenacity wait strategy.

    Jitter spreads the reconnects of several agents and processes so a restarted database or
    gateway is not hit by all of them in the same instant.
    """

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def delay(self, attempt: int, u: float = 0.5) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); u ∈ [0, 1)
        (the default 0.5 is the wait without jitter)."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        exponent = min(attempt - 1, 64)  # beyond this the cap applies anyway
        try:
            base = min(self.max_s, self.initial_s * self.multiplier**exponent)
        except OverflowError:  # a huge multiplier: long past the cap
            base = self.max_s
        return min(self.max_s, base * (1 - self.jitter + 2 * self.jitter * u))

    def wait(
        self, rand: Callable[[], float] = random.random
    ) -> Callable[[RetryCallState], float]:
        """tenacity ``wait=``: :meth:`delay` of the attempt that failed, jittered by
        ``rand()``."""

        def wait(state: RetryCallState) -> float:
            return self.delay(state.attempt_number, rand())

        return wait
