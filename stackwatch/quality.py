"""Data-quality detectors: pure state machines over explicit timestamps.

The alarm vocabulary of provincial platforms (docs/alarms.md#platform-vocabulary): 数采仪离线
(logger offline), 恒值 (flat-line), 零值 (zero), 负值 (negative), 超量程 (over range), plus clock
skew and the cross-checks of the logger's own hour/Zs values against the pipeline's. Thresholds are
platform conventions, not standard, so every one is configuration (:class:`QualityConfig`)
with the documented default. Each detector emits a :class:`~stackwatch.alerts.Condition` only
when its state changes; the :class:`~stackwatch.alerts.AlertBook` turns them into alerts.

Values whose HJ 212 data flag is not a valid one (HJ 212-2017 Table 8: only N and S are valid)
are ignored by the value detectors (flat-line, zero, negative): a zero/span gas during
calibration (C) is constant by design, and a faulty instrument (D) is already flagged. The
over-range detector reads the flag itself (T = above the measurement upper limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stackwatch.alerts import Condition
from stackwatch.compliance import Evidence, exact
from stackwatch.models import Rule
from stackwatch.platform_clock import RECEIPT_TIME, ClockReference

__all__ = [
    "DEFAULT_CONCENTRATION_FACTORS",
    "ClockSkewDetector",
    "Condition",
    "FlatlineDetector",
    "NegativeDetector",
    "OfflineDetector",
    "OverRangeDetector",
    "QualityConfig",
    "StackQuality",
    "ZeroDetector",
    "logger_hour_mismatch",
    "zs_mismatch",
]

#: HJ 212-2017 flue-gas concentration codes (App. B.2; docs/hj212.md#factor-codes). Flow,
#: temperature,
#: pressure, humidity and O2 are not concentrations: negative pressure is normal, for example.
DEFAULT_CONCENTRATION_FACTORS: frozenset[str] = frozenset(
    {
        "a34013",  # particulate
        "a21026",  # SO2
        "a21002",  # NOx
        "a21003",  # NO
        "a21004",  # NO2
        "a21005",  # CO
        "a21028",  # H2S
        "a21018",  # fluoride
        "a21017",  # cyanide
        "a21024",  # HCl
        "a34038",  # asphalt fume
        "a21001",  # NH3
        "a21022",  # Cl2
        "a05001",  # CO2
        "a24088",  # NMHC
        "a24087",  # hydrocarbons
    }
)


class QualityConfig(BaseModel):
    """Detector thresholds. Defaults are a proposal, not a standard.

    docs/alarms.md#default-thresholds
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    upload_interval: timedelta = Field(
        default=timedelta(seconds=30),
        gt=timedelta(0),
        description="Expected interval between frames (HJ 212 RtdInterval, 30 s default).",
    )
    offline_missed_intervals: int = Field(
        default=2,
        ge=1,
        description="Offline after this many intervals without a frame "
        "(2×; docs/alarms.md#default-thresholds).",
    )
    minute_interval: timedelta = Field(
        default=timedelta(minutes=1), gt=timedelta(0), description="Minute-data interval."
    )
    flatline_window: timedelta = Field(
        default=timedelta(minutes=60),
        gt=timedelta(0),
        description="Identical values for this long → 恒值 (ConstantAlarmDuration).",
    )
    zero_window: timedelta = Field(
        default=timedelta(minutes=60),
        gt=timedelta(0),
        description="Value 0 for this long → 零值 (ZeroAlarmDuration).",
    )
    run_max_gap: timedelta = Field(
        default=timedelta(minutes=5),
        gt=timedelta(0),
        description="A gap longer than this between minutes restarts a flat-line/zero run.",
    )
    negative_tolerance: float = Field(
        default=0.0, ge=0, description="Values below −tolerance are 负值 (analyser noise)."
    )
    ranges: dict[str, float] = Field(
        default_factory=dict, description="Instrument upper range per factor code (超量程)."
    )
    clock_skew_tolerance: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="A logger clock off the platform's time by more than this is skewed.",
    )
    clock_skew_confirm_frames: int = Field(
        default=3,
        ge=1,
        description="Frames in a row that must show a skewed (or recovered) clock.",
    )
    clock_skew_fast_input: float = Field(
        default=1.5,
        gt=1,
        description="Input running this many times faster than real time (a replay) …",
    )
    clock_skew_fast_tolerance: timedelta = Field(
        default=timedelta(days=1),
        ge=timedelta(0),
        description="… only judges clocks off by more than this (receipt order of an "
        "accelerated replay says nothing finer).",
    )
    clock_skew_spread_factor: float = Field(
        default=5.0,
        ge=0,
        description="…or by more than this many spreads (scaled MAD) of its peers' offsets, "
        "whichever is larger (replays sent as fast as possible scatter the peers).",
    )
    valid_flags: frozenset[str] = Field(
        default=frozenset({"N", "S"}), description="Flags whose values are valid (Table 8)."
    )
    concentration_factors: frozenset[str] = Field(
        default=DEFAULT_CONCENTRATION_FACTORS,
        description="Factors checked for flat-line, zero and negative values.",
    )
    mismatch_abs_tol: float = Field(default=0.5, ge=0, description="mg/m³, logger vs computed.")
    mismatch_rel_tol: float = Field(default=0.05, ge=0, description="Share of computed value.")

    @property
    def offline_timeout(self) -> timedelta:
        """No frame for this long → offline."""
        return self.upload_interval * self.offline_missed_intervals


def _aware(ts: datetime, what: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} {ts.isoformat()} has no timezone")


def _finite(value: float | None, what: str) -> None:
    if value is not None and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError(f"{what} {value!r} is not a finite number")


class OfflineDetector(BaseModel):
    """数采仪离线: no frame for ``offline_timeout``, evaluated by a timer calling :meth:`check`.

    Detection never waits for the next frame (which may never come). Before the first frame the
    stack is watched from the first ``check`` (or ``watch_since``), so a logger that never
    connects is reported too.
    """

    stack_id: str
    last_frame_at: AwareDatetime | None = None
    watch_since: AwareDatetime | None = None
    active: bool = False

    def frame(
        self, received_at: datetime, cfg: QualityConfig, timeout: timedelta | None = None
    ) -> list[Condition]:
        """A frame arrived (any CN); ends an offline episode."""
        _aware(received_at, "receipt time")
        if self.last_frame_at is not None and received_at <= self.last_frame_at:
            return []
        previous = self.last_frame_at or self.watch_since
        self.last_frame_at = received_at
        if not self.active:
            return []
        self.active = False
        gap = (received_at - previous).total_seconds() if previous else None
        return [
            Condition(
                stack_id=self.stack_id,
                rule=Rule.OFFLINE,
                active=False,
                at=received_at,
                value=gap,
                evidence={
                    "gap_s": gap,
                    "timeout_s": (timeout or cfg.offline_timeout).total_seconds(),
                },
            )
        ]

    def check(
        self, now: datetime, cfg: QualityConfig, timeout: timedelta | None = None
    ) -> list[Condition]:
        """Timer tick: offline once ``now − last frame ≥ timeout`` (default: the config's;
        the stream processor passes one scaled to the logger's own upload interval)."""
        _aware(now, "check time")
        timeout = timeout or cfg.offline_timeout
        baseline = self.last_frame_at or self.watch_since
        if baseline is None:
            self.watch_since = now
            return []
        gap = now - baseline
        if self.active or gap < timeout:
            return []
        self.active = True
        return [
            Condition(
                stack_id=self.stack_id,
                rule=Rule.OFFLINE,
                active=True,
                at=now,
                value=gap.total_seconds(),
                evidence={
                    "last_frame_at": None
                    if self.last_frame_at is None
                    else str(self.last_frame_at),
                    "gap_s": gap.total_seconds(),
                    "timeout_s": timeout.total_seconds(),
                },
            )
        ]


class _RunDetector(BaseModel):
    """A run of matching minute values; active once the run has lasted the window."""

    stack_id: str
    factor: str
    active: bool = False
    run_value: float | None = None
    run_start: AwareDatetime | None = None
    run_last: AwareDatetime | None = None
    run_count: int = 0

    def _rule(self) -> Rule:
        raise NotImplementedError

    def _window(self, cfg: QualityConfig) -> timedelta:
        raise NotImplementedError

    def _matches(self, value: float) -> bool:
        raise NotImplementedError

    def observe(
        self, ts: datetime, value: float | None, flag: str, cfg: QualityConfig
    ) -> list[Condition]:
        """One minute value; returns a condition when the detector changes state."""
        _aware(ts, "minute timestamp")
        _finite(value, "minute value")
        if value is None or flag not in cfg.valid_flags:
            return []
        if self.run_last is not None and ts <= self.run_last:
            return []  # duplicate or out of order: the run is built in event-time order
        out: list[Condition] = []
        extends = (
            self.run_start is not None
            and self.run_last is not None
            and self._matches(value)
            and ts - self.run_last <= cfg.run_max_gap
        )
        if extends:
            self.run_last = ts
            self.run_count += 1
        else:
            if self.active and not self._matches(value):
                self.active = False
                out.append(self._condition(False, ts, value, cfg, flag))
            self.run_value = value
            self.run_start = ts
            self.run_last = ts
            self.run_count = 1
        if not self.active and self._matches(value) and self._duration(cfg) >= self._window(cfg):
            self.active = True
            out.append(self._condition(True, ts, value, cfg, flag))
        return out

    def _duration(self, cfg: QualityConfig) -> timedelta:
        assert self.run_start is not None and self.run_last is not None
        return self.run_last - self.run_start + cfg.minute_interval

    def _condition(
        self, active: bool, ts: datetime, value: float, cfg: QualityConfig, flag: str
    ) -> Condition:
        evidence: dict[str, Evidence] = {
            "run_value": self.run_value,
            "run_start": str(self.run_start),
            "run_minutes": self.run_count,
            "window_min": self._window(cfg).total_seconds() / 60,
        }
        if not active:
            evidence["new_value"] = value
        return Condition(
            stack_id=self.stack_id,
            factor=self.factor,
            rule=self._rule(),
            active=active,
            at=ts,
            value=self.run_value if active else value,
            period_start=self.run_start if active else None,
            period_end=ts if active else None,
            evidence=evidence,
            flag=flag,
        )


class FlatlineDetector(_RunDetector):
    """恒值: max == min over ``flatline_window`` of a concentration channel; cleared on change.

    A run of zeros is 零值 (`ZeroDetector`), not also 恒值: one cause, one alarm.
    """

    def _rule(self) -> Rule:
        return Rule.FLATLINE

    def _window(self, cfg: QualityConfig) -> timedelta:
        return cfg.flatline_window

    def _matches(self, value: float) -> bool:
        return (
            value != 0
            and self.run_value is not None
            and exact(value) == exact(self.run_value)
        )


class ZeroDetector(_RunDetector):
    """零值: the value is exactly 0 for ``zero_window``; cleared by a non-zero value."""

    def _rule(self) -> Rule:
        return Rule.ZERO

    def _window(self, cfg: QualityConfig) -> timedelta:
        return cfg.zero_window

    def _matches(self, value: float) -> bool:
        return value == 0


class _StateDetector(BaseModel):
    """A state each value sets or clears (negative, over range): a condition when it changes."""

    stack_id: str
    factor: str
    active: bool = False
    last: AwareDatetime | None = None

    def _in_order(self, ts: datetime) -> bool:
        """False for a duplicate or out-of-order value; otherwise `ts` is the last one seen."""
        if self.last and ts <= self.last:
            return False
        self.last = ts
        return True

    def _change(
        self, state: bool, rule: Rule, ts: datetime, value: float | None, flag: str, **fields: Any
    ) -> list[Condition]:
        """The condition of a change of state (none when the state stays)."""
        if state == self.active:
            return []
        self.active = state
        return [
            Condition(
                stack_id=self.stack_id,
                factor=self.factor,
                rule=rule,
                active=state,
                at=ts,
                value=value,
                flag=flag,
                **fields,
            )
        ]


class NegativeDetector(_StateDetector):
    """负值: a concentration below ``−negative_tolerance``; cleared by a non-negative value."""

    def observe(
        self, ts: datetime, value: float | None, flag: str, cfg: QualityConfig
    ) -> list[Condition]:
        """One value; returns a condition on change."""
        _aware(ts, "timestamp")
        _finite(value, "value")
        if value is None or flag not in cfg.valid_flags or not self._in_order(ts):
            return []
        negative = exact(value) < -exact(cfg.negative_tolerance)
        evidence: dict[str, Evidence] = {"value": value, "tolerance": cfg.negative_tolerance}
        return self._change(negative, Rule.NEGATIVE, ts, value, flag, evidence=evidence)


class OverRangeDetector(_StateDetector):
    """超量程: flag T (above the measurement upper limit, Table 8) or value > configured range."""

    def observe(
        self, ts: datetime, value: float | None, flag: str, cfg: QualityConfig
    ) -> list[Condition]:
        """One value; returns a condition on change."""
        _aware(ts, "timestamp")
        _finite(value, "value")
        if not self._in_order(ts):
            return []
        upper = cfg.ranges.get(self.factor)
        above = value is not None and upper is not None and exact(value) > exact(upper)
        over = flag == "T" or above
        evidence: dict[str, Evidence] = {"value": value, "flag": flag, "range": upper}
        return self._change(
            over, Rule.OVER_RANGE, ts, value, flag, limit=upper, evidence=evidence
        )


class ClockSkewDetector(BaseModel):
    """The logger's DataTime far from the platform's time (its clock is wrong).

    The deviation is `receipt − event time − reference.offset`, where the event time is when
    the record's data ends (the sampling instant of 2011, the interval end of 2051) and the
    reference is the platform's consensus offset (`stackwatch.platform_clock`: 0 live, the
    replay's offset when history is replayed). It is skewed beyond
    `max(clock_skew_tolerance, clock_skew_spread_factor × reference.spread)` — or beyond
    `clock_skew_fast_tolerance` when the input runs faster than real time — confirmed by
    `clock_skew_confirm_frames` frames in a row; it recovers below 3/4 of that, confirmed the
    same way, so a clock near the tolerance does not flap. Back-filled re-sends (RF=1) must
    not be fed here.
    """

    stack_id: str
    active: bool = False
    last: AwareDatetime | None = None
    streak: int = 0

    def frame(
        self,
        event_time: datetime,
        received_at: datetime,
        cfg: QualityConfig,
        reference: ClockReference = RECEIPT_TIME,
    ) -> list[Condition]:
        """One frame's event time and receipt time; returns a condition on change."""
        _aware(event_time, "event time")
        _aware(received_at, "receipt time")
        if self.last is not None and received_at <= self.last:
            return []
        self.last = received_at
        deviation = received_at - event_time - reference.offset
        tolerance = max(cfg.clock_skew_tolerance, reference.spread * cfg.clock_skew_spread_factor)
        if reference.speed > cfg.clock_skew_fast_input:
            tolerance = max(tolerance, cfg.clock_skew_fast_tolerance)
        if self.active:
            changing = abs(deviation) <= tolerance * CLOCK_SKEW_RECOVERY
        else:
            changing = abs(deviation) > tolerance
        self.streak = self.streak + 1 if changing else 0
        if self.streak < cfg.clock_skew_confirm_frames:
            return []
        self.streak = 0
        self.active = not self.active
        return [
            Condition(
                stack_id=self.stack_id,
                rule=Rule.CLOCK_SKEW,
                active=self.active,
                at=received_at,
                value=deviation.total_seconds(),
                evidence={
                    "event_time": str(event_time),
                    "received_at": str(received_at),
                    "skew_s": deviation.total_seconds(),
                    "tolerance_s": tolerance.total_seconds(),
                    "platform_offset_s": reference.offset.total_seconds(),
                    "peers": reference.stacks,
                },
            )
        ]


CLOCK_SKEW_RECOVERY = 0.75
"""A skewed clock recovers below this share of the tolerance (hysteresis)."""


def _mismatch(
    rule: Rule,
    stack_id: str,
    factor: str,
    at: datetime,
    reported: float,
    computed: float,
    cfg: QualityConfig,
    period_start: datetime | None,
) -> Condition:
    _aware(at, "time")
    _finite(reported, "reported value")
    _finite(computed, "computed value")
    diff = abs(exact(reported) - exact(computed))
    tolerance = max(exact(cfg.mismatch_abs_tol), exact(cfg.mismatch_rel_tol) * abs(exact(computed)))
    return Condition(
        stack_id=stack_id,
        factor=factor,
        rule=rule,
        active=diff > tolerance,
        at=at,
        value=reported,
        period_start=period_start,
        period_end=at if period_start is not None else None,
        evidence={
            "reported": reported,
            "computed": computed,
            "difference": float(diff),
            "tolerance": float(tolerance),
        },
    )


def logger_hour_mismatch(
    stack_id: str,
    factor: str,
    hour_start: datetime,
    reported_avg: float,
    computed_avg: float,
    cfg: QualityConfig,
) -> Condition:
    """Logger's 2061 ``-Avg`` vs the hour computed from minutes (event time = hour end).

    Active when they differ by more than max(abs tolerance, rel tolerance × computed).
    """
    end = hour_start + timedelta(hours=1)
    return _mismatch(
        Rule.LOGGER_HOUR_MISMATCH,
        stack_id,
        factor,
        end,
        reported_avg,
        computed_avg,
        cfg,
        hour_start,
    )


def zs_mismatch(
    stack_id: str,
    factor: str,
    at: datetime,
    reported_zs: float,
    computed_zs: float,
    cfg: QualityConfig,
) -> Condition:
    """Logger's ``-Zs*`` value vs the pipeline's App. D eq. 28 conversion of the same value."""
    return _mismatch(Rule.ZS_MISMATCH, stack_id, factor, at, reported_zs, computed_zs, cfg, None)


class StackQuality(BaseModel):
    """All detectors of one stack, as one JSON-safe state (for a Faust table keyed by stack)."""

    stack_id: str
    offline: OfflineDetector
    clock: ClockSkewDetector
    flatline: dict[str, FlatlineDetector] = Field(default_factory=dict)
    zero: dict[str, ZeroDetector] = Field(default_factory=dict)
    negative: dict[str, NegativeDetector] = Field(default_factory=dict)
    over_range: dict[str, OverRangeDetector] = Field(default_factory=dict)

    @classmethod
    def create(cls, stack_id: str, watch_since: datetime | None = None) -> StackQuality:
        """Fresh detectors; ``watch_since`` starts the offline clock before the first frame."""
        return cls(
            stack_id=stack_id,
            offline=OfflineDetector(stack_id=stack_id, watch_since=watch_since),
            clock=ClockSkewDetector(stack_id=stack_id),
        )

    def on_frame(
        self,
        received_at: datetime,
        cfg: QualityConfig,
        event_time: datetime | None = None,
        reference: ClockReference = RECEIPT_TIME,
    ) -> list[Condition]:
        """Any frame from the stack's logger (heartbeats included)."""
        out = self.offline.frame(received_at, cfg)
        if event_time is not None:
            out += self.clock.frame(event_time, received_at, cfg, reference)
        return out

    def on_value(
        self, factor: str, ts: datetime, value: float | None, flag: str, cfg: QualityConfig
    ) -> list[Condition]:
        """One minute value of one factor (flat-line/zero/negative on concentrations only)."""
        sid = self.stack_id
        out = self.over_range.setdefault(
            factor, OverRangeDetector(stack_id=sid, factor=factor)
        ).observe(ts, value, flag, cfg)
        if factor not in cfg.concentration_factors:
            return out
        out += self.flatline.setdefault(
            factor, FlatlineDetector(stack_id=sid, factor=factor)
        ).observe(ts, value, flag, cfg)
        out += self.zero.setdefault(factor, ZeroDetector(stack_id=sid, factor=factor)).observe(
            ts, value, flag, cfg
        )
        out += self.negative.setdefault(
            factor, NegativeDetector(stack_id=sid, factor=factor)
        ).observe(ts, value, flag, cfg)
        return out

    def check(
        self, now: datetime, cfg: QualityConfig, timeout: timedelta | None = None
    ) -> list[Condition]:
        """Timer tick (offline detection)."""
        return self.offline.check(now, cfg, timeout)

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state."""
        return self.model_dump(mode="json")

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StackQuality:
        """Rebuild from :meth:`to_state` output (pydantic ValidationError if malformed)."""
        return cls.model_validate(state)
