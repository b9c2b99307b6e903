"""Typed items of the processor's hour and day windows, and their JSON form in window state.

A window stores JSON (it lives in a changelogged table); these dataclasses are the only code
that writes or reads that JSON, so the processor never unpacks untyped dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from stackwatch.intervals import IntervalLabel, placement, record_span

Source = Literal["logger", "platform"]
"""Who produced a value: the data logger (its 2051/2061/2031 record taken as is) or the
platform (computed here: hours and days from minute records, minutes from real-time data)."""

FactorValue = tuple[float | None, str, float | None]
"""(measured value, data flag, value at the reference O2) of one factor."""

LOGGER_RECORD_KEY = "logger"
"""Window item key of the logger's own hour (2061) or day (2031) record."""


@dataclass(frozen=True)
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
            "f": {code: list(v) for code, v in sorted(self.factors.items())},
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
            factors={code: (v[0], str(v[1]), v[2]) for code, v in d["f"].items()},
            flow=d.get("flow"),
            stopped=bool(d.get("stop", False)),
        )


@dataclass(frozen=True)
class LoggerRecordItem:
    """The logger's own hour (2061) or day (2031) record: compared with the platform's mean,
    and used as the period's value when the platform has nothing to compute it from."""

    factors: dict[str, FactorValue]
    stamp: datetime
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the window."""
        return {
            "logger": {code: list(v) for code, v in sorted(self.factors.items())},
            "t": self.stamp.isoformat(),
            "stop": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Any) -> LoggerRecordItem:
        """Read back `to_json()` output."""
        d = cast(dict[str, Any], data)
        return cls(
            factors={code: (v[0], str(v[1]), v[2]) for code, v in d["logger"].items()},
            stamp=datetime.fromisoformat(d["t"]),
            stopped=bool(d.get("stop", False)),
        )

    def values(self) -> dict[str, float]:
        """The factors that carry a value."""
        return {code: v for code, (v, _, _) in self.factors.items() if v is not None}


@dataclass(frozen=True)
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
        """Read back `to_json()` output."""
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


def is_logger_record(item: Any) -> bool:
    """Whether a stored window item is a `LoggerRecordItem`."""
    return isinstance(item, dict) and "logger" in item


@dataclass
class HourContent:
    """An hour window's items, split by kind."""

    minutes: list[MinuteItem] = field(default_factory=list)
    logger: LoggerRecordItem | None = None
