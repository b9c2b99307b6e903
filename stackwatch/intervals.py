"""Upload intervals and interval labels of real data loggers (pure; docs/loggers.md).

HJ 212-2017 Table 4: a logger uploads minute data (CN 2051) every `MinInterval` minutes (1, 2,
3, 4, 5, 6, 10, 12, 15, 20 or 30; 10 is the usual setting in the field) and real-time data
(CN 2011) every `RtdInterval` seconds (30–3600). A 2051 record is the mean over its whole
interval, so an hour of 10-minute data is six records that together cover 60 minutes.

Interval labels. HJ 212-2017 App. C stamps 2051/2061/2031 records with the *start* of the
interval (`…084000` with MinInterval 10 covers 08:40–08:50). HJ/T 212-2005 does not say; in a
real 2016 provincial capture about 90 % of the loggers stamp the interval *end* (their hour
record `09:00` equals the mean of their minute records `08:10 … 09:00`). The default therefore
follows the protocol version of the frame (`DEFAULT_LABELS`), and the registry can override it
per stack.

`Cadence` infers an interval from the DataTimes a logger actually sends, for stacks whose
registry entry is silent, and `covered_minutes` measures how much of an hour valid records
cover (the HJ 75 ≥ 45-minute rule).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from stackwatch.beijing_time import CST

IntervalLabel = Literal["start", "end"]
"""Which end of its interval an aggregate record's DataTime names."""

PressureUnit = Literal["kPa", "Pa", "kPa_abs", "Pa_abs"]
"""Unit of a01013 as a logger sends it: gauge kPa (App. B.2), gauge Pa, or absolute."""

MIN_INTERVALS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
"""MinInterval values allowed by HJ 212-2017 Table 4 (minutes)."""

DEFAULT_LABELS: dict[str, IntervalLabel] = {"2005": "end", "2017": "start", "2025": "start"}
"""Label of 2051/2061/2031 DataTimes by protocol version (2005: observed practice, see above)."""

PERIOD_OF_CN: dict[str, timedelta] = {
    "2061": timedelta(hours=1),
    "2031": timedelta(days=1),
}
"""Interval of the fixed-length aggregate uploads."""


def snap_minutes(gap_s: float) -> int | None:
    """The MinInterval a gap between two consecutive minute records stands for, if any."""
    minutes = gap_s / 60.0
    for value in MIN_INTERVALS:
        if abs(minutes - value) <= 0.05 * value:
            return value
    return None


class Cadence:
    """Recent gaps between one logger's consecutive DataTimes of one upload kind.

    Gaps are rounded to `resolution_s` (real-time stamps jitter by a second or two). The
    inferred interval is the most frequent gap among the last `keep` gaps, once it has been
    seen `min_votes` times: a gap left by a lost record (20 min for 10-minute data) does not
    outvote the regular interval. Records not newer than the newest DataTime (re-sends,
    duplicates) are ignored.
    """

    def __init__(self, keep: int = 12, min_votes: int = 3, resolution_s: int = 1) -> None:
        self.keep = keep
        self.min_votes = min_votes
        self.resolution_s = resolution_s
        self.last: datetime | None = None
        self.gaps: list[int] = []

    def observe(self, data_time: datetime) -> None:
        """One record's DataTime (in the order received)."""
        if self.last is not None:
            if data_time <= self.last:
                return
            seconds = (data_time - self.last).total_seconds()
            gap = round(seconds / self.resolution_s) * self.resolution_s
            self.gaps = [*self.gaps, gap][-self.keep :]
        self.last = data_time

    def interval_s(self) -> int | None:
        """The inferred interval in seconds, or None before the second record.

        With fewer than `min_votes` equal gaps, the smallest gap seen so far stands in (a lost
        record only ever makes a gap longer).
        """
        if not self.gaps:
            return None
        gap, votes = Counter(self.gaps).most_common(1)[0]
        return gap if votes >= self.min_votes else min(self.gaps)

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state (the parameters are configuration)."""
        return {"last": self.last.isoformat() if self.last else None, "gaps": list(self.gaps)}

    @classmethod
    def from_state(cls, state: dict[str, Any], resolution_s: int = 1) -> Cadence:
        """Rebuild from `to_state()` output."""
        cadence = cls(resolution_s=resolution_s)
        last = state.get("last")
        cadence.last = datetime.fromisoformat(last) if last else None
        cadence.gaps = [int(g) for g in state.get("gaps", [])]
        return cadence


def snap_stamp(stamp: datetime, length: timedelta) -> datetime:
    """A record's DataTime moved onto its interval grid when it is only a little off.

    Real loggers stamp 2061 hours like `05:00:01` and minutes a second late; the hour they
    mean is plain. Within min(length / 10, 5 min) of a multiple of `length` (counted from
    local midnight) the stamp snaps to it; a logger whose grid is deliberately offset (10-minute
    records at xx:05, xx:15 …) is left alone.
    """
    local = stamp.astimezone(CST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = local - midnight
    nearest = midnight + round(offset / length) * length
    tolerance = min(length / 10, timedelta(minutes=5))
    return nearest if abs(local - nearest) <= tolerance else local


def record_span(
    stamp: datetime, length: timedelta, label: IntervalLabel
) -> tuple[datetime, datetime]:
    """The interval a record stamped `stamp` stands for."""
    return (stamp, stamp + length) if label == "start" else (stamp - length, stamp)


def placement(stamp: datetime, label: IntervalLabel) -> datetime:
    """The instant that decides which hour a record belongs to.

    Start-labelled: the stamp itself (an hour holds stamps in [hh:00, hh+1:00)). End-labelled:
    just before the stamp (an hour holds stamps in (hh:00, hh+1:00]), which is how such loggers
    form their own hour records, also when their stamps are not aligned to the hour.
    """
    return stamp if label == "start" else stamp - timedelta(microseconds=1)


def covered_minutes(
    spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime
) -> float:
    """Minutes of [start, end) covered by the union of `spans` (clipped to the interval)."""
    clipped = sorted(
        (max(a, start), min(b, end)) for a, b in spans if b > start and a < end
    )
    total = timedelta(0)
    cur_a: datetime | None = None
    cur_b: datetime | None = None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_a is not None and cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        elif b > cur_b:
            cur_b = b
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return round(total.total_seconds() / 60.0, 6)
