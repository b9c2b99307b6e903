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

Layers (each module one concern, all sharing one state): `stackwatch.processor_state` (state,
clock, snapshot), `stackwatch.processor_windows` (window routing, back-fill),
`stackwatch.period_closing` (hours and days closed and judged), this module (the inputs);
window items are typed in `stackwatch.window_items`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stackwatch.alerts import Condition
from stackwatch.intervals import IntervalLabel, placement, record_span, snap_minutes
from stackwatch.models import AggregateRecord, AlertEvent, FactorReading, Reading, ReadingKind, Rule
from stackwatch.period_closing import PeriodClosing
from stackwatch.platform_clock import RECEIPT_TIME, ClockReference
from stackwatch.processor_config import Outputs, ProcessorConfig, StreamQualityConfig
from stackwatch.processor_state import LimitsSource, day_of, iso, limits_on
from stackwatch.processor_windows import PeriodKind
from stackwatch.quality import zs_mismatch
from stackwatch.window_archive import MemoryArchive, WindowArchive
from stackwatch.window_items import (
    LOGGER_RECORD_KEY,
    FactorValue,
    LoggerRecordItem,
    MinuteItem,
    RealtimeSample,
)
from stackwatch.windows import AddStatus


class StackProcessor(PeriodClosing):
    """All per-stack state and rules; see the module docstring."""

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
            self._close_realtime_minute(closed, limits_on(limits, closed.start), out)
        for closed in self.hours.flush():
            provisional = closed.end > clock
            self._close_hour(closed, limits_on(limits, closed.start), out, provisional=provisional)
        for closed in self.days.flush():
            self._close_day(closed, limits_on(limits, closed.start), out)
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

    # ------------------------------------------------------------------ readings

    def _on_realtime(self, reading: Reading, out: Outputs) -> None:
        assert reading.data_time is not None
        if self.last_logger_minute is not None and (
            reading.data_time - self.last_logger_minute < self.cfg.logger_minutes_horizon
        ):
            return  # the logger sends official minutes: no minute is derived from samples
        sample = RealtimeSample.encode(reading.values, reading.flow_std_dry_m3_h, reading.stopped)
        result = self.rt.add(reading.data_time, sample, arrival=reading.received_at)
        if not result.accepted:
            out.late.append(f"realtime {iso(reading.data_time)}: {result.reason}")

    def _on_logger_minute(self, reading: Reading, limits: LimitsSource, out: Outputs) -> None:
        stamp = self._stamp(reading)
        assert stamp is not None
        self._check_registry(stamp, out)
        label: IntervalLabel = reading.interval_label or "start"
        length = self._length(reading)
        start, end = record_span(stamp, length, label)
        stack_limits = limits_on(limits, start)
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
        kind: PeriodKind = "hour" if reading.kind is ReadingKind.HOUR else "day"
        self._add_item(kind, placement(stamp, label), LOGGER_RECORD_KEY, item, limits, out)

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


def _factor_values(values: dict[str, FactorReading]) -> dict[str, FactorValue]:
    return {code: (f.value, f.flag, f.zs) for code, f in values.items()}


__all__ = [
    "AddStatus",
    "LimitsSource",
    "MemoryArchive",
    "Outputs",
    "ProcessorConfig",
    "Rule",
    "StackProcessor",
    "StreamQualityConfig",
    "WindowArchive",
    "day_of",
]
