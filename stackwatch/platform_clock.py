"""What time the traffic says it is: the reference a logger's clock is judged against (pure).

A logger's clock is wrong when its DataTime disagrees with *the platform's* time. Live, that is
the receipt time. When historical traffic is replayed, every frame arrives years after its
DataTime, and receipt time would call every logger skewed. So the reference is the consensus
of the loggers themselves: the median, over the most recent frame of each recent stack, of
`receipt − event time`. Live it is ≈ 0 and the rule reduces to "DataTime vs receipt"; in a
replay at any speed it is the replay's offset, and only a logger that disagrees with its peers
(the one that sends the year 2000) stands out.

The tolerance widens with the spread of the peers (a scaled median absolute deviation): in a
replay sent as fast as possible, loggers are hours apart from each other on the wire, and
only an error far beyond that spread is a clock error. With fewer than `min_stacks` peers
there is no consensus yet and no clock is judged (the first frames of a replay would all look
years late against receipt time).
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from datetime import timedelta

from pydantic import BaseModel, ConfigDict

MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation (normal distribution)."""


class ClockReference(BaseModel):
    """The platform's clock offset and how much the loggers disagree about it."""

    model_config = ConfigDict(frozen=True)

    offset: timedelta = timedelta(0)
    spread: timedelta = timedelta(0)
    stacks: int = 0


RECEIPT_TIME = ClockReference()
"""Receipt time itself as the reference (a platform whose own clock is the truth)."""


class PlatformClock:
    """Recent `receipt − event time` offsets of the stacks one worker serves."""

    def __init__(self, window: int = 256, min_stacks: int = 5) -> None:
        self.window = window
        self.min_stacks = min_stacks
        self._offsets: OrderedDict[str, float] = OrderedDict()

    def observe(self, stack_id: str, offset: timedelta) -> None:
        """The newest offset of one stack (its realtime or minute data, never re-sends)."""
        self._offsets.pop(stack_id, None)
        self._offsets[stack_id] = offset.total_seconds()
        while len(self._offsets) > self.window:
            self._offsets.popitem(last=False)

    def reference(self) -> ClockReference | None:
        """The consensus offset and spread, or None with too few peers to judge by."""
        values = list(self._offsets.values())
        if len(values) < self.min_stacks:
            return None
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        return ClockReference(
            offset=timedelta(seconds=median),
            spread=timedelta(seconds=MAD_TO_SIGMA * mad),
            stacks=len(values),
        )
