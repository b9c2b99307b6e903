"""What time the traffic says it is: the reference a logger's clock is judged against (pure).

A logger's clock is wrong when its DataTime disagrees with *the platform's* time. Live, that is
the receipt time. When historical traffic is replayed, every frame arrives years after its
DataTime, and receipt time would call every logger skewed. So the reference is the consensus
of the loggers themselves: the median, over the most recent frame of each recent stack, of
`receipt − event time`. Live it is ≈ 0 and the rule reduces to "DataTime vs receipt"; in a
replay at any speed it is the replay's offset, and only a logger that disagrees with its peers
(the one that sends the year 2000) stands out.

The tolerance widens with the spread of the peers (a scaled median absolute deviation), and
with the speed of the input: when data arrives faster than real time (a replay at 60× or as
fast as possible), receipt order says little about clocks — loggers are hours apart from each
other on the wire — and only a gross error (a clock in another year) can be told. With fewer
than `min_stacks` peers heard for ten minutes there is no consensus yet and no clock is judged
(the first frames of a replay would all look years late against receipt time).
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation (normal distribution)."""


class ClockReference(BaseModel):
    """The platform's clock offset, how much the loggers disagree about it, and how fast the
    input runs (event time per receipt time: 1 live, 60 in a 60× replay)."""

    model_config = ConfigDict(frozen=True)

    offset: timedelta = timedelta(0)
    spread: timedelta = timedelta(0)
    stacks: int = 0
    speed: float = 1.0


RECEIPT_TIME = ClockReference()
"""Receipt time itself as the reference (a platform whose own clock is the truth)."""


MIN_SPAN_S = 600.0
"""A stack's speed is known once its receipts or its event times span ten minutes."""


class PlatformClock:
    """Recent `receipt − event time` offsets of the stacks one worker serves."""

    def __init__(self, window: int = 256, min_stacks: int = 5) -> None:
        self.window = window
        self.min_stacks = min_stacks
        self._offsets: OrderedDict[str, float] = OrderedDict()
        self._first: dict[str, tuple[float, float]] = {}
        self._speeds: dict[str, float] = {}

    def observe(self, stack_id: str, received_at: datetime, event_time: datetime) -> None:
        """The newest frame of one stack (its realtime or minute data, never re-sends)."""
        rx, ev = received_at.timestamp(), event_time.timestamp()
        self._offsets.pop(stack_id, None)
        self._offsets[stack_id] = rx - ev
        rx0, ev0 = self._first.setdefault(stack_id, (rx, ev))
        d_rx, d_ev = rx - rx0, ev - ev0
        # Kept up to date here, once per frame, rather than recomputed for every stack on
        # every reference() call (the worker asks for the reference on each record).
        if max(d_rx, d_ev) >= MIN_SPAN_S:
            self._speeds[stack_id] = d_ev / d_rx if d_rx > 0 else float("inf")
        else:
            self._speeds.pop(stack_id, None)
        while len(self._offsets) > self.window:
            old, _ = self._offsets.popitem(last=False)
            self._first.pop(old, None)
            self._speeds.pop(old, None)

    def reference(self) -> ClockReference | None:
        """The consensus offset, spread and speed, or None with too few peers to judge by."""
        values = list(self._offsets.values())
        speeds = list(self._speeds.values())
        if len(values) < self.min_stacks or len(speeds) < self.min_stacks:
            return None
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        return ClockReference(
            offset=timedelta(seconds=median),
            spread=timedelta(seconds=MAD_TO_SIGMA * mad),
            stacks=len(values),
            speed=statistics.median(speeds),
        )
