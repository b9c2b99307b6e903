"""The per-stack stream processor: readings in; aggregates and alert events out (pure).

One `StackProcessor` holds everything the pipeline knows about one stack, as JSON-safe state
that a Faust table stores per stack (its changelog makes it survive a worker restart). The
Faust agent only decodes records, calls `on_reading` / `on_command` / `tick`, and emits what
they return; every rule lives here or below, tested with explicit timestamps.

How the field works and what this follows (HJ 212-2017 App. C/D, HJ 75):

* The data logger's minute data (CN 2051) are the official minute values. Hours are formed
  here from them (≥ 45 valid minutes, > 75 % normal flags ⇒ N), days from hours (≥ 20).
* For loggers that send only real-time data (CN 2011, common in older installations), minute
  values are derived from the real-time samples (`ProcessorConfig.realtime_min_samples`, default
  2 = both 30-s samples of the minute: the ≥ 12 rule of App. D is about the analyser's ≤ 5-s
  samples, which such a logger never uploads) and marked `source="platform"`. Once a stack has
  sent a 2051 within `logger_minutes_horizon`, derived minutes are not used for its hours.
* The logger's own hourly value (CN 2061) is compared with the hour computed here; a
  disagreement beyond tolerance raises `logger_hour_mismatch` (a data-quality alert).
* Windows close on an event-time watermark plus grace (`stackwatch.windows`), advanced by each
  reading and, for idle stacks, by `tick(now)` from a timer. A late minute within the allowed
  lateness re-emits the hour with a higher revision; later ones are reported.

Clock. Every lifecycle decision uses the stack's *event-time clock*: the event time of its
newest frame (DataTime + the upload's normal lag) advanced by the wall time elapsed since that
frame arrived. Live, that is the wall clock; in a replay at any speed it is the recorded time,
so replay gives the same aggregates and alerts as live.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

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
from stackwatch.compliance import HourValue, RollingMean, judge_hour
from stackwatch.models import AggregateRecord, Reading, ReadingKind
from stackwatch.quality import QualityConfig, StackQuality, logger_hour_mismatch, zs_mismatch
from stackwatch.stack_limits import StackLimits
from stackwatch.windows import AddStatus, ClosedWindow, EventTimeWindows

LimitsSource = StackLimits | Callable[[date], StackLimits]
"""The limits of the stack, or a function giving them for a (+08:00) day: an hour is judged
by the limits in force on the day the hour starts, even when it closes after midnight."""

FLOW = "a00000"
O2 = "a19001"

UPLOAD_LAG: dict[ReadingKind, timedelta] = {
    ReadingKind.REALTIME: timedelta(0),
    ReadingKind.MINUTE: timedelta(minutes=1),
    ReadingKind.HOUR: timedelta(hours=1),
    ReadingKind.DAY: timedelta(days=1),
    ReadingKind.EVENT: timedelta(0),
}
"""How long after its DataTime an upload normally arrives (DataTime = interval start)."""


class StreamQualityConfig(QualityConfig):
    """Detector thresholds as the stream worker applies them.

    Offline after 10 minutes without any frame: loggers upload at least minute data, and a
    shorter timeout raises on ordinary network jitter (DOMAIN.md §3.3 leaves it to config).
    Defaults live on the class so a partial override from the environment keeps them.
    """

    upload_interval: timedelta = Field(
        default=timedelta(minutes=1), gt=timedelta(0), description="Slowest expected upload."
    )
    offline_missed_intervals: int = Field(
        default=10, ge=1, description="Offline after this many intervals with no frame."
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
        description="Minute data of hh:59 arrives just after the hour; wait this long.",
    )
    hour_lateness: timedelta = Field(
        default=timedelta(minutes=30),
        description="Late minutes up to this after the close re-emit a corrected hour.",
    )
    day_grace: timedelta = Field(
        default=timedelta(minutes=15), description="Wait after midnight (+08:00) to close a day."
    )
    day_lateness: timedelta = Field(
        default=timedelta(hours=2), description="Late hours up to this re-emit a corrected day."
    )
    max_clock_skew: timedelta | None = Field(
        default=timedelta(days=1),
        description="Readings dated further ahead of receipt are refused by the windows.",
    )
    realtime_min_samples: int = Field(
        default=2,
        ge=1,
        description="Real-time samples for a platform-derived minute (loggers without 2051).",
    )
    logger_minutes_horizon: timedelta = Field(
        default=timedelta(hours=2),
        description="After a logger minute (2051), derived minutes are ignored this long.",
    )
    provisional_min_minutes: int = Field(
        default=45, ge=1, description="Valid minutes before the rolling 60-min mean may alarm."
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


def _iso(ts: datetime) -> str:
    return ts.astimezone(CST).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


class StackProcessor:
    """All per-stack state and rules; see the module docstring."""

    def __init__(self, stack_id: str, cfg: ProcessorConfig | None = None) -> None:
        self.stack_id = stack_id
        self.cfg = cfg or ProcessorConfig()
        c = self.cfg
        self.rt = EventTimeWindows(
            timedelta(minutes=1), c.minute_grace, timedelta(0), max_clock_skew=c.max_clock_skew
        )
        self.hours = EventTimeWindows(
            timedelta(hours=1), c.hour_grace, c.hour_lateness, max_clock_skew=c.max_clock_skew
        )
        self.days = EventTimeWindows(
            timedelta(days=1), c.day_grace, c.day_lateness, max_clock_skew=c.max_clock_skew
        )
        self.quality = StackQuality.create(stack_id)
        self.book = AlertBook(c.alerts)
        self.rolling: dict[str, RollingMean] = {}
        self.logger_hours: dict[str, dict[str, float]] = {}
        self.emitted_hours: dict[str, dict[str, float]] = {}
        self.last_logger_minute: datetime | None = None
        self.clock_event: datetime | None = None
        self.clock_arrival: datetime | None = None

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

    # ------------------------------------------------------------------ inputs

    def on_reading(self, reading: Reading, limits: LimitsSource) -> Outputs:
        """Apply one normalised reading of this stack."""
        out = Outputs()
        lag = UPLOAD_LAG[reading.kind]
        event_time = (
            reading.data_time + lag if reading.data_time is not None else reading.received_at
        )
        skew = self.cfg.max_clock_skew
        if skew is not None and event_time > reading.received_at + skew:
            # A logger clock far ahead (the windows refuse its data) must not drag the stack's
            # event clock, and with it `offline` and alert clearing, into the future: the frame
            # only proves the logger is alive now.
            event_time = self.event_clock(reading.received_at) or reading.received_at
        out.extend(self._offline_gap(event_time))
        self._note_frame(event_time, reading.received_at)
        self._observe_all(
            self.quality.on_frame(event_time, self.cfg.quality),
            out,
        )
        if reading.data_time is not None and reading.kind is not ReadingKind.EVENT:
            self._observe_all(
                self.quality.clock.frame(
                    reading.data_time, reading.received_at, self.cfg.quality, lag
                ),
                out,
            )
        if reading.kind is ReadingKind.REALTIME:
            self._on_realtime(reading, out)
        elif reading.kind is ReadingKind.MINUTE:
            assert reading.data_time is not None
            self._on_logger_minute(reading, _limits_on(limits, reading.data_time), out)
        elif reading.kind is ReadingKind.HOUR:
            self._on_logger_hour(reading, out)
        out.extend(self._advance(None, limits))
        return out

    def on_ack(self, alert_id: str, by: str, reason: str, at: datetime) -> list[AlertEvent]:
        """An operator acknowledged an alert of this stack."""
        return self.book.ack(alert_id, by, reason, at)

    def tick(self, now: datetime, limits: LimitsSource) -> Outputs:
        """Timer: close idle windows, detect offline loggers, clear alerts past hold time."""
        out = Outputs()
        clock = self.event_clock(now)
        if clock is None:
            return out
        out.extend(self._offline_gap(clock))
        out.extend(self._advance(now, limits))
        out.alerts.extend(self.book.tick(clock))
        return out

    # ------------------------------------------------------------------ readings

    def _on_realtime(self, reading: Reading, out: Outputs) -> None:
        assert reading.data_time is not None
        item: dict[str, Any] = {code: [f.value, f.flag, f.zs] for code, f in reading.values.items()}
        if reading.flow_std_dry_m3_h is not None:
            item["_flow"] = reading.flow_std_dry_m3_h
        result = self.rt.add(reading.data_time, item, arrival=reading.received_at)
        if not result.accepted:
            out.late.append(f"realtime {_iso(reading.data_time)}: {result.reason}")

    def _on_logger_minute(self, reading: Reading, limits: StackLimits, out: Outputs) -> None:
        assert reading.data_time is not None
        start = reading.data_time
        self.last_logger_minute = max(start, self.last_logger_minute or start)
        factors = {code: (f.value, f.flag, f.zs) for code, f in reading.values.items()}
        valid_flags = self.cfg.averaging.flags.valid_flags
        for code, f in reading.values.items():
            valid = f.value is not None and f.flag in valid_flags
            reason = None
            if not valid:
                reason = "no value" if f.value is None else f"flag {f.flag} is not a valid flag"
            out.aggregates.append(
                AggregateRecord(
                    stack_id=self.stack_id,
                    factor=code,
                    period="minute",
                    period_start=start,
                    period_end=start + timedelta(minutes=1),
                    mean=f.value,
                    zs_mean=f.zs,
                    min=f.min,
                    max=f.max,
                    valid=valid,
                    invalid_reason=reason,
                    flag=f.flag,
                    valid_count=1 if valid else 0,
                    total_count=1,
                    ref_o2=limits.ref_o2,
                    source="logger",
                )
            )
            if f.logger_zs is not None and f.zs is not None:
                self._observe(
                    zs_mismatch(self.stack_id, code, start, f.logger_zs, f.zs, self.cfg.quality),
                    out,
                )
        self._minute_into_hour(start, factors, reading.flow_std_dry_m3_h, "logger", limits, out)

    def _on_logger_hour(self, reading: Reading, out: Outputs) -> None:
        assert reading.data_time is not None
        key = _iso(reading.data_time)
        values = {code: f.value for code, f in reading.values.items() if f.value is not None}
        self.logger_hours[key] = values
        computed = self.emitted_hours.get(key)
        if computed:
            self._compare_logger_hour(reading.data_time, values, computed, out)
        self._prune_hour_maps(reading.data_time)

    def _minute_into_hour(
        self,
        start: datetime,
        factors: dict[str, tuple[float | None, str, float | None]],
        flow: float | None,
        source: str,
        limits: StackLimits,
        out: Outputs,
    ) -> None:
        item: dict[str, Any] = {"src": source, "f": {c: list(v) for c, v in factors.items()}}
        if flow is not None:
            item["flow"] = flow
        result = self.hours.add(start, item, key=_iso(start), arrival=self.clock_arrival)
        if not result.accepted:
            out.late.append(f"minute {_iso(start)}: {result.reason or result.status.value}")
            return
        if result.status is AddStatus.DUPLICATE:
            return  # a re-delivered minute: its detectors and rolling mean already saw it
        for code, (value, flag, zs) in factors.items():
            self._observe_all(
                self.quality.on_value(code, start, value, flag, self.cfg.quality), out
            )
            limit = limits.ultra_low(code)
            if limit is None:
                continue
            basis_value = zs if limit.ref_o2 is not None else value
            valid = basis_value is not None and flag in self.cfg.averaging.flags.valid_flags
            rolling = self.rolling.setdefault(
                code, RollingMean(min_count=self.cfg.provisional_min_minutes)
            )
            snap = rolling.add(start + timedelta(minutes=1), basis_value, valid)
            cond = provisional_condition(
                self.stack_id, code, snap, limit.limit_mg_m3, ref_o2=limit.ref_o2
            )
            if cond is not None:
                self._observe(cond.model_copy(update={"flag": flag}), out)

    # ------------------------------------------------------------------ windows

    def _advance(self, now: datetime | None, limits: LimitsSource) -> Outputs:
        out = Outputs()
        for closed in self.rt.advance(self._wm(self.rt, now)):
            self._close_realtime_minute(closed, _limits_on(limits, closed.start), out)
        for closed in self.hours.advance(self._wm(self.hours, now)):
            self._close_hour(closed, _limits_on(limits, closed.start), out)
        # The day window's items are dated at their hour's *start* (an hour arrives ~1 h after
        # it), so its own watermark trails the stack's event time by an hour: drive it by the
        # hours' watermark too, which passes midnight + day_grace only after the last hour of
        # the day has closed (hour_grace < day_grace).
        day_wm = self._wm(self.days, now)
        hours_wm = self.hours.watermark
        if hours_wm is not None and (day_wm is None or hours_wm > day_wm):
            day_wm = hours_wm
        for closed in self.days.advance(day_wm):
            self._close_day(closed, _limits_on(limits, closed.start), out)
        return out

    @staticmethod
    def _wm(windows: EventTimeWindows, now: datetime | None) -> datetime | None:
        return None if now is None else windows.idle_watermark(now)

    def _close_realtime_minute(
        self, closed: ClosedWindow, limits: StackLimits, out: Outputs
    ) -> None:
        if closed.revision > 0:
            return  # a derived minute already fed its hour; late samples don't rewrite it
        if self.last_logger_minute is not None and (
            closed.start - self.last_logger_minute < self.cfg.logger_minutes_horizon
        ):
            return  # the logger sends official minutes: they win
        per_factor: dict[str, list[Sample]] = {}
        zs_factor: dict[str, list[Sample]] = {}
        flows: list[float] = []
        for item in closed.items:
            payload = item.item
            assert isinstance(payload, dict)
            for code, triple in payload.items():
                if code == "_flow":
                    assert isinstance(triple, int | float)
                    flows.append(float(triple))
                    continue
                assert isinstance(triple, list)
                value, flag, zs = triple
                per_factor.setdefault(code, []).append(
                    Sample(ts=item.event_time, value=value, flag=str(flag))
                )
                zs_factor.setdefault(code, []).append(
                    Sample(ts=item.event_time, value=zs, flag=str(flag))
                )
        rules = self.cfg.averaging.model_copy(
            update={"min_samples_per_minute": self.cfg.realtime_min_samples}
        )
        factors: dict[str, tuple[float | None, str, float | None]] = {}
        for code, samples in per_factor.items():
            agg = aggregate(samples, closed.start, Period.MINUTE, rules)
            zs_agg = aggregate(zs_factor[code], closed.start, Period.MINUTE, rules)
            value = agg.mean if agg.valid else None
            zs = zs_agg.mean if zs_agg.valid else None
            flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
            factors[code] = (value, flag, zs)
            out.aggregates.append(self._record(agg, code, zs, limits, "platform", 0))
        flow = sum(flows) / len(flows) if flows else None
        self._minute_into_hour(closed.start, factors, flow, "platform", limits, out)

    def _close_hour(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        samples: dict[str, list[Sample]] = {}
        zs_samples: dict[str, list[Sample]] = {}
        flows: list[Sample] = []
        sources: set[str] = set()
        for item in closed.items:
            payload = item.item
            assert isinstance(payload, dict)
            sources.add(str(payload.get("src", "logger")))
            fvals = payload.get("f", {})
            assert isinstance(fvals, dict)
            for code, triple in fvals.items():
                assert isinstance(triple, list)
                value, flag, zs = triple
                samples.setdefault(code, []).append(
                    Sample(ts=item.event_time, value=value, flag=str(flag))
                )
                zs_samples.setdefault(code, []).append(
                    Sample(ts=item.event_time, value=zs, flag=str(flag))
                )
            flow = payload.get("flow")
            if isinstance(flow, int | float):
                # The std-dry flow is derived from a00000: it carries that channel's flag, so
                # a faulty flow meter (D, M, …) yields no hourly flow and no mass (eq. 33).
                flow_triple = fvals.get(FLOW)
                flow_flag = str(flow_triple[1]) if isinstance(flow_triple, list) else "N"
                flows.append(Sample(ts=item.event_time, value=float(flow), flag=flow_flag))
        source = "logger" if sources == {"logger"} else "platform"
        rules = self.cfg.averaging
        flow_agg = aggregate(flows, closed.start, Period.HOUR, rules) if flows else None
        key = _iso(closed.start)
        computed: dict[str, float] = {}
        o2_agg = aggregate(samples[O2], closed.start, Period.HOUR, rules) if O2 in samples else None
        for code in sorted(samples):
            agg = aggregate(samples[code], closed.start, Period.HOUR, rules)
            zs_agg = aggregate(zs_samples[code], closed.start, Period.HOUR, rules)
            zs_mean = zs_agg.mean if zs_agg.valid else None
            mass = None
            if flow_agg is not None and code not in (FLOW, O2):
                em = emission_hour(agg, flow_agg)
                mass = em.kg if em.valid else None
            record = self._record(agg, code, zs_mean, limits, source, closed.revision, mass)
            record = record.model_copy(
                update={"logger_mean": self.logger_hours.get(key, {}).get(code)}
            )
            out.aggregates.append(record)
            if agg.valid and agg.mean is not None:
                computed[code] = agg.mean
            self._judge_hour(agg, code, zs_mean, o2_agg, limits, out)
            day_item: dict[str, Any] = {
                "v": agg.mean if agg.valid else None,
                "flag": agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag),
                "zs": zs_mean,
                "kg": mass,
                "src": source,
            }
            self.days.add(closed.start, day_item, key=f"{key}|{code}", arrival=self.clock_arrival)
        self.emitted_hours[key] = computed
        logger = self.logger_hours.get(key)
        if logger:
            self._compare_logger_hour(closed.start, logger, computed, out)
        self._prune_hour_maps(closed.start)

    def _judge_hour(
        self,
        agg: Aggregate,
        code: str,
        zs_mean: float | None,
        o2_agg: Aggregate | None,
        limits: StackLimits,
        out: Outputs,
    ) -> None:
        factor_limits = limits.by_factor.get(code)
        if not factor_limits:
            return
        flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
        hour = HourValue(
            stack_id=self.stack_id,
            factor=code,
            start=agg.start,
            mean_converted=zs_mean,
            mean_measured=agg.mean if agg.valid else None,
            valid=agg.valid,
            valid_minutes=min(agg.count_valid, 60),
            flag=flag,
            ref_o2=limits.ref_o2,
            o2_mean=o2_agg.mean if o2_agg is not None and o2_agg.valid else None,
        )
        verdict = judge_hour(hour, list(factor_limits))
        self._observe_all(hour_conditions(hour, verdict), out)

    def _close_day(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        per_factor: dict[str, list[Sample]] = {}
        zs: dict[str, list[Sample]] = {}
        kg: dict[str, float] = {}
        sources: dict[str, set[str]] = {}
        for item in closed.items:
            payload = item.item
            assert isinstance(payload, dict)
            code = item.key.partition("|")[2]
            sources.setdefault(code, set()).add(str(payload.get("src", "logger")))
            value = payload.get("v")
            flag = str(payload.get("flag", "N"))
            zs_value = payload.get("zs")
            per_factor.setdefault(code, []).append(
                Sample(ts=item.event_time, value=value, flag=flag)
            )
            zs.setdefault(code, []).append(Sample(ts=item.event_time, value=zs_value, flag=flag))
            mass = payload.get("kg")
            if isinstance(mass, int | float):
                kg[code] = kg.get(code, 0.0) + float(mass)
        for code in sorted(per_factor):
            agg = aggregate(per_factor[code], closed.start, Period.DAY, self.cfg.averaging)
            zs_agg = aggregate(zs[code], closed.start, Period.DAY, self.cfg.averaging)
            out.aggregates.append(
                self._record(
                    agg,
                    code,
                    zs_agg.mean if zs_agg.valid else None,
                    limits,
                    "logger" if sources[code] == {"logger"} else "platform",
                    closed.revision,
                    kg.get(code),
                )
            )

    def _record(
        self,
        agg: Aggregate,
        code: str,
        zs_mean: float | None,
        limits: StackLimits,
        source: str,
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
    ) -> None:
        for code in sorted(set(logger) & set(computed)):
            self._observe(
                logger_hour_mismatch(
                    self.stack_id, code, start, logger[code], computed[code], self.cfg.quality
                ),
                out,
            )

    def _prune_hour_maps(self, newest: datetime) -> None:
        horizon = newest - timedelta(hours=6)
        for mapping in (self.logger_hours, self.emitted_hours):
            for key in [k for k in mapping if _dt(k) < horizon]:
                del mapping[key]

    # ------------------------------------------------------------------ alerts

    def _offline_gap(self, clock: datetime) -> Outputs:
        """Raise `offline` at exactly last frame + timeout if the clock has passed it."""
        out = Outputs()
        last = self.quality.offline.last_frame_at
        if last is None:
            return out
        due = last + self.cfg.quality.offline_timeout
        if clock >= due:
            self._observe_all(self.quality.check(due, self.cfg.quality), out)
        return out

    def _observe(self, cond: Condition, out: Outputs) -> None:
        out.alerts.extend(self.book.observe(cond))

    def _observe_all(self, conds: list[Condition], out: Outputs) -> None:
        for cond in conds:
            self._observe(cond, out)

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """JSON-safe snapshot for the Faust table."""
        return {
            "v": 1,
            "stack_id": self.stack_id,
            "rt": self.rt.to_state(),
            "hours": self.hours.to_state(),
            "days": self.days.to_state(),
            "quality": self.quality.to_state(),
            "book": self.book.to_state(),
            "rolling": {k: r.to_state() for k, r in self.rolling.items()},
            # Copies: the snapshot is stored as is and must not change with later processing.
            "logger_hours": {k: dict(v) for k, v in self.logger_hours.items()},
            "emitted_hours": {k: dict(v) for k, v in self.emitted_hours.items()},
            "last_logger_minute": _iso(self.last_logger_minute)
            if self.last_logger_minute
            else None,
            "clock_event": _iso(self.clock_event) if self.clock_event else None,
            "clock_arrival": self.clock_arrival.isoformat() if self.clock_arrival else None,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], cfg: ProcessorConfig | None = None
    ) -> StackProcessor:
        """Rebuild from `to_state()` output."""
        proc = cls(str(state["stack_id"]), cfg)
        proc.rt = EventTimeWindows.from_state(state["rt"])
        proc.hours = EventTimeWindows.from_state(state["hours"])
        proc.days = EventTimeWindows.from_state(state["days"])
        proc.quality = StackQuality.from_state(state["quality"])
        proc.book = AlertBook.from_state(state["book"], proc.cfg.alerts)
        proc.rolling = {k: RollingMean.from_state(v) for k, v in state["rolling"].items()}
        proc.logger_hours = dict(state["logger_hours"])
        proc.emitted_hours = dict(state["emitted_hours"])
        for attr in ("last_logger_minute", "clock_event", "clock_arrival"):
            value = state.get(attr)
            setattr(proc, attr, _dt(value) if value else None)
        return proc


def _limits_on(source: LimitsSource, ts: datetime) -> StackLimits:
    return source if isinstance(source, StackLimits) else source(day_of(ts))


def day_of(ts: datetime) -> date:
    """Local (+08:00) calendar day of a timestamp (limits are effective-dated by day)."""
    return ts.astimezone(CST).date()


__all__ = [
    "AddStatus",
    "Outputs",
    "ProcessorConfig",
    "Rule",
    "StackProcessor",
    "day_of",
]
