"""What a capture shows about each data logger's settings (pure): the registry entries that
`stackwatch replay --write-registry` writes (docs/loggers.md).

Per MN, from its own frames:

* `system_type`: the HJ 212 ST its data frames carry most (31 flue gas, 32 wastewater);
* `min_interval_min` / `rtd_interval_s`: the regular gap between its 2051 / 2011 DataTimes;
* `interval_label`: whether its own hour records (2061) equal the mean of the minute records
  of the interval that *starts* or that *ends* at their DataTime — decided only where one
  reading agrees clearly more often than the other, else left to the protocol default;
* `pressure_unit`: from the size of its a01013 values (gauge kPa, gauge Pa, or absolute).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.hj212 import DecodedFrame
from stackwatch.intervals import (
    MIN_INTERVALS,
    Cadence,
    IntervalLabel,
    PressureUnit,
    placement,
    snap_minutes,
)

PRESSURE = "a01013"
DATA_CNS = frozenset({"2011", "2051", "2061", "2031"})
AGREE_ABS = 0.5
AGREE_REL = 0.05
"""Agreement of a mean with the logger's own hour: within 0.5 (mg/m³) or 5 %."""
TIGHT_ABS = 0.011
TIGHT_REL = 0.002
"""The same mean to the logger's printing precision (2–3 decimals): for telling labels apart."""
LABELS: tuple[IntervalLabel, IntervalLabel] = ("start", "end")


class LoggerProfile(BaseModel):
    """Settings of one logger as its traffic shows them (None = the capture cannot tell)."""

    model_config = ConfigDict(frozen=True)

    mn: str
    password: str | None = None
    system_type: str | None = None
    version: str | None = None
    min_interval_min: int | None = None
    rtd_interval_s: int | None = None
    interval_label: IntervalLabel | None = None
    pressure_unit: PressureUnit | None = None
    label_votes: dict[str, tuple[int, int]] = Field(
        default_factory=dict,
        description="Per label: hour values equal to the minute mean, and values compared.",
    )


def agrees(mean: float, reported: float) -> bool:
    """Whether a platform mean agrees with the logger's own value."""
    return abs(mean - reported) <= max(AGREE_ABS, AGREE_REL * abs(reported))


def pressure_unit(values: Iterable[float], max_abs_kpa: float = 20.0) -> PressureUnit | None:
    """The unit a01013 values are in, judged by their typical size (None: no values)."""
    found = [v for v in values if v == v]
    if not found:
        return None
    typical = statistics.median(abs(v) for v in found)
    if 80_000 <= typical <= 120_000:
        return "Pa_abs"
    if 85 <= typical <= 110:
        return "kPa_abs"
    return "Pa" if typical > max_abs_kpa else "kPa"


def _same_mean(mean: float, reported: float) -> bool:
    """The logger's hour is the plain mean of its minute records, to its printed precision."""
    return abs(mean - reported) <= max(TIGHT_ABS, TIGHT_REL * abs(reported))


def _label_votes(
    minutes: dict[datetime, dict[str, float]],
    hours: dict[datetime, dict[str, float]],
    interval: timedelta,
) -> dict[str, tuple[int, int]]:
    """Per label: (hour values equal to the mean of its minute records, hour values compared).

    Only hours that the label's minute records fill count (60 / interval of them, one may be
    missing), so a capture's cut-off edges do not vote, and only series that vary inside
    the hour: a constant value agrees under any reading and tells nothing.
    """
    need = max(1, round(timedelta(hours=1) / interval) - 1)
    votes: dict[str, tuple[int, int]] = {}
    for label in LABELS:
        by_hour: dict[datetime, list[dict[str, float]]] = defaultdict(list)
        for stamp, values in minutes.items():
            at = placement(stamp, label)
            by_hour[at.replace(minute=0, second=0, microsecond=0)].append(values)
        agree = compared = 0
        for stamp, reported in hours.items():
            start = placement(stamp, label).replace(minute=0, second=0, microsecond=0)
            records = by_hour.get(start, [])
            for code, value in reported.items():
                series = [r[code] for r in records if code in r]
                if len(series) < need or max(series) == min(series):
                    continue
                compared += 1
                agree += _same_mean(statistics.fmean(series), value)
        votes[label] = (agree, compared)
    return votes


def _decide(votes: dict[str, tuple[int, int]], margin: float) -> IntervalLabel | None:
    """The label whose agreement rate is clearly higher (by `margin`), with ≥ 2 agreements."""
    rates = {label: (a / n if n else 0.0, a) for label, (a, n) in votes.items()}
    best = max(LABELS, key=lambda label: rates[label][0])
    other = "start" if best == "end" else "end"
    if rates[best][1] >= 2 and rates[best][0] >= rates[other][0] + margin:
        return best
    return None


def profile(frames: Iterable[DecodedFrame], label_margin: float = 0.2) -> list[LoggerProfile]:
    """One profile per MN, in order of first appearance."""
    order: dict[str, None] = {}
    st: dict[str, Counter[str]] = defaultdict(Counter)
    versions: dict[str, Counter[str]] = defaultdict(Counter)
    passwords: dict[str, str | None] = {}
    minute_cadence: dict[str, Cadence] = defaultdict(lambda: Cadence(keep=64))
    rt_cadence: dict[str, Cadence] = defaultdict(lambda: Cadence(keep=64, resolution_s=10))
    minutes: dict[str, dict[datetime, dict[str, float]]] = defaultdict(dict)
    hours: dict[str, dict[datetime, dict[str, float]]] = defaultdict(dict)
    pressures: dict[str, list[float]] = defaultdict(list)
    for f in frames:
        if not f.ok or not f.mn or f.cn is None:
            continue
        order.setdefault(f.mn)
        passwords.setdefault(f.mn, f.pw)
        if f.cn not in DATA_CNS or f.data_time is None:
            continue
        if f.st:
            st[f.mn][f.st] += 1
        if f.version:
            versions[f.mn][f.version] += 1
        suffix = "Rtd" if f.cn == "2011" else "Avg"
        values = {c: v[suffix] for c, v in f.values.items() if suffix in v}
        if PRESSURE in values and f.cn in ("2011", "2051"):
            pressures[f.mn].append(values[PRESSURE])
        if f.cn == "2051":
            minute_cadence[f.mn].observe(f.data_time)
            minutes[f.mn][f.data_time] = values
        elif f.cn == "2011":
            rt_cadence[f.mn].observe(f.data_time)
        elif f.cn == "2061":
            hours[f.mn][f.data_time] = values
    out: list[LoggerProfile] = []
    for mn in order:
        gap = minute_cadence[mn].interval_s() if mn in minute_cadence else None
        interval = snap_minutes(gap) if gap else None
        rtd = rt_cadence[mn].interval_s() if mn in rt_cadence else None
        votes: dict[str, tuple[int, int]] = {}
        label: IntervalLabel | None = None
        if interval in MIN_INTERVALS and hours.get(mn) and minutes.get(mn):
            votes = _label_votes(minutes[mn], hours[mn], timedelta(minutes=interval or 1))
            label = _decide(votes, label_margin)
        out.append(
            LoggerProfile(
                mn=mn,
                password=passwords.get(mn),
                system_type=st[mn].most_common(1)[0][0] if st.get(mn) else None,
                version=versions[mn].most_common(1)[0][0] if versions.get(mn) else None,
                min_interval_min=interval,
                rtd_interval_s=rtd if rtd and 1 <= rtd <= 3600 else None,
                interval_label=label,
                pressure_unit=pressure_unit(pressures.get(mn, [])),
                label_votes=votes,
            )
        )
    return out
