"""Simulated time paced against the wall clock.

`speed` simulated seconds pass per wall second (60 → a day in 24 minutes); `speed=None`
is "fast": no pacing at all, for backfills and tests. The clock is the only place that
sleeps, so the frame generators stay pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta


class SimClock:
    """Maps simulated time to wall time: sim = origin + (wall − wall0) × speed."""

    def __init__(
        self,
        origin: datetime,
        speed: float | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if origin.tzinfo is None:
            raise ValueError("origin must be an aware datetime")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 (or None for fast mode)")
        self.origin = origin
        self.speed = speed
        self._monotonic = monotonic
        self._wall0 = monotonic()

    @property
    def fast(self) -> bool:
        """True when there is no pacing."""
        return self.speed is None

    def now(self) -> datetime:
        """Current simulated time (in fast mode: the origin; fast callers track their own)."""
        if self.speed is None:
            return self.origin
        return self.origin + timedelta(seconds=(self._monotonic() - self._wall0) * self.speed)

    def wall_delay(self, sim_at: datetime) -> float:
        """Wall seconds until `sim_at` is due (≤ 0 when already due; 0 in fast mode)."""
        if self.speed is None:
            return 0.0
        due = self._wall0 + (sim_at - self.origin).total_seconds() / self.speed
        return due - self._monotonic()

    async def sleep_until(self, sim_at: datetime) -> None:
        """Wait until simulated time `sim_at` (yields to the loop even in fast mode)."""
        delay = self.wall_delay(sim_at)
        await asyncio.sleep(max(0.0, delay))
