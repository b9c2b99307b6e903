"""Real data loggers (issue 12): 10-minute data, end labels, stopped stacks, units, back-fill.

Frames are written the way the 2016 provincial capture in ../shared/data writes them
(HJ/T 212-2005: no QN or Flag, 2005 factor codes, 17-digit DataTime, no data flags) and go
through the normaliser into the processor, so each test covers the whole pure path. Every
expected number is worked out by hand in the test.

Stack: a cement kiln tail judged at 10 % O2 with SO2 limits 35 (ultra-low) and 100
(standard). O2 is 10.0 % unless a test says otherwise, so the converted SO2 equals the
measured one (factor (21 − 10)/(21 − 10) = 1).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stackwatch.beijing_time import CST
from stackwatch.hj212 import frame_segment
from stackwatch.models import (
    AggregateRecord,
    AlertEvent,
    EventKind,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
    Verdict,
)
from stackwatch.normalise import NormaliseConfig, reading_from_raw
from stackwatch.processor import Outputs, ProcessorConfig, StackProcessor
from stackwatch.registry import StackInfo
from stackwatch.stack_limits import StackLimits
from tests.unit.test_processor import LIMITS  # the kiln's SO2 limits: ULE 35, standard 100

SO2, O2, FLOW, PRESSURE = "a21026", "a19001", "a00000", "a01013"
T0 = datetime(2016, 8, 24, 10, 0, tzinfo=CST)
MIN = timedelta(minutes=1)
KILN = StackInfo(stack_id="kiln-1", mn="LD130100000001", sector="cement", process="kiln_tail")


def frame2005(cn: str, stamp: datetime, fields: str, *, st: str = "31", mn: str = KILN.mn) -> str:
    """A frame as the 2016 capture's loggers send it."""
    seg = f"ST={st};CN={cn};PW=123456;MN={mn};CP=&&DataTime={stamp:%Y%m%d%H%M%S}000;{fields}&&"
    return frame_segment(seg)


def reading(
    text: str,
    received_at: datetime,
    stack: StackInfo = KILN,
    cfg: NormaliseConfig | None = None,
) -> Reading:
    raw = RawFrame(text=text, received_at=received_at, peer="10.0.0.1:4000", mn=stack.mn,
                   verdict=Verdict.ACCEPTED)
    result = reading_from_raw(raw, {stack.mn: stack}.get, lambda _s, _t: 10.0, cfg)
    assert isinstance(result, Reading), result
    return result


def minute(stamp: datetime, so2: float, *, o2: float = 10.0, flow: float = 30.0,
           nox: float | None = None, stack: StackInfo = KILN,
           lag: timedelta = timedelta(seconds=20)) -> Reading:
    """A 2051 record (2005 codes: 02 SO2, 03 NOx, S01 O2, B02 flow) received `lag` after its
    stamp."""
    fields = f"02-Min={so2},02-Avg={so2},02-Max={so2};S01-Avg={o2};B02-Avg={flow}"
    if nox is not None:
        fields += f";03-Avg={nox}"
    return reading(frame2005("2051", stamp, fields), stamp + lag, stack)


def run(proc: StackProcessor, readings: list[Reading], limits: StackLimits = LIMITS) -> Outputs:
    out = Outputs()
    for r in readings:
        out.extend(proc.on_reading(r, limits))
    return out


def hours(out: Outputs, factor: str = SO2) -> list[AggregateRecord]:
    return [a for a in out.aggregates if a.period == "hour" and a.factor == factor]


def raised(out: Outputs) -> list[tuple[Rule, str | None]]:
    return [(e.rule, e.factor) for e in out.alerts if e.kind is EventKind.RAISE]


def events(out: Outputs, rule: Rule) -> list[AlertEvent]:
    return [e for e in out.alerts if e.rule is rule]


# ----------------------------------------------------------------------------- intervals


def test_ten_minute_end_labelled_hour_is_valid_and_matches_the_loggers_own_hour() -> None:
    # 2005 default label = interval END: records 10:10 … 11:00 form the hour 10:00–11:00, as
    # the logger's own 2061 stamped 11:00 does. Six records × 10 min = 60 minutes covered.
    # SO2 10, 12, …, 20 → mean 90/6 = 15.0; the logger's hour says 15.0 too.
    proc = StackProcessor("kiln-1")
    stamps = [T0 + 10 * (i + 1) * MIN for i in range(6)]
    recs = [minute(t, 10.0 + 2 * i) for i, t in enumerate(stamps)]
    hour_record = reading(frame2005("2061", T0 + 60 * MIN, "02-Avg=15.0;S01-Avg=10.0"),
                          T0 + 60 * MIN + timedelta(seconds=30))
    out = run(proc, [*recs, hour_record, minute(T0 + 70 * MIN, 10.0)])
    (hour,) = hours(out)
    assert hour.period_start == T0 and hour.valid
    assert hour.mean == 15.0 and hour.zs_mean == 15.0 and hour.logger_mean == 15.0
    assert hour.coverage_minutes == 60.0 and hour.source == "platform"
    assert (hour.valid_count, hour.total_count) == (6, 6)
    # The record stamped 10:40 covers 10:30–10:40 (end label, interval inferred: 10 min).
    (m40,) = [a for a in out.aggregates if a.period == "minute" and a.factor == SO2
              and a.mean == 16.0]
    assert (m40.period_start, m40.period_end) == (T0 + 30 * MIN, T0 + 40 * MIN)
    assert (m40.source, m40.coverage_minutes) == ("logger", 10.0)
    assert Rule.HOUR_INCOMPLETE not in [r for r, _ in raised(out)]
    assert Rule.LOGGER_HOUR_MISMATCH not in [r for r, _ in raised(out)]


def test_the_registry_label_decides_which_hour_a_record_belongs_to() -> None:
    # The same records read as START-labelled (the registry says so): 10:10 … 10:50 are the
    # hour 10:00 (5 records, 10:10–11:00 = 50 minutes covered ≥ 45: valid), 11:00 opens the
    # next one. Mean (10 + 12 + 14 + 16 + 18)/5 = 14.0.
    stack = KILN.model_copy(update={"interval_label": "start"})
    proc = StackProcessor("kiln-1")
    recs = [minute(T0 + 10 * (i + 1) * MIN, 10.0 + 2 * i, stack=stack) for i in range(6)]
    out = run(proc, [*recs, minute(T0 + 70 * MIN, 10.0, stack=stack),
                     minute(T0 + 80 * MIN, 10.0, stack=stack)])
    (hour,) = hours(out)
    assert hour.valid and hour.mean == 14.0 and hour.coverage_minutes == 50.0


def test_forty_minutes_of_ten_minute_data_is_an_incomplete_hour() -> None:
    # Four records cover 40 minutes < 45: invalid, and the reason names the minutes.
    proc = StackProcessor("kiln-1")
    recs = [minute(T0 + 10 * (i + 1) * MIN, 20.0) for i in (0, 1, 2, 3)]
    out = run(proc, [*recs, minute(T0 + 70 * MIN, 20.0), minute(T0 + 80 * MIN, 20.0)])
    (hour,) = hours(out)
    assert not hour.valid and hour.mean is None and hour.coverage_minutes == 40.0
    assert hour.invalid_reason is not None
    assert "only 40 minutes covered by valid minute data (4 records) of 45" in hour.invalid_reason
    assert (Rule.HOUR_INCOMPLETE, SO2) in raised(out)


def test_a_ten_minute_logger_is_never_offline_between_uploads() -> None:
    # Offline timeout = max(10 min, 3 × its 10-minute interval) = 30 min. Two hours of
    # uploads every 10 minutes with a timer every minute: no offline. Then silence after the
    # record stamped 12:00: offline exactly at 12:00 + 30 min.
    proc = StackProcessor("kiln-1", ProcessorConfig())
    out = Outputs()
    for i in range(1, 13):
        stamp = T0 + 10 * i * MIN
        out.extend(proc.on_reading(minute(stamp, 20.0), LIMITS))
        for k in range(1, 10):
            out.extend(proc.tick(stamp + timedelta(seconds=20) + k * MIN, LIMITS))
    assert events(out, Rule.OFFLINE) == []
    for k in range(10, 40):
        out.extend(proc.tick(T0 + 120 * MIN + timedelta(seconds=20) + k * MIN, LIMITS))
    (offline,) = events(out, Rule.OFFLINE)
    assert offline.kind is EventKind.RAISE and offline.at == T0 + 150 * MIN


def test_traffic_that_contradicts_the_registered_interval_raises_one_warning() -> None:
    # Registered MinInterval 1 min, but the logger sends every 10 minutes: one
    # registry_mismatch alert (not one per record), evidence naming both values.
    stack = KILN.model_copy(update={"min_interval_min": 1})
    proc = StackProcessor("kiln-1")
    out = run(proc, [minute(T0 + 10 * i * MIN, 20.0, stack=stack) for i in range(1, 9)])
    (alert,) = [e for e in out.alerts if e.rule is Rule.REGISTRY_MISMATCH]
    assert alert.kind is EventKind.RAISE
    assert (alert.evidence["registry"], alert.evidence["observed"]) == (1.0, 10.0)


# ----------------------------------------------------------------------------- stopped stacks


def test_stopped_stack_gives_stopped_hours_without_zero_or_flatline_alarms() -> None:
    # O2 20.8 % with flow 0 (停运), SO2 0.0 and NOx 3.0 unchanged for two hours of 10-minute
    # data. Running, they would be 零值 and 恒值 after 60 minutes (checked below); stopped,
    # they are not alarms, nothing is O2-converted, and the hours are stopped, not missing.
    def two_hours(o2: float, flow: float) -> Outputs:
        proc = StackProcessor("kiln-1")
        recs = [minute(T0 + 10 * i * MIN, 0.0, o2=o2, flow=flow, nox=3.0) for i in range(1, 15)]
        return run(proc, recs)

    stopped = two_hours(20.8, 0.0)
    assert raised(stopped) == []
    mins = [a for a in stopped.aggregates if a.period == "minute" and a.factor == SO2]
    assert mins and all(m.stopped and not m.valid and m.zs_mean is None for m in mins)
    assert all(m.invalid_reason and "停运" in m.invalid_reason for m in mins)
    (h10, h11) = hours(stopped)
    assert h10.stopped and h11.stopped and not h10.valid
    running = two_hours(10.0, 30.0)
    assert {(Rule.ZERO, SO2), (Rule.FLATLINE, "a21002")} <= set(raised(running))
    assert (Rule.FLATLINE, SO2) not in raised(running)  # a run of zeros is 零值 only
    assert not any(h.stopped for h in hours(running))


def test_stop_needs_no_flow_not_just_air_oxygen() -> None:
    # A dust stack runs at air O2 with a real flow: not stopped.
    assert not minute(T0, 5.0, o2=20.8, flow=35.0).stopped
    assert minute(T0, 5.0, o2=20.8, flow=0.0).stopped


# ----------------------------------------------------------------------------- units, O2


def test_pressure_in_pa_is_converted_and_a_misread_unit_is_refused() -> None:
    # Eq. 31 with flow 10 m³/s, 0 °C, humidity 0, static pressure 1013.25 Pa:
    # Q = 36 000 × 273/273 × (101 325 + 1 013.25)/101 325 × 1 = 36 000 × 1.01 = 36 360 m³/h.
    # SO2 100 mg/m³ → G = 100 × 36 360 × 10⁻⁶ = 3.636 kg/h.
    fields = "02-Avg=100;S01-Avg=10;B02-Avg=10;S03-Avg=0;S05-Avg=0;S08-Avg=1013.25"
    text = frame2005("2051", T0, fields)
    in_pa = reading(text, T0 + MIN, KILN.model_copy(update={"pressure_unit": "Pa"}))
    assert in_pa.values[PRESSURE].value == pytest.approx(1.01325)
    assert in_pa.flow_std_dry_m3_h == pytest.approx(36360.0)
    assert in_pa.emission_kg_h[SO2] == pytest.approx(3.636)
    absolute = frame2005("2051", T0, fields.replace("S08-Avg=1013.25", "S08-Avg=102338.25"))
    in_pa_abs = reading(absolute, T0 + MIN, KILN.model_copy(update={"pressure_unit": "Pa_abs"}))
    assert in_pa_abs.flow_std_dry_m3_h == pytest.approx(36360.0)
    # Read as kPa (the HJ 212 unit), 1013.25 kPa of static pressure is implausible: no flow,
    # no kg/h — not a flow inflated (101 325 + 1 013 250)/101 325 ≈ 11×.
    as_kpa = reading(text, T0 + MIN)
    assert as_kpa.flow_std_dry_m3_h is None and as_kpa.emission_kg_h == {}
    assert as_kpa.values[PRESSURE].issue == "pressure_implausible"
    assert any(w.startswith("pressure_implausible") for w in as_kpa.warnings)


def test_zero_oxygen_is_flagged_and_not_used_for_conversion() -> None:
    # 14 loggers of the capture send O2 = 0 (no analyser). Eq. 28 with 0 % would turn 8 into
    # 8 × 11/21 = 4.19: refused instead. With 12 % O2: 8 × (21 − 10)/(21 − 12) = 88/9.
    zero = minute(T0, 8.0, o2=0.0)
    assert zero.values[SO2].zs is None and zero.values[SO2].zs_issue == "o2_implausible"
    assert any(w.startswith("o2_implausible") for w in zero.warnings)
    assert minute(T0, 8.0, o2=12.0).values[SO2].zs == pytest.approx(88 / 9)


def test_mass_only_for_pollutants_with_a_valid_flow() -> None:
    # Temperature gets no kg/h; SO2 does: 20 mg/m³ × 36 000 m³/h × 10⁻⁶ = 0.72 kg/h.
    fields = "02-Avg=20;S01-Avg=10;S03-Avg=120;B02-Avg=10"
    r = reading(frame2005("2051", T0, fields), T0 + MIN,
                cfg=NormaliseConfig(flow_basis="std_dry_m3_s"))
    assert r.emission_kg_h == {SO2: pytest.approx(0.72)}
    proc = StackProcessor("kiln-1")
    stack = KILN.model_copy(update={"interval_label": "start"})
    recs = [reading(frame2005("2051", T0 + 10 * i * MIN, fields), T0 + 10 * (i + 1) * MIN,
                    stack, NormaliseConfig(flow_basis="std_dry_m3_s")) for i in range(8)]
    out = run(proc, recs)
    (so2,) = hours(out)
    assert so2.mass_kg == pytest.approx(0.72)  # × 1 h
    (temperature,) = hours(out, "a01012")
    assert temperature.mass_kg is None


# ----------------------------------------------------------------------------- clocks


def test_a_single_future_dated_frame_does_not_close_the_hour_early() -> None:
    # Records 10:00–10:30 (start-labelled, 10 min), then a real-time frame dated 13:00 arrives
    # at 10:41 (a clock glitch), then 10:40 and 10:50. The glitch may move the clock only to
    # receipt + 5 min, so the hour 10:00 is still open for 10:40 and 10:50: 60 minutes, valid.
    # Had the clock jumped to 13:00, the hour would have closed with 40 minutes: invalid.
    stack = KILN.model_copy(update={"interval_label": "start", "min_interval_min": 10})
    proc = StackProcessor("kiln-1")
    recs = [minute(T0 + 10 * i * MIN, 20.0, stack=stack, lag=10 * MIN + timedelta(seconds=20))
            for i in range(4)]
    glitch = reading(frame2005("2011", T0 + 180 * MIN, "02-Rtd=20;S01-Rtd=10"),
                     T0 + 41 * MIN, stack)
    late = [minute(T0 + 10 * i * MIN, 20.0, stack=stack, lag=10 * MIN + timedelta(seconds=20))
            for i in (4, 5, 6, 7)]
    out = run(proc, [*recs, glitch])
    assert hours(out) == []
    out = run(proc, late)
    (hour,) = hours(out)
    assert hour.valid and hour.coverage_minutes == 60.0 and hour.revision == 0


def test_the_last_hour_and_day_of_a_replay_close_when_the_input_goes_idle() -> None:
    # A replay ends after the record 10:50 (start-labelled, covering 10:50–11:00). Flushed a
    # minute later (clock 11:01): the hour 10:00 has ended, so it is closed and judged (valid,
    # mean 20, compliant), and the day in progress is emitted provisionally (1 of 20 hours).
    stack = KILN.model_copy(update={"interval_label": "start", "min_interval_min": 10})
    proc = StackProcessor("kiln-1")
    last = T0 + 50 * MIN
    recs = [minute(T0 + 10 * i * MIN, 20.0, stack=stack, lag=10 * MIN) for i in range(6)]
    out = run(proc, recs)
    assert hours(out) == []
    flushed = proc.flush(last + 10 * MIN + MIN, LIMITS)
    (hour,) = hours(flushed)
    assert hour.valid and hour.mean == 20.0
    assert (Rule.HOUR_INCOMPLETE, SO2) not in raised(flushed)
    (day,) = [a for a in flushed.aggregates if a.period == "day" and a.factor == SO2]
    assert not day.valid and day.valid_count == 1
    # Data after all: the hour 11:00 follows normally, the day re-emits with revision 1.
    more = run(proc, [minute(T0 + 10 * i * MIN, 30.0, stack=stack, lag=10 * MIN)
                      for i in range(6, 14)])
    (h11,) = hours(more)
    assert h11.mean == 30.0 and h11.revision == 0


# ----------------------------------------------------------------------------- back-fill


def test_backfill_six_hours_late_recomputes_and_judges_the_hour() -> None:
    # Hour 10:00 (start-labelled, 10 min): 10:00–10:20 arrive on time at SO2 50; 10:30–10:50
    # are buffered by the logger and re-sent six hours later. On time the hour is invalid
    # (30 minutes). The back-fill makes it valid, mean 50 > 35: a new revision, and the
    # exceedance nobody saw yet is raised (marked as back-filled), then clears after its hold.
    stack = KILN.model_copy(update={"interval_label": "start", "min_interval_min": 10})
    proc = StackProcessor("kiln-1")
    lag = 10 * MIN + timedelta(seconds=20)
    on_time = [minute(T0 + 10 * i * MIN, 50.0, stack=stack, lag=lag) for i in range(3)]
    later = [minute(T0 + 10 * i * MIN, 20.0, stack=stack, lag=lag) for i in range(6, 42)]
    out = run(proc, [*on_time, *later])
    (first,) = hours(out)[:1]
    assert first.period_start == T0 and not first.valid and first.revision == 0
    resend_at = T0 + 7 * 60 * MIN
    backfill = [minute(T0 + 10 * i * MIN, 50.0, stack=stack, lag=resend_at - T0)
                for i in (3, 4, 5)]
    out = run(proc, backfill)
    # Each re-sent record recomputes the hour: 40, 50, then 60 minutes covered.
    revised = [h for h in hours(out) if h.period_start == T0]
    assert [(h.revision, h.valid, h.coverage_minutes) for h in revised] == [
        (1, False, 40.0), (2, True, 50.0), (3, True, 60.0)
    ]
    assert revised[-1].mean == 50.0
    exceed = [e for e in out.alerts if e.rule is Rule.HOUR_EXCEEDANCE]
    assert [e.kind for e in exceed] == [EventKind.RAISE, EventKind.UPDATE]
    assert exceed[0].at == T0 + 60 * MIN and exceed[0].evidence["backfill"] is True
    # The same re-send again changes nothing.
    again = run(proc, backfill)
    assert hours(again) == [] and again.alerts == []
    # Data for an hour that ended more than 48 h before the stack's clock (≈ 17:00) is
    # reported as too late: the hour 2016-08-22 11:00 ended 54 h earlier.
    too_old = minute(T0 - 47 * 60 * MIN, 50.0, stack=stack, lag=54 * 60 * MIN)
    late = proc.on_reading(too_old, LIMITS)
    assert any("back-fill horizon" in reason for reason in late.late)


# ----------------------------------------------------------------------------- calibration


def _kiln_minute(start: datetime, so2: float, flag: str) -> Reading:
    return Reading(
        stack_id="kiln-1", mn=KILN.mn, cn="2051", kind=ReadingKind.MINUTE, sector="cement",
        process="kiln_tail", data_time=start, received_at=start + MIN, interval_label="start",
        interval_s=60, ref_o2=10.0, o2=10.0,
        values={SO2: FactorReading(value=so2, flag=flag, zs=so2),
                O2: FactorReading(value=10.0, flag=flag)},
    )


def test_a_calibration_hour_with_45_valid_minutes_still_raises_the_exceedance() -> None:
    # 45 N minutes at 40 + 15 C minutes (span gas 90): valid (45 ≥ 45 minutes), mean of the
    # valid minutes 40 > 35 → hour_exceedance. Flag D (75 % normal is not > 75 %) is recorded
    # and does not suppress it (only C/M/F do).
    proc = StackProcessor("kiln-1")
    recs = [_kiln_minute(T0 + i * MIN, 40.0 if i < 45 else 90.0, "N" if i < 45 else "C")
            for i in range(60)]
    out = run(proc, [*recs, *(_kiln_minute(T0 + (60 + i) * MIN, 20.0, "N") for i in range(4))])
    (hour,) = hours(out)
    assert hour.valid and hour.mean == 40.0 and hour.flag == "D"
    (exceed,) = [e for e in out.alerts if e.rule is Rule.HOUR_EXCEEDANCE]
    assert exceed.kind is EventKind.RAISE and exceed.value == 40.0


# ----------------------------------------------------------------------------- logger records


def test_a_logger_that_sends_only_hours_has_its_hours_stored_and_judged() -> None:
    # No 2051 at all: the logger's 2061 (end-labelled 11:00 = hour 10:00, SO2 60) is the hour,
    # source "logger", and 60 > 35 raises the exceedance when the hour closes.
    proc = StackProcessor("kiln-1")
    recs = [reading(frame2005("2061", T0 + h * 60 * MIN, "02-Avg=60;S01-Avg=10"),
                    T0 + h * 60 * MIN + timedelta(seconds=30)) for h in (1, 2)]
    out = run(proc, recs)
    (hour,) = hours(out)
    assert (hour.period_start, hour.source, hour.valid, hour.mean) == (T0, "logger", True, 60.0)
    assert hour.logger_mean == 60.0
    assert (Rule.HOUR_EXCEEDANCE, SO2) in raised(out)


def test_a_logger_whose_hours_keep_disagreeing_raises_one_alert() -> None:
    # Start-labelled minute data (registry) but the logger's 2061 stamped hh:00 means the hour
    # ENDING at hh:00 (shifted by one hour): SO2 steps 10, 20, 30, 40, 50 by hour, so each
    # logger record is 10 off the platform's hour. One logger_hour_mismatch, for the stack
    # (factor None), once 3 of the last 4 compared hours disagree — not one per hour.
    stack = KILN.model_copy(update={"interval_label": "start", "min_interval_min": 10})
    proc = StackProcessor("kiln-1")
    recs: list[Reading] = []
    for h in range(5):
        recs += [minute(T0 + (60 * h + 10 * i) * MIN, 10.0 * (h + 1), stack=stack, lag=10 * MIN)
                 for i in range(6)]
        recs.append(reading(frame2005("2061", T0 + 60 * h * MIN, f"02-Avg={10.0 * h}"),
                            T0 + 60 * (h + 1) * MIN, stack))
    out = run(proc, [*recs, minute(T0 + 300 * MIN, 10.0, stack=stack, lag=10 * MIN)])
    mismatch = [e for e in out.alerts if e.rule is Rule.LOGGER_HOUR_MISMATCH]
    assert [(e.kind, e.factor) for e in mismatch][:1] == [(EventKind.RAISE, None)]
    assert sum(1 for e in mismatch if e.kind is EventKind.RAISE) == 1


# ----------------------------------------------------------------------------- systems


def test_wastewater_readings_are_not_processed_as_flue_gas() -> None:
    # ST=32 (wastewater, 2005 codes B01 flow, 011 COD): kept as a reading, never averaged.
    water = reading(frame2005("2051", T0, "B01-Avg=4.69;011-Avg=70.0", st="32"), T0 + MIN)
    assert water.flue_gas is False
    proc = StackProcessor("kiln-1")
    out = run(proc, [water] * 3)
    assert out.aggregates == [] and out.alerts == []
    assert proc.clock_event is None


def test_a_realtime_only_logger_every_five_minutes_makes_valid_hours() -> None:
    # No 2051: minutes are derived from 2011 samples, and with RtdInterval 300 s each sample
    # stands for 5 minutes (one sample makes the minute; the minute covers 5). Twelve samples
    # at SO2 10, 20, …, 120 cover the hour: valid, mean 780/12 = 65.0 > 35 → exceedance.
    stack = KILN.model_copy(update={"rtd_interval_s": 300})
    proc = StackProcessor("kiln-1")
    samples = [
        reading(frame2005("2011", T0 + 5 * i * MIN + timedelta(seconds=10),
                          f"02-Rtd={10.0 * (i + 1)};S01-Rtd=10"),
                T0 + 5 * i * MIN + timedelta(seconds=15), stack)
        for i in range(12)
    ]
    out = run(proc, samples)
    out.extend(proc.tick(T0 + 64 * MIN, LIMITS))
    (hour,) = hours(out)
    assert hour.valid and hour.mean == 65.0 and hour.coverage_minutes == 60.0
    assert hour.source == "platform" and (Rule.HOUR_EXCEEDANCE, SO2) in raised(out)


def test_a_logger_that_sends_only_days_has_its_day_stored() -> None:
    # A 2031 stamped 2016-08-25 00:00 (2005 dialect: the END of the day) is the day 08-24,
    # SO2 12.5; with no hours to compute it from, it is the day's value (source logger).
    proc = StackProcessor("kiln-1")
    day_end = datetime(2016, 8, 25, tzinfo=CST)
    record = reading(frame2005("2031", day_end, "02-Avg=12.5;S01-Avg=10"), day_end + 5 * MIN)
    out = run(proc, [record])
    out.extend(proc.tick(day_end + 20 * MIN, LIMITS))
    (day,) = [a for a in out.aggregates if a.period == "day" and a.factor == SO2]
    assert (day.period_start, day.source, day.valid, day.mean) == (
        datetime(2016, 8, 24, tzinfo=CST), "logger", True, 12.5
    )


def test_an_accelerated_replay_follows_a_logger_back_from_an_outage() -> None:
    # Replayed fast (one frame a second on the wire): 10:00–10:50 (start-labelled, 10 min),
    # then the logger was silent for 70 minutes and resumes at 12:00. The jump to 12:10 is
    # held back (it could be one glitching frame); 12:10 confirms it. The silence is real in
    # the logger's own time: offline is raised (at the clock it had, + 30 min) and cleared.
    stack = KILN.model_copy(update={"interval_label": "start", "min_interval_min": 10})
    proc = StackProcessor("kiln-1")
    stamps = [T0 + 10 * i * MIN for i in range(6)] + [T0 + 120 * MIN, T0 + 130 * MIN]
    recs = [minute(t, 20.0, stack=stack, lag=(t - T0) / 600 + timedelta(seconds=1))
            for t in stamps]
    out = run(proc, recs)
    (hour,) = hours(out)
    assert hour.period_start == T0 and hour.valid and hour.coverage_minutes == 60.0
    assert proc.clock_event == T0 + 140 * MIN  # on the logger's new timeline
    offline = events(out, Rule.OFFLINE)
    assert [e.kind for e in offline] == [EventKind.RAISE, EventKind.CLEAR]


def test_a_clock_that_runs_ahead_from_the_start_is_followed_without_an_offline_alarm() -> None:
    # Live: the logger's clock is 90 minutes fast from its first frame. The first frame is
    # held at receipt + 5 min, the second confirms the logger's timeline; it was heard all
    # along, so nothing is offline.
    ahead = timedelta(minutes=90)
    proc = StackProcessor("kiln-1")
    recs = [minute(T0 + 10 * i * MIN + ahead, 20.0, lag=-ahead + timedelta(seconds=20))
            for i in range(1, 8)]
    out = run(proc, recs)
    assert events(out, Rule.OFFLINE) == []
    assert proc.clock_event == T0 + 70 * MIN + ahead
