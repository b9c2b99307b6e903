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
from typing import Any

from stackwatch.alerts import (
    AlertBook,
    AlertEvent,
    Condition,
    Rule,
    day_conditions,
    hour_conditions,
    provisional_condition,
)
from stackwatch.averaging import (
    Period,
    Sample,
    aggregate,
)
from stackwatch.beijing_time import CST
from stackwatch.compliance import (
    DayValue,
    Evidence,
    HourValue,
    PeriodVerdict,
    RollingMean,
    judge_day,
    judge_hour,
)
from stackwatch.emission_totals import EmissionTotals
from stackwatch.intervals import (
    Cadence,
    IntervalLabel,
    placement,
    record_span,
    snap_minutes,
    snap_stamp,
)
from stackwatch.models import AggregateRecord, FactorReading, Reading, ReadingKind
from stackwatch.period_means import (
    STOP_FLAG,
    FactorPeriod,
    aggregate_record,
    day_from_hours,
    from_logger_record,
    hour_from_minutes,
)
from stackwatch.platform_clock import RECEIPT_TIME, ClockReference
from stackwatch.processor_config import Outputs, ProcessorConfig, StreamQualityConfig
from stackwatch.quality import (
    DEFAULT_CONCENTRATION_FACTORS,
    QualityConfig,
    StackQuality,
    logger_hour_mismatch,
    zs_mismatch,
)
from stackwatch.stack_limits import StackLimits
from stackwatch.window_archive import MemoryArchive, WindowArchive, archived, reopened
from stackwatch.window_items import (
    LOGGER_RECORD_KEY,
    FactorValue,
    HourContent,
    HourItem,
    LoggerRecordItem,
    MinuteItem,
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
        self.pending_jump: datetime | None = None
        self.pending_from_start = False
        self.cadence_min = Cadence()
        self.cadence_rt = Cadence(resolution_s=RTD_RESOLUTION_S)
        self.declared_min_s: int | None = None
        self.declared_rt_s: int | None = None
        self.flue_gas = False
        self.registry_conflict = False
        self.encryption_problem = False
        self.mismatch: dict[str, bool] = {}
        self.archived: dict[str, str] = {}
        self.totals = EmissionTotals()
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

    def _bounded(self, event_time: datetime, received_at: datetime, now: datetime | None
                 ) -> tuple[datetime, bool]:
        """Where a frame may move the stack's clock.

        At most `clock_lead_tolerance` beyond where the clock stands (the receipt time, or the
        stack's own clock when a replay runs ahead of receipt): one future-dated frame cannot
        close hours early. A jump further ahead is held back until the next frame confirms
        the new timeline (a logger back from an outage in an accelerated replay); a frame
        back on the old timeline shows it was a glitch. Returns the clock time and whether it
        confirms a jump held back since the stack's first frame (a clock running ahead of
        receipt, not a silence).
        """
        base = received_at if now is None else max(received_at, now)
        limit = base + self.cfg.clock_lead_tolerance
        if event_time <= limit:
            self.pending_jump = None
            return event_time, False
        if self.pending_jump is not None and event_time >= self.pending_jump:
            self.pending_jump = None
            return event_time, self.pending_from_start
        self.pending_jump = event_time
        self.pending_from_start = now is None
        return limit, False

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
        now = self.event_clock(reading.received_at)
        clock_time: datetime | None
        if event_time is not None:
            # A confirmed jump from the first frames corrects a clock that started at the
            # receipt time: the logger was heard all along, its clock just runs ahead.
            clock_time, corrected = self._bounded(event_time, reading.received_at, now)
        else:
            clock_time, corrected = now, False
        if clock_time is not None:
            if corrected:
                self.quality.offline.last_frame_at = None
            else:
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
        self._check_encryption(reading, clock_time or reading.received_at, out)
        if reading.flue_gas is None or reading.security is not None:
            return out  # an interaction frame or a refusal only shows the logger is alive
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

    def _check_encryption(self, reading: Reading, at: datetime, out: Outputs) -> None:
        """数据加密异常 while the gateway refuses the logger's frames on encryption grounds
        (HJ 212-2025); an accepted upload ends it."""
        problem = reading.security is not None
        if problem == self.encryption_problem:
            return
        if not problem and reading.kind is ReadingKind.EVENT:
            return  # a heartbeat proves nothing about its data uploads
        self.encryption_problem = problem
        self._observe(
            Condition(
                stack_id=self.stack_id,
                rule=Rule.ENCRYPTION,
                active=problem,
                at=at,
                evidence={
                    "reason": reading.security,
                    "cn": reading.cn,
                    "peer": reading.peer,
                    "encrypted": reading.encrypted,
                },
            ),
            out,
        )

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
                self.stack_id,
                code,
                snap,
                limit.limit_mg_m3,
                ref_o2=limit.ref_o2,
                limit_kind=limit.kind.value,
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
        return self._add_item("hour", at, key, item, limits, out)

    def _add_day_item(
        self, at: datetime, key: str, item: dict[str, Any], limits: LimitsSource, out: Outputs
    ) -> AddResult:
        return self._add_item("day", at, key, item, limits, out)

    def _add_item(
        self,
        kind: str,
        at: datetime,
        key: str,
        item: dict[str, Any],
        limits: LimitsSource,
        out: Outputs,
    ) -> AddResult:
        """Put an item in its hour or day window; a finalised one goes to back-fill."""
        windows = self.hours if kind == "hour" else self.days
        result = windows.add(at, item, key=key, arrival=self.clock_arrival)
        if result.status is AddStatus.TOO_LATE and result.window_start is not None:
            self._backfill(kind, result.window_start, key, at, item, limits, out)
        elif not result.accepted:
            out.late.append(f"{kind} item {key}: {result.reason or result.status.value}")
        return result

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
        closed = reopened(start, end, {"emissions": entry["emissions"], "items": items})
        self.archive.put(akey, {"emissions": closed.revision + 1, "items": items})
        self.archived[akey] = _iso(end + self.cfg.backfill_horizon)
        if kind == "hour":
            self._close_hour(closed, _limits_on(limits, start), out, late=True)
        else:
            self._close_day(closed, _limits_on(limits, start), out)

    def _archive_dropped(self) -> None:
        for kind, windows in (("hour", self.hours), ("day", self.days)):
            for closed in windows.dropped:
                akey = f"{kind}|{_iso(closed.start)}"
                self.archive.put(akey, archived(closed))
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
            record = aggregate_record(
                self.stack_id, code, FactorPeriod(agg, zs), limits, "platform", 0
            )
            out.aggregates.append(
                record.model_copy(
                    update={"period_end": closed.start + length, "coverage_minutes": None}
                )
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
        """Emit, judge and pass on to its day one closed hour (`provisional`: not ended yet,
        so not judged; `late`: a back-filled hour, judged as such)."""
        content = _hour_content(closed.items)
        rules = self.cfg.averaging
        if content.minutes:
            default_s = int(self.min_interval().total_seconds())
            means = hour_from_minutes(closed, content.minutes, rules, default_s)
        elif content.logger is not None:
            means = from_logger_record(closed, content.logger, Period.HOUR, rules)
        else:
            return
        logger = content.logger.values() if content.logger else {}
        key = _iso(closed.start)
        o2 = means.factors.get(O2)
        for code, factor in means.factors.items():
            verdict = None
            if not provisional:
                verdict = self._judge_hour(
                    factor, code, o2, limits, out, stopped=means.stopped, late=late
                )
            out.aggregates.append(
                aggregate_record(
                    self.stack_id, code, factor, limits, means.source, closed.revision,
                    stopped=means.stopped, logger_mean=logger.get(code),
                    verdicts=verdict.verdicts if verdict else (),
                )
            )
            if not provisional and any(c.factor == code for c in limits.permit_caps):
                self.totals.record_hour(code, closed.start, factor.mass_kg)
            item = factor.as_hour_item(means.source, means.stopped)
            self._add_day_item(closed.start, f"{key}|{code}", item.to_json(), limits, out)
        if limits.permit_caps and not provisional:
            conds = self.totals.conditions(self.stack_id, limits.permit_caps, closed.start)
            self._observe_all(conds, out)
        if content.minutes and logger and not provisional:
            computed = {
                code: f.agg.mean
                for code, f in means.factors.items()
                if f.agg.valid and f.agg.mean is not None
            }
            self._compare_logger_hour(closed.start, logger, computed, out, late=late)

    def _judge_hour(
        self,
        factor: FactorPeriod,
        code: str,
        o2: FactorPeriod | None,
        limits: StackLimits,
        out: Outputs,
        *,
        stopped: bool,
        late: bool,
    ) -> PeriodVerdict | None:
        factor_limits = limits.by_factor.get(code)
        if not factor_limits:
            return None
        agg, zs_mean = factor.agg, factor.zs_mean
        o2_agg = o2.agg if o2 is not None else None
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
        return verdict

    def _close_day(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        hours: dict[str, list[tuple[WindowItem, HourItem]]] = {}
        logger: LoggerRecordItem | None = None
        for entry in closed.items:
            if is_logger_record(entry.item):
                logger = LoggerRecordItem.from_json(entry.item)
                continue
            code = entry.key.partition("|")[2]
            hours.setdefault(code, []).append((entry, HourItem.from_json(entry.item)))
        rules = self.cfg.averaging
        if hours:
            days = list(day_from_hours(closed, hours, rules).values())
        elif logger is not None:
            days = [from_logger_record(closed, logger, Period.DAY, rules)]
        else:
            return
        logger_values = logger.values() if logger else {}
        for means in days:
            for code, factor in means.factors.items():
                verdict = self._judge_day(factor, code, limits, out, stopped=means.stopped)
                out.aggregates.append(
                    aggregate_record(
                        self.stack_id, code, factor, limits, means.source, closed.revision,
                        stopped=means.stopped, logger_mean=logger_values.get(code),
                        verdicts=verdict.verdicts if verdict else (),
                    )
                )
                if any(c.factor == code for c in limits.permit_caps):
                    self.totals.record_day(code, closed.start, factor.mass_kg)

    def _judge_day(
        self, factor: FactorPeriod, code: str, limits: StackLimits, out: Outputs, *, stopped: bool
    ) -> PeriodVerdict | None:
        """A day against the daily limits of its factor, where any exist."""
        day_limits = [lim for lim in limits.by_factor.get(code, ()) if lim.averaging == "day"]
        if not day_limits:
            return None
        agg = factor.agg
        day = DayValue(
            stack_id=self.stack_id,
            factor=code,
            start=agg.start,
            mean_converted=factor.zs_mean,
            mean_measured=agg.mean if agg.valid else None,
            valid=agg.valid,
            valid_hours=min(agg.count_valid, 24),
            flag=agg.flag,
            ref_o2=limits.ref_o2,
            production=not stopped,
        )
        verdict = judge_day(day, day_limits)
        self._observe_all(day_conditions(day, verdict), out)
        return verdict

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
            "pending_jump": _iso(self.pending_jump) if self.pending_jump else None,
            "pending_from_start": self.pending_from_start,
            "cadence_min": self.cadence_min.to_state(),
            "cadence_rt": self.cadence_rt.to_state(),
            "declared_min_s": self.declared_min_s,
            "declared_rt_s": self.declared_rt_s,
            "flue_gas": self.flue_gas,
            "registry_conflict": self.registry_conflict,
            "encryption_problem": self.encryption_problem,
            # Copies: the snapshot is stored as is and must not change with later processing.
            "mismatch": dict(self.mismatch),
            "archived": dict(self.archived),
            "totals": self.totals.to_state(),
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
        for attr in ("last_logger_minute", "clock_event", "clock_arrival", "pending_jump"):
            value = state.get(attr)
            setattr(proc, attr, _dt(value) if value else None)
        proc.cadence_min = Cadence.from_state(state.get("cadence_min", {}))
        proc.cadence_rt = Cadence.from_state(state.get("cadence_rt", {}), RTD_RESOLUTION_S)
        proc.declared_min_s = state.get("declared_min_s")
        proc.declared_rt_s = state.get("declared_rt_s")
        proc.flue_gas = bool(state.get("flue_gas", True))
        proc.registry_conflict = bool(state.get("registry_conflict", False))
        proc.encryption_problem = bool(state.get("encryption_problem", False))
        proc.pending_from_start = bool(state.get("pending_from_start", False))
        proc.mismatch = dict(state.get("mismatch", {}))
        proc.archived = dict(state.get("archived", {}))
        proc.totals = EmissionTotals.from_state(state.get("totals"))
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
    "StreamQualityConfig",
    "WindowArchive",
    "day_of",
]
