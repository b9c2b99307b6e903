"""Scriptable fault and event injection, per stack and simulated time.

Two layers, as in the field:

* analyser/process events change the *readings* and their HJ 212 data flags (HJ 212-2017
  Table 8): exceedance episodes, start-up/shut-down (F), calibration (C), maintenance (M),
  analyser fault (D), over-range (T), flat-line (恒值), zero and negative values;
* logger/transport events change the *frames*: communication loss (no frames), clock skew
  (DataTime offset), duplicated, out-of-order and corrupted (bad CRC) frames.

Times are offsets from the scenario start ("90s", "20m", "1h30m", "1d"); `repeat` makes an
event periodic (e.g. the daily zero/span calibration).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from simulators.plants import O2, POLLUTANTS, SO2, Reading

_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")


def parse_duration(value: object) -> timedelta:
    """'90s', '20m', '1h30m', '1d', '-5m', a number of seconds or a timedelta → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip().replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    pos, total = 0, 0.0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. '90s', '20m', '1h30m', '1d')")
    return timedelta(seconds=sign * total)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

ReadingEventKind = Literal[
    "exceedance", "startup", "shutdown", "calibration", "maintenance", "fault",
    "over_range", "flatline", "zero", "negative",
]
FrameEventKind = Literal["comm_loss", "clock_skew", "duplicate", "out_of_order", "corrupt"]
READING_KINDS: frozenset[str] = frozenset(ReadingEventKind.__args__)  # type: ignore[attr-defined]
FRAME_KINDS: frozenset[str] = frozenset(FrameEventKind.__args__)  # type: ignore[attr-defined]

# Flag precedence when several events overlap: the most "invalidating" wins.
_FLAG_RANK = {"N": 0, "T": 1, "C": 2, "D": 3, "M": 4, "F": 5}


class Event(BaseModel):
    """One injected event. `stack` is a stack_id or '*' for every stack of the scenario."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[ReadingEventKind, FrameEventKind]
    stack: str = "*"
    start: Duration = Field(description="Offset from the scenario start.")
    duration: Duration
    repeat: Duration | None = Field(default=None, description="Period of a recurring event.")
    factor: str | None = Field(
        default=None,
        description="Factor code affected (exceedance default a21026; others default: all "
        "pollutants).",
    )
    peak: float | None = Field(
        default=None, gt=0, description="Exceedance: peak reference-O2 concentration, mg/m³."
    )
    ramp: Duration = Field(
        default=timedelta(minutes=5), description="Exceedance/start-up/shut-down ramp time."
    )
    range_max: float = Field(default=200.0, gt=0, description="Over-range: analyser full scale.")
    skew: Duration = Field(default=timedelta(0), description="Clock skew: DataTime offset.")
    every: int = Field(default=1, ge=1, description="corrupt/duplicate: every n-th frame.")
    backfill: bool = Field(
        default=False,
        description="comm_loss: the logger keeps the frames and re-sends them (补传) when the "
        "link returns, instead of losing them.",
    )

    @model_validator(mode="after")
    def _check(self) -> Event:
        if self.duration <= timedelta(0):
            raise ValueError(f"{self.kind}: duration must be positive")
        if self.start < timedelta(0):
            raise ValueError(f"{self.kind}: start must be >= 0 (offset from scenario start)")
        if self.repeat is not None and self.repeat < self.duration:
            raise ValueError(f"{self.kind}: repeat must be >= duration")
        if self.kind == "exceedance" and self.peak is None:
            raise ValueError("exceedance: 'peak' (mg/m³) is required")
        if self.kind == "clock_skew" and self.skew == timedelta(0):
            raise ValueError("clock_skew: 'skew' must be non-zero, e.g. '-3m' or '10m'")
        if self.ramp < timedelta(0):
            raise ValueError(f"{self.kind}: ramp must be >= 0")
        return self

    def applies_to(self, stack_id: str) -> bool:
        """Whether this event targets the stack."""
        return self.stack in ("*", stack_id)

    def window(self, origin: datetime, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence [begin, end) containing `at`, or None if the event is not active."""
        offset = at - origin
        if offset < self.start:
            return None
        since = offset - self.start
        if self.repeat is not None:
            since = since % self.repeat
        if since >= self.duration:
            return None
        begin = at - since
        return begin, begin + self.duration

    def targets(self, present: tuple[str, ...] | list[str]) -> list[str]:
        """Pollutant codes affected among those the stack reports."""
        if self.factor is not None:
            return [self.factor] if self.factor in present else []
        if self.kind == "exceedance":
            return [SO2] if SO2 in present else []
        return [c for c in present if c in POLLUTANTS]


def _worse(current: str, new: str) -> str:
    return new if _FLAG_RANK.get(new, 0) > _FLAG_RANK.get(current, 0) else current


def _ramp_fraction(at: datetime, begin: datetime, end: datetime, ramp: timedelta) -> float:
    """0→1 over `ramp` after `begin`, 1 in the plateau, 1→0 over `ramp` before `end`."""
    if ramp <= timedelta(0):
        return 1.0
    up = (at - begin) / ramp
    down = (end - at) / ramp
    return max(0.0, min(1.0, up, down))


class ReadingEvents:
    """Applies the reading-layer events of one stack to its analyser readings, in time order.

    Stateful only for the flat-line (恒值) event, which freezes the last value seen before the
    event began.
    """

    def __init__(self, events: list[Event], origin: datetime, ref_o2: float | None) -> None:
        self.events = [e for e in events if e.kind in READING_KINDS]
        self.origin = origin
        self.ref_o2 = ref_o2
        self._last: dict[str, float] = {}
        self._frozen: dict[tuple[int, datetime], dict[str, float]] = {}

    def apply(self, reading: Reading) -> Reading:
        """Return the reading as the logger sees it (values and flags changed by events)."""
        values, flags = dict(reading.values), dict(reading.flags)
        present = list(values)
        for index, event in enumerate(self.events):
            win = event.window(self.origin, reading.at)
            if win is None:
                continue
            begin, end = win
            targets = event.targets(present)
            kind = event.kind
            if kind == "exceedance":
                frac = _ramp_fraction(reading.at, begin, end, event.ramp)
                assert event.peak is not None
                for code in targets:
                    peak = event.peak
                    if self.ref_o2 is not None and O2 in values:
                        # The peak is a reference-O2 value; the analyser measures the diluted one.
                        peak = peak * (21.0 - min(values[O2], 20.9)) / (21.0 - self.ref_o2)
                    values[code] = round(values[code] + (peak - values[code]) * frac, 3)
            elif kind in ("startup", "shutdown"):
                # Process not in normal operation: air-purged flue, O2 near 21 %, flag F.
                # startup: fully off at `begin`, linearly back to normal at `end`;
                # shutdown: ramps down over `ramp`, then stays off until `end`.
                if kind == "startup":
                    frac = 1.0 - (reading.at - begin) / (end - begin)
                elif event.ramp > timedelta(0):
                    frac = min(1.0, (reading.at - begin) / event.ramp)
                else:
                    frac = 1.0
                for code in present:
                    if code == O2:
                        values[code] = round(values[code] + (20.8 - values[code]) * frac, 2)
                    elif code in POLLUTANTS or code in ("a00000", "a01011"):
                        values[code] = round(values[code] * (1.0 - 0.9 * frac), 3)
                    flags[code] = _worse(flags.get(code, "N"), "F")
            elif kind == "calibration":
                # Daily zero/span check: first half zero gas, second half span gas (80 % FS).
                half = begin + (end - begin) / 2
                for code in targets:
                    values[code] = 0.0 if reading.at < half else round(0.8 * event.range_max, 3)
                    flags[code] = _worse(flags.get(code, "N"), "C")
            elif kind == "maintenance":
                for code in present:
                    flags[code] = _worse(flags.get(code, "N"), "M")
            elif kind == "fault":
                for code in targets:
                    values[code] = 0.0
                    flags[code] = _worse(flags.get(code, "N"), "D")
            elif kind == "over_range":
                for code in targets:
                    values[code] = event.range_max
                    flags[code] = _worse(flags.get(code, "N"), "T")
            elif kind == "flatline":
                key = (index, begin)
                frozen = self._frozen.setdefault(
                    key, {c: self._last.get(c, values[c]) for c in targets}
                )
                for code in targets:
                    values[code] = frozen[code]
            elif kind == "zero":
                for code in targets:
                    values[code] = 0.0
            elif kind == "negative":
                for code in targets:
                    values[code] = -round(abs(values[code]) * 0.2 + 0.5, 3)
        # Drop the frozen values of finished occurrences (bounded memory on long runs).
        if len(self._frozen) > 16:
            self._frozen = dict(list(self._frozen.items())[-16:])
        self._last.update(reading.values)
        return Reading(at=reading.at, values=values, flags=flags)


def frame_events(events: list[Event], stack_id: str) -> list[Event]:
    """The transport-layer events of one stack."""
    return [e for e in events if e.kind in FRAME_KINDS and e.applies_to(stack_id)]
