"""The per-stack stream processor: readings in; aggregates and alert events out (pure).

One `StackProcessor` holds everything the pipeline knows about one stack, as JSON-safe state
that a Faust table stores per stack (its changelog makes it survive a worker restart). The
Faust agent only decodes records, calls `on_reading` / `on_command` / `tick`, and emits what
they return; every rule lives here or below, tested with explicit timestamps.

How the field works and what this follows (HJ 212-2017 App. C/D, HJ 75; docs/loggers.md):

* The data logger's minute records (CN 2051) are the official minute values. Each stands for
  its logger's whole MinInterval (registry, else inferred from the traffic: `Cadence`), so an
  hour is valid when its valid records cover ≥ 45 minutes (six 10-minute records cover 60).
  DataTime names the interval start (HJ 212-2017) or end (most HJ/T 212-2005 loggers), as the
  reading says. Days are formed from hours (≥ 20).
* For loggers that send only real-time data (CN 2011), minute values are derived here from
  the real-time samples and marked `source="platform"`; a sample stands for its RtdInterval.
  Once a stack has sent a 2051 within `logger_minutes_horizon`, derived minutes are not used.
* The logger's own hour (2061) and day (2031) are compared with the platform's mean; a logger
  that keeps disagreeing raises one `logger_hour_mismatch`. When the platform has no minute
  data for an hour (a logger that sends only 2061), the logger's hour is stored and judged
  (`source="logger"`); the same for days.
* A stopped stack (停运, `Reading.stopped`) gives stopped hours: not judged, no zero or
  flat-line alarm, no missing-data alarm.
* Windows close on the stack's event clock plus grace (`stackwatch.windows`), advanced by
  each reading and, for idle stacks, by `tick(now)` from a timer. A late record within the
  allowed lateness re-emits its period with a higher revision; later ones, up to
  `backfill_horizon` (补传), are applied to the archived period (`WindowArchive`), which is
  recomputed and re-judged as a new revision. Beyond the horizon they are reported.

Clock. Every lifecycle decision uses the stack's *event-time clock*: the end of the newest
data it sent (DataTime of real-time data, interval end of aggregates), never more than
`clock_lead_tolerance` ahead of its receipt, advanced by the wall time elapsed since that frame
arrived. Live, that is the wall clock; in a replay at any speed it is the recorded time, so
replay gives the same aggregates and alerts as live.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.alerts import (
    AlertBook,
    AlertEvent,
    AlertPolicy,
    Condition,
    Rule,
    hour_conditions,
    provisional_condition,
)
from stackwatch.averaging import (
    CST,
    DEFAULT_RULES,
    Aggregate,
    AveragingRules,
    Period,
    Sample,
    aggregate,
    emission_hour,
)
from stackwatch.compliance import Evidence, HourValue, RollingMean, judge_hour
from stackwatch.intervals import (
    Cadence,
    IntervalLabel,
    covered_minutes,
    placement,
    record_span,
    snap_minutes,
    snap_stamp,
)
from stackwatch.models import AggregateRecord, FactorReading, Reading, ReadingKind
from stackwatch.normalise import POLLUTANTS
from stackwatch.platform_clock import RECEIPT_TIME, ClockReference
from stackwatch.quality import (
    DEFAULT_CONCENTRATION_FACTORS,
    QualityConfig,
    StackQuality,
    logger_hour_mismatch,
    zs_mismatch,
)
from stackwatch.stack_limits import StackLimits
from stackwatch.window_items import (
    LOGGER_RECORD_KEY,
    FactorValue,
    HourContent,
    HourItem,
    LoggerRecordItem,
    MinuteItem,
    Source,
    is_logger_record,
)
from stackwatch.windows import AddResult, AddStatus, ClosedWindow, EventTimeWindows, WindowItem

LimitsSource = StackLimits | Callable[[date], StackLimits]
"""The limits of the stack, or a function giving them for a (+08:00) day: an hour is judged
by the limits in force on the day the hour starts, even when it closes after midnight."""

FLOW = "a00000"
O2 = "a19001"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RTD_RESOLUTION_S = 10
"""Real-time DataTimes jitter by seconds: their gaps are compared to the nearest 10 s."""
STOP_FLAG = "F"
"""Flag a stopped stack's values carry in the averages (HJ 212-2017 Table 8: F 停运)."""


class StreamQualityConfig(QualityConfig):
    """Detector thresholds as the stream worker applies them.

    Offline after `offline_timeout` (10 minutes) without any frame, or after
    `offline_missed_uploads` of the logger's own upload interval if that is longer: a logger
    that uploads every 10 minutes is not offline between its uploads (docs/loggers.md).
    Defaults live on the class so a partial override from the environment keeps them.
    """

    upload_interval: timedelta = Field(
        default=timedelta(minutes=1), gt=timedelta(0), description="Slowest expected upload."
    )
    offline_missed_intervals: int = Field(
        default=10, ge=1, description="Offline after this many intervals with no frame."
    )
    offline_missed_uploads: int = Field(
        default=3,
        ge=1,
        description="…or after this many of the logger's own upload intervals, if longer.",
    )


class ProcessorConfig(BaseModel):
    """Windowing and rule configuration (documented defaults; see the README)."""

    model_config = ConfigDict(frozen=True)

    minute_grace: timedelta = Field(
        default=timedelta(seconds=90),
        description="Wait after a minute ends before deriving it from real-time samples.",
    )
    hour_grace: timedelta = Field(
        default=timedelta(minutes=3),
        description="The last minute record of an hour arrives just after it; wait this long.",
    )
    hour_lateness: timedelta = Field(
        default=timedelta(minutes=30),
        description="Late minutes up to this after the close re-open the hour in memory.",
    )
    day_grace: timedelta = Field(
        default=timedelta(minutes=15), description="Wait after midnight (+08:00) to close a day."
    )
    day_lateness: timedelta = Field(
        default=timedelta(hours=2), description="Late hours up to this re-open the day in memory."
    )
    backfill_horizon: timedelta = Field(
        default=timedelta(hours=48),
        description="Back-filled (补传) minute and hour data up to this long after its period "
        "ended recompute and re-judge the period as a new revision; older data is reported.",
    )
    max_clock_skew: timedelta | None = Field(
        default=timedelta(days=1),
        description="Readings dated further ahead of receipt are refused by the windows.",
    )
    clock_lead_tolerance: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="A frame dated ahead of its receipt moves the stack's clock at most this "
        "far ahead of the receipt time.",
    )
    default_min_interval: timedelta = Field(
        default=timedelta(minutes=1),
        gt=timedelta(0),
        description="Minute-data interval assumed until the registry or the traffic says.",
    )
    default_rtd_interval: timedelta = Field(
        default=timedelta(seconds=30),
        gt=timedelta(0),
        description="Real-time interval assumed until the registry or the traffic says.",
    )
    realtime_min_samples: int = Field(
        default=2,
        ge=1,
        description="Real-time samples for a platform-derived minute (loggers without 2051), "
        "or every sample the minute can hold when the logger sends fewer.",
    )
    logger_minutes_horizon: timedelta = Field(
        default=timedelta(hours=2),
        description="After a logger minute (2051), derived minutes are ignored this long.",
    )
    provisional_min_minutes: int = Field(
        default=45,
        ge=1,
        description="Valid minutes covered before the rolling 60-min mean may alarm.",
    )
    mismatch_window: int = Field(
        default=4, ge=1, description="Logger-vs-platform hours looked at for a mismatch alert."
    )
    mismatch_min_hours: int = Field(
        default=3,
        ge=1,
        description="Disagreeing hours among them that raise logger_hour_mismatch.",
    )
    averaging: AveragingRules = DEFAULT_RULES
    quality: StreamQualityConfig = StreamQualityConfig()
    alerts: AlertPolicy = AlertPolicy()


class Outputs(BaseModel):
    """What one call produced: aggregates for the minute/hour/day topics and alert events."""

    aggregates: list[AggregateRecord] = Field(default_factory=list)
    alerts: list[AlertEvent] = Field(default_factory=list)
    late: list[str] = Field(default_factory=list, description="Too-late items, with reasons.")

    def extend(self, other: Outputs) -> None:
        """Append another call's outputs."""
        self.aggregates.extend(other.aggregates)
        self.alerts.extend(other.alerts)
        self.late.extend(other.late)


class WindowArchive(Protocol):
    """Where finalised hour and day windows wait for back-filled data (per stack).

    Kept out of the processor's own state: that is written on every record, while an archived
    window is written once when it is finalised and again only when back-fill touches it.
    """

    def get(self, key: str) -> dict[str, Any] | None:
        """The archived window, if any."""

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) an archived window."""

    def delete(self, key: str) -> None:
        """Forget an archived window."""


class MemoryArchive:
    """A `WindowArchive` in a dict (tests, and processors without a durable store)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The archived window, if any."""
        return self.data.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) an archived window."""
        self.data[key] = value

    def delete(self, key: str) -> None:
        """Forget an archived window."""
        self.data.pop(key, None)


def _iso(ts: datetime) -> str:
    return ts.astimezone(CST).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


class StackProcessor:
    """All per-stack state and rules; see the module docstring."""

    def __init__(
        self,
        stack_id: str,
        cfg: ProcessorConfig | None = None,
        archive: WindowArchive | None = None,
    ) -> None:
        self.stack_id = stack_id
        self.cfg = cfg or ProcessorConfig()
        self.archive: WindowArchive = archive if archive is not None else MemoryArchive()
        c = self.cfg
        self.rt = self._windows(timedelta(minutes=1), c.minute_grace, timedelta(0))
        self.hours = self._windows(HOUR, c.hour_grace, c.hour_lateness)
        self.days = self._windows(DAY, c.day_grace, c.day_lateness)
        self.quality = StackQuality.create(stack_id)
        self.book = AlertBook(c.alerts)
        self.rolling: dict[str, RollingMean] = {}
        self.last_logger_minute: datetime | None = None
        self.clock_event: datetime | None = None
        self.clock_arrival: datetime | None = None
        self.cadence_min = Cadence()
        self.cadence_rt = Cadence(resolution_s=RTD_RESOLUTION_S)
        self.declared_min_s: int | None = None
        self.declared_rt_s: int | None = None
        self.flue_gas = False
        self.registry_conflict = False
        self.mismatch: dict[str, bool] = {}
        self.archived: dict[str, str] = {}
        self._quality_cfgs: dict[int, QualityConfig] = {}

    def _windows(
        self, period: timedelta, grace: timedelta, lateness: timedelta
    ) -> EventTimeWindows:
        return EventTimeWindows(
            period,
            grace,
            lateness,
            max_clock_skew=self.cfg.max_clock_skew,
            watermark_from_items=False,
        )

    # ------------------------------------------------------------------ clock

    def event_clock(self, now: datetime) -> datetime | None:
        """The stack's event-time clock at wall time `now` (None before the first frame)."""
        if self.clock_event is None or self.clock_arrival is None:
            return None
        return self.clock_event + max(now - self.clock_arrival, timedelta(0))

    def _note_frame(self, event_time: datetime, arrival: datetime) -> None:
        if self.clock_event is None or event_time >= self.clock_event:
            self.clock_event = event_time
            self.clock_arrival = arrival

    def min_interval(self) -> timedelta:
        """The stack's minute-data interval: registered, else inferred, else the default."""
        seconds = self.declared_min_s or self.cadence_min.interval_s()
        return timedelta(seconds=seconds) if seconds else self.cfg.default_min_interval

    def rtd_interval(self) -> timedelta:
        """The stack's real-time interval: registered, else inferred, else the default."""
        seconds = self.declared_rt_s or self.cadence_rt.interval_s()
        return timedelta(seconds=seconds) if seconds else self.cfg.default_rtd_interval

    def offline_timeout(self) -> timedelta:
        """No frame for this long → offline: the floor, or missed uploads of its cadence.

        The cadence the logger is *seen* to keep wins over the registered one: a registry that
        says 1 minute for a logger uploading every 10 is reported (registry_mismatch), and must
        not also make the logger "offline" between its uploads.
        """
        q = self.cfg.quality
        known = [
            timedelta(seconds=s)
            for s in (
                self.cadence_rt.interval_s() or self.declared_rt_s,
                self.cadence_min.interval_s() or self.declared_min_s,
            )
            if s
        ]
        if not known:
            return q.offline_timeout
        return max(q.offline_timeout, min(known) * q.offline_missed_uploads)

    def event_time_of(self, reading: Reading) -> datetime | None:
        """When the reading's data ends (the instant it proves the logger had reached)."""
        stamp = self._stamp(reading)
        if stamp is None:
            return None
        label = reading.interval_label or "start"
        length = self._record_length(reading)
        return stamp if length is None else record_span(stamp, length, label)[1]

    def _record_length(self, reading: Reading) -> timedelta | None:
        """The interval an aggregate record covers (None for real-time data and events)."""
        if reading.kind is ReadingKind.MINUTE:
            return self._length(reading)
        if reading.kind is ReadingKind.HOUR:
            return HOUR
        if reading.kind is ReadingKind.DAY:
            return DAY
        return None

    def _stamp(self, reading: Reading) -> datetime | None:
        """The reading's DataTime, snapped onto its interval grid (`snap_stamp`)."""
        length = self._record_length(reading)
        if reading.data_time is None or length is None:
            return reading.data_time
        return snap_stamp(reading.data_time, length)

    def _length(self, reading: Reading) -> timedelta:
        if reading.interval_s:
            return timedelta(seconds=reading.interval_s)
        return self.min_interval()

    # ------------------------------------------------------------------ inputs

    def on_reading(
        self,
        reading: Reading,
        limits: LimitsSource,
        clock: ClockReference | None = RECEIPT_TIME,
    ) -> Outputs:
        """Apply one normalised reading of this stack.

        `clock`: the platform's time reference for judging the logger's clock; None = no
        reference yet (too few peers), so the clock is not judged on this frame.
        """
        out = Outputs()
        if reading.flue_gas is False or (reading.flue_gas is None and not self.flue_gas):
            return out  # wastewater and other systems are not flue gas
        self._note_cadence(reading)
        event_time = self.event_time_of(reading)
        clock_time: datetime | None
        if event_time is not None:
            lead = reading.received_at + self.cfg.clock_lead_tolerance
            clock_time = min(event_time, lead)
        else:
            clock_time = self.event_clock(reading.received_at)
        if clock_time is not None:
            out.extend(self._offline_gap(clock_time))
            self._note_frame(clock_time, reading.received_at)
            self._observe_all(
                self.quality.offline.frame(clock_time, self.cfg.quality, self.offline_timeout()),
                out,
            )
        if (
            clock is not None
            and event_time is not None
            and reading.kind in (ReadingKind.REALTIME, ReadingKind.MINUTE)
            and not reading.resent
        ):
            self._observe_all(
                self.quality.clock.frame(event_time, reading.received_at, self.cfg.quality, clock),
                out,
            )
        if reading.flue_gas is None:
            return out  # an interaction frame only shows the logger is alive
        self.flue_gas = True
        if reading.kind is ReadingKind.REALTIME:
            self._on_realtime(reading, out)
        elif reading.kind is ReadingKind.MINUTE:
            assert reading.data_time is not None
            self._on_logger_minute(reading, limits, out)
        elif reading.kind in (ReadingKind.HOUR, ReadingKind.DAY):
            self._on_logger_record(reading, limits, out)
        now = self.event_clock(reading.received_at)
        if now is not None:
            out.extend(self._advance(now, limits))
        return out

    def on_ack(self, alert_id: str, by: str, reason: str, at: datetime) -> list[AlertEvent]:
        """An operator acknowledged an alert of this stack."""
        return self.book.ack(alert_id, by, reason, at)

    def tick(
        self,
        now: datetime,
        limits: LimitsSource,
        input_silent_for: timedelta = timedelta(0),
    ) -> Outputs:
        """Timer: close idle windows, detect offline loggers, clear alerts past hold time.

        `input_silent_for`: how long the platform as a whole has received nothing (the end of
        a replay, an outage upstream of the gateway). Silence that is everyone's is not this
        logger going offline; it is reported as the pipeline's own health, so offline is
        judged at the moment the input stopped.
        """
        out = Outputs()
        clock = self.event_clock(now)
        if clock is None:
            return out
        out.extend(self._offline_gap(clock - max(input_silent_for, timedelta(0))))
        out.extend(self._advance(clock, limits))
        out.alerts.extend(self.book.tick(clock))
        self._prune_archive(clock)
        return out

    def flush(self, now: datetime, limits: LimitsSource) -> Outputs:
        """The input went idle (a replay ended): emit every open hour and day now.

        Periods that have ended by the stack's clock are closed and judged as they would be
        after their grace; the period still in progress is emitted provisionally (aggregates
        only, no judgement). Data arriving later re-emits them with a higher revision.
        """
        out = Outputs()
        clock = self.event_clock(now)
        if clock is None:
            return out
        for closed in self.rt.flush(upto=clock - timedelta(minutes=1)):
            self._close_realtime_minute(closed, _limits_on(limits, closed.start), out)
        for closed in self.hours.flush():
            provisional = closed.end > clock
            self._close_hour(closed, _limits_on(limits, closed.start), out, provisional=provisional)
        for closed in self.days.flush():
            self._close_day(closed, _limits_on(limits, closed.start), out)
        return out

    def _note_cadence(self, reading: Reading) -> None:
        """Registered and observed intervals, before anything is judged on them."""
        if reading.data_time is None:
            return
        if reading.kind is ReadingKind.MINUTE:
            self.declared_min_s = reading.interval_s
            if not reading.resent:
                self.cadence_min.observe(reading.data_time)
        elif reading.kind is ReadingKind.REALTIME:
            self.declared_rt_s = reading.interval_s
            if not reading.resent:
                self.cadence_rt.observe(reading.data_time)

    # ------------------------------------------------------------------ readings

    def _on_realtime(self, reading: Reading, out: Outputs) -> None:
        assert reading.data_time is not None
        if self.last_logger_minute is not None and (
            reading.data_time - self.last_logger_minute < self.cfg.logger_minutes_horizon
        ):
            return  # the logger sends official minutes: no minute is derived from samples
        item: dict[str, Any] = {code: [f.value, f.flag, f.zs] for code, f in reading.values.items()}
        if reading.flow_std_dry_m3_h is not None:
            item["_flow"] = reading.flow_std_dry_m3_h
        if reading.stopped:
            item["_stop"] = True
        result = self.rt.add(reading.data_time, item, arrival=reading.received_at)
        if not result.accepted:
            out.late.append(f"realtime {_iso(reading.data_time)}: {result.reason}")

    def _on_logger_minute(self, reading: Reading, limits: LimitsSource, out: Outputs) -> None:
        stamp = self._stamp(reading)
        assert stamp is not None
        self._check_registry(stamp, out)
        label: IntervalLabel = reading.interval_label or "start"
        length = self._length(reading)
        start, end = record_span(stamp, length, label)
        stack_limits = _limits_on(limits, start)
        self.last_logger_minute = max(start, self.last_logger_minute or start)
        valid_flags = self.cfg.averaging.flags.valid_flags
        for code, f in reading.values.items():
            valid = f.value is not None and f.flag in valid_flags and not reading.stopped
            reason = None
            if reading.stopped:
                reason = f"stack stopped (停运): {reading.stop_reason}"
            elif not valid:
                reason = "no value" if f.value is None else f"flag {f.flag} is not a valid flag"
            out.aggregates.append(
                AggregateRecord(
                    stack_id=self.stack_id,
                    factor=code,
                    period="minute",
                    period_start=start,
                    period_end=end,
                    mean=f.value,
                    zs_mean=f.zs,
                    min=f.min,
                    max=f.max,
                    valid=valid,
                    invalid_reason=reason,
                    flag=f.flag,
                    valid_count=1 if valid else 0,
                    total_count=1,
                    ref_o2=stack_limits.ref_o2 if f.zs is not None else None,
                    source="logger",
                    stopped=reading.stopped,
                    coverage_minutes=length.total_seconds() / 60 if valid else 0.0,
                )
            )
            if f.logger_zs is not None and f.zs is not None:
                self._observe(
                    zs_mismatch(self.stack_id, code, end, f.logger_zs, f.zs, self.cfg.quality),
                    out,
                )
        item = MinuteItem(
            source="logger",
            stamp=stamp,
            label=label,
            length_s=reading.interval_s,
            factors=_factor_values(reading.values),
            flow=reading.flow_std_dry_m3_h,
            stopped=reading.stopped,
        )
        self._minute_into_hour(item, length, limits, out)

    def _on_logger_record(self, reading: Reading, limits: LimitsSource, out: Outputs) -> None:
        """A 2061 hour or 2031 day record: kept in its period's window as the logger's value."""
        stamp = self._stamp(reading)
        assert stamp is not None
        label: IntervalLabel = reading.interval_label or "start"
        item = LoggerRecordItem(
            factors=_factor_values(reading.values), stamp=stamp, stopped=reading.stopped
        )
        at = placement(stamp, label)
        if reading.kind is ReadingKind.HOUR:
            self._add_hour_item(at, LOGGER_RECORD_KEY, item.to_json(), limits, out)
        else:
            self._add_day_item(at, LOGGER_RECORD_KEY, item.to_json(), limits, out)

    def _minute_into_hour(
        self, item: MinuteItem, length: timedelta, limits: LimitsSource, out: Outputs
    ) -> None:
        result = self._add_hour_item(
            item.placement, _iso(item.stamp), item.to_json(), limits, out
        )
        if not result.accepted or result.status is AddStatus.DUPLICATE:
            return  # a re-delivered minute: its detectors and rolling mean already saw it
        start, end = item.span(int(length.total_seconds()))
        stack_limits = _limits_on(limits, start)
        qcfg = self._quality_cfg(length)
        valid_flags = self.cfg.averaging.flags.valid_flags
        for code, (value, flag, zs) in item.factors.items():
            flag_used = STOP_FLAG if item.stopped else flag
            self._observe_all(self.quality.on_value(code, start, value, flag_used, qcfg), out)
            limit = stack_limits.ultra_low(code)
            if limit is None:
                continue
            basis_value = zs if limit.ref_o2 is not None else value
            valid = basis_value is not None and flag_used in valid_flags
            rolling = self.rolling.setdefault(
                code, RollingMean(min_count=self.cfg.provisional_min_minutes)
            )
            snap = rolling.add(end, basis_value, valid, length.total_seconds() / 60)
            cond = provisional_condition(
                self.stack_id, code, snap, limit.limit_mg_m3, ref_o2=limit.ref_o2
            )
            if cond is not None:
                self._observe(cond.model_copy(update={"flag": flag_used}), out)

    def _quality_cfg(self, length: timedelta) -> QualityConfig:
        """Detector thresholds for records of `length`: a run continues across one record gap,
        and a record counts for its whole interval."""
        key = int(length.total_seconds())
        cfg = self._quality_cfgs.get(key)
        if cfg is None:
            q = self.cfg.quality
            cfg = q.model_copy(
                update={
                    "minute_interval": length,
                    "run_max_gap": max(q.run_max_gap, length + length / 2),
                }
            )
            self._quality_cfgs[key] = cfg
        return cfg

    def _check_registry(self, stamp: datetime, out: Outputs) -> None:
        """Warn (once per episode) when the traffic contradicts the registered MinInterval."""
        declared = self.declared_min_s
        inferred = self.cadence_min.interval_s()
        if declared is None or inferred is None or len(self.cadence_min.gaps) < 3:
            return
        observed = snap_minutes(inferred)
        conflict = observed is not None and observed * 60 != declared
        if conflict == self.registry_conflict:
            return
        self.registry_conflict = conflict
        self._observe(
            Condition(
                stack_id=self.stack_id,
                rule=Rule.REGISTRY_MISMATCH,
                active=conflict,
                at=stamp,
                value=inferred / 60,
                evidence={
                    "setting": "min_interval_min",
                    "registry": declared / 60,
                    "observed": inferred / 60,
                },
            ),
            out,
        )

    # ------------------------------------------------------------------ windows

    def _add_hour_item(
        self, at: datetime, key: str, item: dict[str, Any], limits: LimitsSource, out: Outputs
    ) -> AddResult:
        result = self.hours.add(at, item, key=key, arrival=self.clock_arrival)
        if result.status is AddStatus.TOO_LATE and result.window_start is not None:
            self._backfill("hour", result.window_start, key, at, item, limits, out)
        elif not result.accepted:
            out.late.append(f"hour item {key}: {result.reason or result.status.value}")
        return result

    def _add_day_item(
        self, at: datetime, key: str, item: dict[str, Any], limits: LimitsSource, out: Outputs
    ) -> None:
        result = self.days.add(at, item, key=key, arrival=self.clock_arrival)
        if result.status is AddStatus.TOO_LATE and result.window_start is not None:
            self._backfill("day", result.window_start, key, at, item, limits, out)
        elif not result.accepted:
            out.late.append(f"day item {key}: {result.reason or result.status.value}")

    def _backfill(
        self,
        kind: str,
        start: datetime,
        key: str,
        at: datetime,
        item: dict[str, Any],
        limits: LimitsSource,
        out: Outputs,
    ) -> None:
        """A record for a finalised period: recompute the archived period (补传)."""
        end = start + (HOUR if kind == "hour" else DAY)
        if self.clock_event is not None and end + self.cfg.backfill_horizon < self.clock_event:
            out.late.append(
                f"{kind} item {key}: period {_iso(start)} ended more than "
                f"{self.cfg.backfill_horizon} before the stack's clock {_iso(self.clock_event)} "
                "(back-fill horizon)"
            )
            return
        akey = f"{kind}|{_iso(start)}"
        entry = self.archive.get(akey) or {"emissions": 0, "items": {}}
        items: dict[str, list[Any]] = dict(entry["items"])
        if key in items and items[key][1] == item:
            return  # the same record again: nothing new
        items[key] = [_iso(at), item]
        revision = int(entry["emissions"])
        self.archive.put(akey, {"emissions": revision + 1, "items": items})
        self.archived[akey] = _iso(end + self.cfg.backfill_horizon)
        closed = _closed(start, end, revision, items)
        if kind == "hour":
            self._close_hour(closed, _limits_on(limits, start), out, late=True)
        else:
            self._close_day(closed, _limits_on(limits, start), out)

    def _archive_dropped(self) -> None:
        for kind, windows in (("hour", self.hours), ("day", self.days)):
            for closed in windows.dropped:
                akey = f"{kind}|{_iso(closed.start)}"
                items = {i.key: [_iso(i.event_time), i.item] for i in closed.items}
                self.archive.put(akey, {"emissions": closed.revision, "items": items})
                self.archived[akey] = _iso(closed.end + self.cfg.backfill_horizon)
            windows.dropped.clear()

    def _prune_archive(self, clock: datetime) -> None:
        for akey, until in sorted(self.archived.items()):
            if _dt(until) < clock:
                self.archive.delete(akey)
                del self.archived[akey]

    def _advance(self, clock: datetime, limits: LimitsSource) -> Outputs:
        out = Outputs()
        for closed in self.rt.advance(clock):
            self._close_realtime_minute(closed, _limits_on(limits, closed.start), out)
        for closed in self.hours.advance(clock):
            self._close_hour(closed, _limits_on(limits, closed.start), out)
        for closed in self.days.advance(clock):
            self._close_day(closed, _limits_on(limits, closed.start), out)
        self._archive_dropped()
        return out

    def _close_realtime_minute(
        self, closed: ClosedWindow, limits: StackLimits, out: Outputs
    ) -> None:
        if closed.revision > 0:
            return  # a derived minute already fed its hour; late samples don't rewrite it
        if self.last_logger_minute is not None and (
            closed.start - self.last_logger_minute < self.cfg.logger_minutes_horizon
        ):
            return  # the logger sends official minutes: they win
        rtd = self.rtd_interval()
        per_minute = max(1, int(timedelta(minutes=1) / rtd)) if rtd < timedelta(minutes=1) else 1
        rules = self.cfg.averaging.model_copy(
            update={"min_samples_per_minute": min(self.cfg.realtime_min_samples, per_minute)}
        )
        per_factor: dict[str, list[Sample]] = {}
        zs_factor: dict[str, list[Sample]] = {}
        flows: list[float] = []
        stopped = 0
        for entry in closed.items:
            payload = entry.item
            assert isinstance(payload, dict)
            if payload.get("_stop"):
                stopped += 1
            for code, triple in payload.items():
                if code == "_flow":
                    assert isinstance(triple, int | float)
                    flows.append(float(triple))
                    continue
                if not isinstance(triple, list):
                    continue
                value, flag, zs = triple
                per_factor.setdefault(code, []).append(
                    Sample(ts=entry.event_time, value=value, flag=str(flag))
                )
                zs_factor.setdefault(code, []).append(
                    Sample(ts=entry.event_time, value=zs, flag=str(flag))
                )
        length = max(rtd, timedelta(minutes=1))
        factors: dict[str, FactorValue] = {}
        for code, samples in per_factor.items():
            agg = aggregate(samples, closed.start, Period.MINUTE, rules)
            zs_agg = aggregate(zs_factor[code], closed.start, Period.MINUTE, rules)
            value = agg.mean if agg.valid else None
            zs = zs_agg.mean if zs_agg.valid else None
            flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
            factors[code] = (value, flag, zs)
            record = self._record(agg, code, zs, limits, "platform", 0)
            out.aggregates.append(
                record.model_copy(update={"period_end": closed.start + length})
            )
        item = MinuteItem(
            source="platform",
            stamp=closed.start,
            label="start",
            length_s=int(length.total_seconds()),
            factors=factors,
            flow=sum(flows) / len(flows) if flows else None,
            stopped=stopped * 2 > len(closed.items),
        )
        self._minute_into_hour(item, length, limits, out)

    def _close_hour(
        self,
        closed: ClosedWindow,
        limits: StackLimits,
        out: Outputs,
        *,
        late: bool = False,
        provisional: bool = False,
    ) -> None:
        content = _hour_content(closed.items)
        key = _iso(closed.start)
        if not content.minutes:
            if content.logger is not None:
                self._logger_hour(closed, content.logger, limits, out, late, provisional)
            return
        rules = self.cfg.averaging
        default_s = int(self.min_interval().total_seconds())
        spans = [m.span(default_s) for m in content.minutes]
        stopped_cov = covered_minutes(
            (s for s, m in zip(spans, content.minutes, strict=True) if m.stopped),
            closed.start,
            closed.end,
        )
        stopped_hour = stopped_cov > 60 - rules.min_minutes_per_hour
        codes = sorted({code for m in content.minutes for code in m.factors})
        aggs: dict[str, Aggregate] = {}
        zs_means: dict[str, float | None] = {}
        for code in codes:
            aggs[code], zs_means[code] = self._hour_of(code, closed, content, spans)
        flow_agg = self._flow_hour(closed, content, spans)
        logger = content.logger.values() if content.logger else {}
        computed: dict[str, float] = {}
        for code in codes:
            agg = aggs[code]
            mass = None
            if flow_agg is not None and code in POLLUTANTS:
                em = emission_hour(agg, flow_agg)
                mass = em.kg if em.valid else None
            record = self._record(agg, code, zs_means[code], limits, "platform", closed.revision,
                                  mass)
            out.aggregates.append(
                record.model_copy(
                    update={
                        "logger_mean": logger.get(code),
                        "stopped": stopped_hour,
                        "coverage_minutes": agg.coverage_minutes,
                    }
                )
            )
            if agg.valid and agg.mean is not None:
                computed[code] = agg.mean
            if not provisional:
                self._judge_hour(
                    agg, code, zs_means[code], aggs.get(O2), limits, out,
                    stopped=stopped_hour, late=late,
                )
            hour_item = HourItem(
                value=agg.mean if agg.valid else None,
                flag=agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag),
                valid=agg.valid,
                zs=zs_means[code],
                kg=mass,
                source="platform",
                stopped=stopped_hour,
            )
            self._add_day_item(
                closed.start, f"{key}|{code}", hour_item.to_json(), limits, out
            )
        if logger and not provisional:
            self._compare_logger_hour(closed.start, logger, computed, out, late=late)

    def _hour_of(
        self,
        code: str,
        closed: ClosedWindow,
        content: HourContent,
        spans: list[tuple[datetime, datetime]],
    ) -> tuple[Aggregate, float | None]:
        """One factor's hourly mean (and its mean at the reference O2), coverage-based."""
        rules = self.cfg.averaging
        valid_flags = rules.flags.valid_flags
        samples: list[Sample] = []
        zs_samples: list[Sample] = []
        valid_spans: list[tuple[datetime, datetime]] = []
        zs_spans: list[tuple[datetime, datetime]] = []
        for minute, span in zip(content.minutes, spans, strict=True):
            if code not in minute.factors:
                continue
            value, flag, zs = minute.factors[code]
            flag = STOP_FLAG if minute.stopped else flag
            samples.append(Sample(ts=minute.placement, value=value, flag=flag))
            zs_samples.append(Sample(ts=minute.placement, value=zs, flag=flag))
            if flag in valid_flags:
                if value is not None:
                    valid_spans.append(span)
                if zs is not None:
                    zs_spans.append(span)
        coverage = covered_minutes(valid_spans, closed.start, closed.end)
        agg = aggregate(samples, closed.start, Period.HOUR, rules, coverage=coverage)
        zs_cov = covered_minutes(zs_spans, closed.start, closed.end)
        zs_agg = aggregate(zs_samples, closed.start, Period.HOUR, rules, coverage=zs_cov)
        return agg, zs_agg.mean if zs_agg.valid else None

    def _flow_hour(
        self,
        closed: ClosedWindow,
        content: HourContent,
        spans: list[tuple[datetime, datetime]],
    ) -> Aggregate | None:
        """Hourly standard dry flow; it carries a00000's flag, so a faulty flow meter (D, M,
        …) yields no hourly flow and no mass (eq. 33)."""
        valid_flags = self.cfg.averaging.flags.valid_flags
        flows: list[Sample] = []
        flow_spans: list[tuple[datetime, datetime]] = []
        for minute, span in zip(content.minutes, spans, strict=True):
            if minute.flow is None:
                continue
            flag = minute.factors.get(FLOW, (None, "N", None))[1]
            flag = STOP_FLAG if minute.stopped else flag
            flows.append(Sample(ts=minute.placement, value=minute.flow, flag=flag))
            if flag in valid_flags:
                flow_spans.append(span)
        if not flows:
            return None
        coverage = covered_minutes(flow_spans, closed.start, closed.end)
        return aggregate(flows, closed.start, Period.HOUR, self.cfg.averaging, coverage=coverage)

    def _logger_hour(
        self,
        closed: ClosedWindow,
        record: LoggerRecordItem,
        limits: StackLimits,
        out: Outputs,
        late: bool,
        provisional: bool,
    ) -> None:
        """No minute data for the hour: the logger's own 2061 is the hour (source logger)."""
        key = _iso(closed.start)
        aggs: dict[str, Aggregate] = {}
        for code, (value, flag, _) in record.factors.items():
            aggs[code] = self._logger_aggregate(closed, value, flag, record.stopped, Period.HOUR)
        for code, (_, _, zs) in sorted(record.factors.items()):
            agg = aggs[code]
            zs_mean = zs if agg.valid else None
            out.aggregates.append(
                self._record(agg, code, zs_mean, limits, "logger", closed.revision).model_copy(
                    update={"logger_mean": agg.mean, "stopped": record.stopped}
                )
            )
            if not provisional:
                self._judge_hour(agg, code, zs_mean, aggs.get(O2), limits, out,
                                 stopped=record.stopped, late=late)
            hour_item = HourItem(
                value=agg.mean if agg.valid else None,
                flag=agg.flag,
                valid=agg.valid,
                zs=zs_mean,
                source="logger",
                stopped=record.stopped,
            )
            self._add_day_item(
                closed.start, f"{key}|{code}", hour_item.to_json(), limits, out
            )

    def _logger_aggregate(
        self, closed: ClosedWindow, value: float | None, flag: str, stopped: bool, period: Period
    ) -> Aggregate:
        """A period whose only constituent is the logger's own record for it."""
        valid_flags = self.cfg.averaging.flags.valid_flags
        valid = value is not None and flag in valid_flags and not stopped
        reason = None
        if stopped:
            reason = "stack stopped (停运)"
        elif not valid:
            reason = "the logger's record has no value" if value is None else (
                f"the logger's record is flagged {flag}"
            )
        return Aggregate(
            period=period,
            start=closed.start,
            end=closed.end,
            valid=valid,
            flag=flag,
            mean=value,
            min=value,
            max=value,
            count_total=1,
            count_valid=1 if valid else 0,
            count_normal=1 if flag in self.cfg.averaging.flags.normal_flags else 0,
            required_valid=1,
            dominant_invalid_flag=None if valid else flag,
            reason=reason,
        )

    def _judge_hour(
        self,
        agg: Aggregate,
        code: str,
        zs_mean: float | None,
        o2_agg: Aggregate | None,
        limits: StackLimits,
        out: Outputs,
        *,
        stopped: bool,
        late: bool,
    ) -> None:
        factor_limits = limits.by_factor.get(code)
        if not factor_limits:
            return
        flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
        coverage = agg.coverage_minutes if agg.coverage_minutes is not None else (
            60.0 if agg.valid else 0.0
        )
        hour = HourValue(
            stack_id=self.stack_id,
            factor=code,
            start=agg.start,
            mean_converted=zs_mean,
            mean_measured=agg.mean if agg.valid else None,
            valid=agg.valid,
            valid_minutes=int(min(coverage, 60)),
            flag=flag,
            ref_o2=limits.ref_o2,
            o2_mean=o2_agg.mean if o2_agg is not None and o2_agg.valid else None,
            production=not stopped,
        )
        verdict = judge_hour(hour, list(factor_limits))
        for cond in hour_conditions(hour, verdict):
            if not late:
                self._observe(cond, out)
            elif cond.rule in (Rule.HOUR_EXCEEDANCE, Rule.HOUR_WARNING):
                late_cond = cond.model_copy(
                    update={"evidence": dict(cond.evidence) | {"backfill": True}}
                )
                out.alerts.extend(self.book.observe_late(late_cond))

    def _close_day(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        hours: dict[str, list[tuple[WindowItem, HourItem]]] = {}
        logger: LoggerRecordItem | None = None
        for entry in closed.items:
            if is_logger_record(entry.item):
                logger = LoggerRecordItem.from_json(entry.item)
                continue
            code = entry.key.partition("|")[2]
            hours.setdefault(code, []).append((entry, HourItem.from_json(entry.item)))
        if not hours:
            if logger is not None:
                self._logger_day(closed, logger, limits, out)
            return
        rules = self.cfg.averaging
        allowed_stopped = 24 - rules.min_hours_per_day
        logger_values = logger.values() if logger else {}
        for code in sorted(hours):
            samples = [
                Sample(ts=e.event_time, value=h.value, flag=h.flag, valid=h.valid)
                for e, h in hours[code]
            ]
            zs_samples = [
                Sample(ts=e.event_time, value=h.zs, flag=h.flag, valid=h.valid and h.zs is not None)
                for e, h in hours[code]
            ]
            agg = aggregate(samples, closed.start, Period.DAY, rules)
            zs_agg = aggregate(zs_samples, closed.start, Period.DAY, rules)
            kg = [h.kg for _, h in hours[code] if h.valid and h.kg is not None]
            sources = {h.source for _, h in hours[code]}
            stopped_hours = sum(1 for _, h in hours[code] if h.stopped)
            record = self._record(
                agg,
                code,
                zs_agg.mean if zs_agg.valid else None,
                limits,
                "logger" if sources == {"logger"} else "platform",
                closed.revision,
                sum(kg) if kg else None,
            )
            out.aggregates.append(
                record.model_copy(
                    update={
                        "logger_mean": logger_values.get(code),
                        "stopped": stopped_hours > allowed_stopped,
                    }
                )
            )

    def _logger_day(
        self, closed: ClosedWindow, record: LoggerRecordItem, limits: StackLimits, out: Outputs
    ) -> None:
        """No hours for the day: the logger's own 2031 is the day (source logger)."""
        for code, (value, flag, zs) in sorted(record.factors.items()):
            agg = self._logger_aggregate(closed, value, flag, record.stopped, Period.DAY)
            out.aggregates.append(
                self._record(agg, code, zs if agg.valid else None, limits, "logger",
                             closed.revision).model_copy(
                    update={"logger_mean": value, "stopped": record.stopped}
                )
            )

    def _record(
        self,
        agg: Aggregate,
        code: str,
        zs_mean: float | None,
        limits: StackLimits,
        source: Source,
        revision: int,
        mass: float | None = None,
    ) -> AggregateRecord:
        limit = limits.ultra_low(code)
        return AggregateRecord(
            stack_id=self.stack_id,
            factor=code,
            period=agg.period.value,
            period_start=agg.start,
            period_end=agg.end,
            mean=agg.mean,
            zs_mean=zs_mean,
            min=agg.min,
            max=agg.max,
            valid=agg.valid,
            flag=agg.flag,
            valid_count=agg.count_valid,
            total_count=agg.count_total,
            invalid_reason=agg.reason,
            dominant_invalid_flag=agg.dominant_invalid_flag,
            mass_kg=mass,
            ref_o2=limits.ref_o2 if zs_mean is not None else None,
            limit_mg_m3=limit.limit_mg_m3 if limit is not None else None,
            limit_program=limit.program if limit is not None else None,
            source=source,
            revision=revision,
        )

    def _compare_logger_hour(
        self,
        start: datetime,
        logger: dict[str, float],
        computed: dict[str, float],
        out: Outputs,
        *,
        late: bool,
    ) -> None:
        """Record whether this hour's logger record agrees; alert when it keeps disagreeing.

        One alert per stack (not per hour or factor): a logger whose own hours disagree with
        the platform's in `mismatch_min_hours` of its last `mismatch_window` compared hours
        (usually a labelling or interval setting the registry has wrong).
        """
        diffs: dict[str, Evidence] = {}
        disagree = False
        for code in sorted(set(logger) & set(computed) & DEFAULT_CONCENTRATION_FACTORS):
            reported, mean = logger[code], computed[code]
            off = logger_hour_mismatch(
                self.stack_id, code, start, reported, mean, self.cfg.quality
            ).active
            disagree = disagree or off
            diffs[code] = f"logger {reported:g} vs platform {mean:g}" + (" ✗" if off else "")
        if not diffs:
            return
        self.mismatch[_iso(start)] = disagree
        recent = sorted(self.mismatch)[-self.cfg.mismatch_window :]
        self.mismatch = {k: self.mismatch[k] for k in recent}
        if late:
            return
        count = sum(1 for k in recent if self.mismatch[k])
        self._observe(
            Condition(
                stack_id=self.stack_id,
                rule=Rule.LOGGER_HOUR_MISMATCH,
                active=count >= self.cfg.mismatch_min_hours,
                at=start + HOUR,
                value=float(count),
                period_start=start,
                period_end=start + HOUR,
                evidence={
                    "disagreeing_hours": count,
                    "compared_hours": len(recent),
                    "latest_hour": _iso(start),
                    **diffs,
                },
            ),
            out,
        )

    # ------------------------------------------------------------------ alerts

    def _offline_gap(self, clock: datetime) -> Outputs:
        """Raise `offline` at exactly last frame + timeout if the clock has passed it."""
        out = Outputs()
        last = self.quality.offline.last_frame_at
        if last is None:
            return out
        timeout = self.offline_timeout()
        due = last + timeout
        if clock >= due:
            self._observe_all(self.quality.check(due, self.cfg.quality, timeout), out)
        return out

    def _observe(self, cond: Condition, out: Outputs) -> None:
        out.alerts.extend(self.book.observe(cond))

    def _observe_all(self, conds: list[Condition], out: Outputs) -> None:
        for cond in conds:
            self._observe(cond, out)

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """JSON-safe snapshot for the Faust table (the archive is stored on its own)."""
        return {
            "v": 2,
            "stack_id": self.stack_id,
            "rt": self.rt.to_state(),
            "hours": self.hours.to_state(),
            "days": self.days.to_state(),
            "quality": self.quality.to_state(),
            "book": self.book.to_state(),
            "rolling": {k: r.to_state() for k, r in self.rolling.items()},
            "last_logger_minute": _iso(self.last_logger_minute)
            if self.last_logger_minute
            else None,
            "clock_event": _iso(self.clock_event) if self.clock_event else None,
            "clock_arrival": self.clock_arrival.isoformat() if self.clock_arrival else None,
            "cadence_min": self.cadence_min.to_state(),
            "cadence_rt": self.cadence_rt.to_state(),
            "declared_min_s": self.declared_min_s,
            "declared_rt_s": self.declared_rt_s,
            "flue_gas": self.flue_gas,
            "registry_conflict": self.registry_conflict,
            # Copies: the snapshot is stored as is and must not change with later processing.
            "mismatch": dict(self.mismatch),
            "archived": dict(self.archived),
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        cfg: ProcessorConfig | None = None,
        archive: WindowArchive | None = None,
    ) -> StackProcessor:
        """Rebuild from `to_state()` output."""
        proc = cls(str(state["stack_id"]), cfg, archive)
        proc.rt = EventTimeWindows.from_state(state["rt"])
        proc.hours = EventTimeWindows.from_state(state["hours"])
        proc.days = EventTimeWindows.from_state(state["days"])
        proc.quality = StackQuality.from_state(state["quality"])
        proc.book = AlertBook.from_state(state["book"], proc.cfg.alerts)
        proc.rolling = {k: RollingMean.from_state(v) for k, v in state["rolling"].items()}
        for attr in ("last_logger_minute", "clock_event", "clock_arrival"):
            value = state.get(attr)
            setattr(proc, attr, _dt(value) if value else None)
        proc.cadence_min = Cadence.from_state(state.get("cadence_min", {}))
        proc.cadence_rt = Cadence.from_state(state.get("cadence_rt", {}), RTD_RESOLUTION_S)
        proc.declared_min_s = state.get("declared_min_s")
        proc.declared_rt_s = state.get("declared_rt_s")
        proc.flue_gas = bool(state.get("flue_gas", True))
        proc.registry_conflict = bool(state.get("registry_conflict", False))
        proc.mismatch = dict(state.get("mismatch", {}))
        proc.archived = dict(state.get("archived", {}))
        return proc


def _factor_values(values: dict[str, FactorReading]) -> dict[str, FactorValue]:
    return {code: (f.value, f.flag, f.zs) for code, f in values.items()}


def _hour_content(items: tuple[WindowItem, ...]) -> HourContent:
    content = HourContent()
    for entry in items:
        if is_logger_record(entry.item):
            content.logger = LoggerRecordItem.from_json(entry.item)
        else:
            content.minutes.append(MinuteItem.from_json(entry.item))
    return content


def _closed(start: datetime, end: datetime, revision: int, items: dict[str, list[Any]]
            ) -> ClosedWindow:
    entries = sorted(
        (WindowItem(key=k, event_time=_dt(v[0]), item=v[1]) for k, v in items.items()),
        key=lambda i: (i.event_time, i.key),
    )
    return ClosedWindow(start=start, end=end, revision=revision, final=True, items=tuple(entries))


def _limits_on(source: LimitsSource, ts: datetime) -> StackLimits:
    return source if isinstance(source, StackLimits) else source(day_of(ts))


def day_of(ts: datetime) -> date:
    """Local (+08:00) calendar day of a timestamp (limits are effective-dated by day)."""
    return ts.astimezone(CST).date()


__all__ = [
    "AddStatus",
    "MemoryArchive",
    "Outputs",
    "ProcessorConfig",
    "Rule",
    "StackProcessor",
    "WindowArchive",
    "day_of",
]
