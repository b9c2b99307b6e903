"""An independent reading of the four shared real hours (../shared/data), for judging the
pipeline by the loggers' own records.

Nothing here uses stackwatch's codec: frames are cut at CRLF, checked with the standard's
bitwise CRC (tests/oracles.py) and split with plain string operations. What it answers:

* the loggers' own hour records (CN 2061, SO2/NOx/dust `-Avg`), with the hour each one
  stands for under a given interval label;
* which hours the capture covers for a logger (its real-time data runs from before the hour's
  start to after its end), and which hour records show a stopped stack (O2 ≥ 19.5 % and no
  flow or velocity);
* each logger's clock against the capture's own timeline, and its longest silence.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from itertools import pairwise

from stackwatch.beijing_time import CST
from tests.oracles import crc_hj212_fast
from tests.shared_data import SHARED

HOURS = sorted((SHARED / "data").glob("hj212-capture-2016-08-24-*.h212"))
"""The four consecutive hours, in order."""
POLLUTANTS = {"01": "a34013", "02": "a21026", "03": "a21002"}
"""HJ/T 212-2005 codes of dust, SO2 and NOx → HJ 212-2017 codes."""
_FRAME = re.compile(rb"##(\d{4})(.*)([0-9A-F]{4})", re.S)


@dataclass(frozen=True)
class Frame:
    """One intact frame: header fields and its CP items (`02-Avg` → `3.5`)."""

    index: int
    st: str
    cn: str
    mn: str
    stamp: datetime | None
    cp: dict[str, str] = field(repr=False)

    def number(self, key: str) -> float | None:
        text = self.cp.get(key)
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None


def _parse(index: int, segment: str) -> Frame | None:
    head, sep, rest = segment.partition("CP=&&")
    if not sep or not rest.endswith("&&"):
        return None
    header = dict(p.split("=", 1) for p in head.split(";") if "=" in p)
    items: dict[str, str] = {}
    for part in re.split(r"[;,]", rest[:-2]):
        if "=" in part:
            key, value = part.split("=", 1)
            items[key] = value
    stamp = None
    digits = items.get("DataTime", "")[:14]
    if len(digits) == 14 and digits.isdigit():
        try:
            stamp = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=CST)
        except ValueError:
            stamp = None
    if not {"ST", "CN", "MN"} <= header.keys():
        return None
    return Frame(index, header["ST"], header["CN"], header["MN"], stamp, items)


@cache
def frames() -> tuple[Frame, ...]:
    """Every intact frame of the four hours, in file order."""
    out: list[Frame] = []
    data = b"".join(p.read_bytes() for p in HOURS)
    for record in data.split(b"\r\n"):
        m = _FRAME.fullmatch(record)
        if m is None or len(m.group(2)) != int(m.group(1)):
            continue
        if crc_hj212_fast(m.group(2)) != int(m.group(3), 16):
            continue
        frame = _parse(len(out), m.group(2).decode("utf-8", errors="replace"))
        if frame is not None:
            out.append(frame)
    return tuple(out)


def flue_gas_loggers_with_minutes_and_hours() -> set[str]:
    """MNs that upload flue-gas (ST 31) minute (2051) and hour (2061) records."""
    kinds: dict[str, set[str]] = defaultdict(set)
    for f in frames():
        if f.st == "31":
            kinds[f.mn].add(f.cn)
    return {mn for mn, cns in kinds.items() if {"2051", "2061"} <= cns}


def _stopped(f: Frame) -> bool:
    o2 = f.number("S01-Avg")
    flows = [v for v in (f.number("B02-Avg"), f.number("S02-Avg")) if v is not None]
    return o2 is not None and o2 >= 19.5 and bool(flows) and all(v <= 1.0 for v in flows)


@dataclass(frozen=True)
class LoggerHour:
    mn: str
    start: datetime
    values: dict[str, float]
    stopped: bool


def logger_hours(labels: Mapping[str, str]) -> list[LoggerHour]:
    """The loggers' own hours: a 2061 stamped H (to the nearest hour) is the hour ending at H
    for an end-labelled logger, the hour starting at H otherwise."""
    out: list[LoggerHour] = []
    for f in frames():
        if f.st != "31" or f.cn != "2061" or f.stamp is None or f.stamp.year != 2016:
            continue
        stamp = (f.stamp + timedelta(minutes=30)).replace(minute=0, second=0)
        start = stamp - timedelta(hours=1) if labels.get(f.mn, "end") == "end" else stamp
        values = {
            code: v
            for old, code in POLLUTANTS.items()
            if (v := f.number(f"{old}-Avg")) is not None
        }
        out.append(LoggerHour(f.mn, start, values, _stopped(f)))
    return out


@cache
def realtime_span() -> dict[str, tuple[datetime, datetime]]:
    """First and last real-time (2011) DataTime of each flue-gas logger (year 2016)."""
    span: dict[str, tuple[datetime, datetime]] = {}
    for f in frames():
        if f.st == "31" and f.cn == "2011" and f.stamp is not None and f.stamp.year == 2016:
            lo, hi = span.get(f.mn, (f.stamp, f.stamp))
            span[f.mn] = (min(lo, f.stamp), max(hi, f.stamp))
    return span


def covered(mn: str, start: datetime) -> bool:
    """Whether the capture holds the logger's data from before the hour to after it."""
    span = realtime_span().get(mn)
    return span is not None and span[0] <= start and span[1] >= start + timedelta(hours=1)


@dataclass(frozen=True)
class Agreement:
    loggers: int
    agreeing: int
    per_logger: dict[str, tuple[int, int]]

    @property
    def share(self) -> float:
        return self.agreeing / self.loggers


def agreement(
    platform: Mapping[tuple[str, str, datetime], tuple[bool, float | None]],
    labels: Mapping[str, str],
    stack_of: Mapping[str, str],
) -> Agreement:
    """Loggers whose platform hours of SO2, NOx and dust are valid and within 5 % or 0.5 mg/m³
    of their own 2061 in ≥ 90 % of their hours (covered by the capture, stack not stopped).

    `platform`: (stack_id, factor, hour start) → (valid, mean); `stack_of`: MN → stack_id.
    """
    wanted = flue_gas_loggers_with_minutes_and_hours()
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for hour in logger_hours(labels):
        if hour.mn not in wanted or hour.stopped or not covered(hour.mn, hour.start):
            continue
        for code, reported in hour.values.items():
            counts = tally[hour.mn]
            counts[1] += 1
            valid, mean = platform.get((stack_of[hour.mn], code, hour.start), (False, None))
            if valid and mean is not None and abs(mean - reported) <= max(
                0.5, 0.05 * abs(reported)
            ):
                counts[0] += 1
    per_logger = {mn: (ok, n) for mn, (ok, n) in tally.items() if n}
    agreeing = sum(1 for ok, n in per_logger.values() if ok >= 0.9 * n)
    return Agreement(len(per_logger), agreeing, per_logger)


@cache
def clock_offsets() -> dict[str, float]:
    """Each logger's median real-time DataTime minus the capture's timeline, in minutes.

    The timeline at a frame is the median DataTime of the 101 real-time frames around it in
    the file (the file is in receipt order; most loggers' clocks are right).
    """
    rt = [(f.index, f.mn, f.stamp) for f in frames() if f.cn == "2011" and f.stamp is not None]
    plausible = [s for _, _, s in rt if s.year == 2016]
    offsets: dict[str, list[float]] = defaultdict(list)
    for i, (_, mn, stamp) in enumerate(rt):
        around = sorted(s for _, _, s in rt[max(0, i - 50) : i + 51] if s.year == 2016)
        if not around or not plausible:
            continue
        timeline = around[len(around) // 2]
        offsets[mn].append((stamp - timeline).total_seconds() / 60)
    return {mn: statistics.median(v) for mn, v in offsets.items()}


@cache
def timeline_end() -> datetime:
    """The capture's timeline at its last frame (median of the last 101 real-time DataTimes)."""
    rt = [f.stamp for f in frames() if f.cn == "2011" and f.stamp and f.stamp.year == 2016]
    tail = sorted(rt[-101:])
    return tail[len(tail) // 2]


def longest_silence(mn: str) -> timedelta:
    """The longest time one logger sent nothing dated (its DataTimes, but those of hour and
    day records, which name a period boundary, not a moment it was heard), up to the
    capture's end read on the logger's own clock (the timeline's end + its clock offset)."""
    stamps = sorted(
        {
            f.stamp
            for f in frames()
            if f.mn == mn and f.cn not in ("2061", "2031") and f.stamp and f.stamp.year == 2016
        }
    )
    if not stamps:
        return timedelta(0)
    end = timeline_end() + timedelta(minutes=clock_offsets().get(mn, 0.0))
    gaps = [b - a for a, b in pairwise(stamps)] + [end - stamps[-1]]
    return max(gaps)


def stopped_loggers() -> set[str]:
    """Flue-gas loggers whose every minute record shows a stopped stack."""
    states: dict[str, set[bool]] = defaultdict(set)
    for f in frames():
        if f.st == "31" and f.cn == "2051":
            states[f.mn].add(_stopped(f))
    return {mn for mn, s in states.items() if s == {True}}


def wastewater_loggers() -> set[str]:
    """MNs whose data frames are all ST 32."""
    systems: dict[str, set[str]] = defaultdict(set)
    for f in frames():
        if f.cn in ("2011", "2051", "2061"):
            systems[f.mn].add(f.st)
    return {mn for mn, s in systems.items() if s == {"32"}}
