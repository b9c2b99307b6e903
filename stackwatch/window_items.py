"""Typed items of the processor's windows, and their JSON form in window state.

A window stores JSON (it lives in a changelogged table); these frozen dataclasses are the only
code that writes or reads that JSON, and `unpack` the only place that turns a closed window's
items back into them, so the processor never handles untyped dicts.

The JSON shapes are what saved states hold (a worker restarted on a newer version reads the
changelog written by the older one): change them only together with a reader of the old shape.

* real-time window: `RealtimeSample` — `{code: [value, flag, zs], …, "_flow": x, "_stop": true}`
  (`_flow` only with a flow, `_stop` only when stopped);
* hour window: `MinuteItem` — `{"src", "t", "lbl", "len", "f": {code: [v, flag, zs]}, "flow",
  "stop"}`, and at most one `LoggerRecordItem` (key `logger`);
* day window: `HourItem` (key `<hour ISO>|<factor>`) — `{"v", "flag", "ok", "zs", "kg", "src",
  "stop"}`, and at most one `LoggerRecordItem`;
* `LoggerRecordItem` — `{"logger": {code: [v, flag, zs]}, "t", "stop"}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from stackwatch.intervals import IntervalLabel, placement, record_span
from stackwatch.models import FactorReading
from stackwatch.windows import WindowItem

Source = Literal["logger", "platform"]
"""Who produced a value: the data logger (its 2051/2061/2031 record taken as is) or the
platform (computed here: hours and days from minute records, minutes from real-time data)."""

FactorValue = tuple[float | None, str, float | None]
"""(measured value, data flag, value at the reference O2) of one factor."""

WindowKind = Literal["rt", "hour", "day"]
"""Which of the processor's windows: real-time samples, hours (minutes), days (hours)."""

LOGGER_RECORD_KEY = "logger"
"""Window item key of the logger's own hour (2061) or day (2031) record."""

_FLOW_KEY = "_flow"
_STOP_KEY = "_stop"


def _factors_json(factors: dict[str, FactorValue]) -> dict[str, list[Any]]:
    return {code: list(v) for code, v in sorted(factors.items())}


def _factors(data: dict[str, Any]) -> dict[str, FactorValue]:
    return {code: (v[0], str(v[1]), v[2]) for code, v in data.items()}


def _with_flags(data: dict[str, Any], flow: float | None, stopped: bool) -> dict[str, Any]:
    if flow is not None:
        data[_FLOW_KEY] = flow
    if stopped:
        data[_STOP_KEY] = True
    return data


@dataclass(frozen=True, slots=True)
class RealtimeSample:
    """One real-time (2011) sample in a minute window, for a minute derived here."""

    factors: dict[str, FactorValue]
    flow: float | None = None
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the window (factors in the reading's order)."""
        data: dict[str, Any] = {code: list(v) for code, v in self.factors.items()}
        return _with_flags(data, self.flow, self.stopped)

    @staticmethod
    def encode(
        values: Mapping[str, FactorReading], flow: float | None, stopped: bool
    ) -> dict[str, Any]:
        """The `to_json()` of a reading's sample, without building the sample first (every
        real-time record passes here)."""
        data: dict[str, Any] = {code: [f.value, f.flag, f.zs] for code, f in values.items()}
        return _with_flags(data, flow, stopped)

    @classmethod
    def from_json(cls, data: Any) -> RealtimeSample:
        """Read back `to_json()` output."""
        d = cast(dict[str, Any], data)
        flow = d.get(_FLOW_KEY)
        return cls(
            factors={
                code: (v[0], str(v[1]), v[2]) for code, v in d.items() if isinstance(v, list)
            },
            flow=None if flow is None else float(flow),
            stopped=bool(d.get(_STOP_KEY)),
        )


@dataclass(frozen=True, slots=True)
class MinuteItem:
    """One minute-data record in an hour window: a logger 2051 or a platform-derived minute."""

    source: Source
    stamp: datetime
    label: IntervalLabel
    length_s: int | None
    factors: dict[str, FactorValue]
    flow: float | None = None
    stopped: bool = False

    def span(self, default_length_s: int) -> tuple[datetime, datetime]:
        """The interval this record stands for (its own length, or the stack's)."""
        length = timedelta(seconds=self.length_s or default_length_s)
        return record_span(self.stamp, length, self.label)

    @property
    def placement(self) -> datetime:
        """The instant deciding its hour (see `stackwatch.intervals.placement`)."""
        return placement(self.stamp, self.label)

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the window."""
        return {
            "src": self.source,
            "t": self.stamp.isoformat(),
            "lbl": self.label,
            "len": self.length_s,
            "f": _factors_json(self.factors),
            "flow": self.flow,
            "stop": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Any) -> MinuteItem:
        """Read back `to_json()` output."""
        d = cast(dict[str, Any], data)
        return cls(
            source=cast(Source, d["src"]),
            stamp=datetime.fromisoformat(d["t"]),
            label=cast(IntervalLabel, d["lbl"]),
            length_s=d.get("len"),
            factors=_factors(d["f"]),
            flow=d.get("flow"),
            stopped=bool(d.get("stop", False)),
        )


@dataclass(frozen=True, slots=True)
class LoggerRecordItem:
    """The logger's own hour (2061) or day (2031) record: compared with the platform's mean,
    and used as the period's value when the platform has nothing to compute it from."""

    factors: dict[str, FactorValue]
    stamp: datetime
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the window."""
        return {
            LOGGER_RECORD_KEY: _factors_json(self.factors),
            "t": self.stamp.isoformat(),
            "stop": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Any) -> LoggerRecordItem:
        """Read back `to_json()` output."""
        d = cast(dict[str, Any], data)
        return cls(
            factors=_factors(d[LOGGER_RECORD_KEY]),
            stamp=datetime.fromisoformat(d["t"]),
            stopped=bool(d.get("stop", False)),
        )

    def values(self) -> dict[str, float]:
        """The factors that carry a value."""
        return {code: v for code, (v, _, _) in self.factors.items() if v is not None}


@dataclass(frozen=True, slots=True)
class HourItem:
    """One factor's closed hour inside a day window."""

    value: float | None
    flag: str
    valid: bool
    zs: float | None = None
    kg: float | None = None
    source: Source = "platform"
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the window."""
        return {
            "v": self.value,
            "flag": self.flag,
            "ok": self.valid,
            "zs": self.zs,
            "kg": self.kg,
            "src": self.source,
            "stop": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Any) -> HourItem:
        """Read back `to_json()` output (older states may lack `flag`, `ok`, `src`, `stop`)."""
        d = cast(dict[str, Any], data)
        return cls(
            value=d.get("v"),
            flag=str(d.get("flag", "N")),
            valid=bool(d.get("ok", d.get("v") is not None)),
            zs=d.get("zs"),
            kg=d.get("kg"),
            source=cast(Source, d.get("src", "platform")),
            stopped=bool(d.get("stop", False)),
        )


StoredItem = MinuteItem | LoggerRecordItem | HourItem
"""What the processor puts in an hour or a day window."""


def hour_item_key(hour_start: str, code: str) -> str:
    """Day-window key of one factor's hour (`hour_start`: the hour's ISO start)."""
    return f"{hour_start}|{code}"


@dataclass(slots=True)
class WindowContent:
    """A closed window's items, typed and split by kind (see `unpack`)."""

    samples: list[tuple[datetime, RealtimeSample]] = field(default_factory=list)
    """Real-time window: each sample with its DataTime."""
    minutes: list[MinuteItem] = field(default_factory=list)
    """Hour window: the minute records, oldest first."""
    hours: dict[str, list[tuple[WindowItem, HourItem]]] = field(default_factory=dict)
    """Day window: each factor's hours, with their window entries."""
    logger: LoggerRecordItem | None = None
    """Hour or day window: the logger's own record of the period."""


def unpack(kind: WindowKind, items: Iterable[WindowItem]) -> WindowContent:
    """The typed content of a window of `kind` (the one place window JSON is read back)."""
    content = WindowContent()
    for entry in items:
        data = entry.item
        if kind == "rt":
            content.samples.append((entry.event_time, RealtimeSample.from_json(data)))
        elif isinstance(data, dict) and LOGGER_RECORD_KEY in data:
            content.logger = LoggerRecordItem.from_json(data)
        elif kind == "hour":
            content.minutes.append(MinuteItem.from_json(data))
        else:
            code = entry.key.partition("|")[2]
            content.hours.setdefault(code, []).append((entry, HourItem.from_json(data)))
    return content
