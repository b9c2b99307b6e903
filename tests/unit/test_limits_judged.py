"""Every applicable limit judged on its own terms, through the shipped catalogue (issue 13).

Expected values are hand-computed in the comments (eq. 28 of HJ 212-2017 App. D: a value at
reference O2 r is measured × (21 − r)/(21 − O2)), from the limits the seed plans state.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from stackwatch.alerts import Severity, alert_title
from stackwatch.beijing_time import CST
from stackwatch.compliance import (
    Basis,
    DayValue,
    HourStatus,
    HourValue,
    Level,
    LimitKind,
    LimitVerdict,
    judge_day,
    judge_hour,
)
from stackwatch.emission_totals import EmissionTotals
from stackwatch.hj212 import build_frames
from stackwatch.limits.catalogue import default_catalogue
from stackwatch.models import (
    AggregateRecord,
    EventKind,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
)
from stackwatch.models import Verdict as FrameVerdict
from stackwatch.normalise import reading_from_raw
from stackwatch.processor import StackProcessor
from stackwatch.registry import PermitCap, ProgramPeriod, StackInfo
from stackwatch.stack_limits import LimitResolver, StackLimits

SO2, NOX, PM, O2 = "a21026", "a21002", "a34013", "a19001"
DAY = date(2026, 11, 2)
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=CST)
RESOLVER = LimitResolver(default_catalogue())

YANGQUAN_BOILER = StackInfo(
    stack_id="yq-boiler", mn="MNYQBOILER0001", sector="boiler", process="coal_boiler",
    province="山西", city="阳泉",
)
LUOYANG_SINTER = StackInfo(
    stack_id="ly-sinter", mn="MNLYSINTER0001", sector="steel", process="sinter",
    province="河南", city="洛阳",
)
SANMENXIA_WORKSHOP = StackInfo(
    stack_id="smx-mill-ws", mn="MNSMXWORKSHOP1", sector="cement", process="grinding_workshop",
    province="河南", city="三门峡",
)


def _by_row(verdicts: tuple[LimitVerdict, ...]) -> dict[str | None, LimitVerdict]:
    return {v.row_id: v for v in verdicts}


def _hour(stack: StackInfo, factor: str, *, measured: float, converted: float | None,
          ref_o2: float | None, o2: float | None = None) -> HourValue:
    return HourValue(
        stack_id=stack.stack_id, factor=factor, start=T0, mean_measured=measured,
        mean_converted=converted, valid=True, valid_minutes=60, ref_o2=ref_o2, o2_mean=o2,
    )


# ------------------------------------------------------------------ two programs, two O2 bases


def test_yangquan_coal_boiler_has_the_ultra_low_target_at_6_and_the_standard_at_9() -> None:
    limits = RESOLVER.for_stack(YANGQUAN_BOILER, DAY)
    rows = {(lim.row_id, lim.kind, lim.limit_mg_m3, lim.ref_o2) for lim in limits.by_factor[SO2]}
    # B2: Yangquan boiler ultra-low SO2 35 at 6 %; B3: GB 13271-2014 special limit 200 at 9 %.
    assert ("B2", LimitKind.ULTRA_LOW, 35.0, 6.0) in rows
    assert ("B3", LimitKind.STANDARD, 200.0, 9.0) in rows
    # Values are converted to the governing target's reference; the other basis derives from it.
    assert limits.ref_o2 == 6.0
    governing = limits.ultra_low(SO2)
    assert governing is not None and governing.row_id == "B2"


def test_an_hour_above_the_target_and_near_the_standard_gets_both_verdicts() -> None:
    limits = RESOLVER.for_stack(YANGQUAN_BOILER, DAY)
    # Measured SO2 135 mg/m³ at O2 12 %: at 6 % 135 × 15/9 = 225; at 9 % 135 × 12/9 = 180.
    verdict = judge_hour(
        _hour(YANGQUAN_BOILER, SO2, measured=135.0, converted=225.0, ref_o2=6.0, o2=12.0),
        limits.by_factor[SO2],
    )
    by_row = _by_row(verdict.verdicts)
    ule, std = by_row["B2"], by_row["B3"]
    assert ule.value == 225.0 and ule.ref_o2 == 6.0
    assert ule.status is HourStatus.EXCEEDANCE and ule.level is Level.ABOVE_ULTRA_LOW
    assert ule.term_zh == "超过超低排放限值" and ule.severity is Severity.ALARM
    # 180 ≤ 200 but > 160 (80 % of 200): 预警 against the legal limit.
    assert std.value == pytest.approx(180.0) and std.ref_o2 == 9.0
    assert std.status is HourStatus.WARNING and std.term_zh == "预警"
    # The hour as a whole: the ultra-low exceedance decides (an alarm, not 超标).
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.level is Level.ABOVE_ULTRA_LOW and verdict.severity is Severity.ALARM
    assert verdict.limit == 35.0 and verdict.program == ule.program


def test_an_hour_above_the_legal_limit_is_chaobiao_and_critical() -> None:
    limits = RESOLVER.for_stack(YANGQUAN_BOILER, DAY)
    # Measured 180 at O2 12 %: 180 × 15/9 = 300 at 6 %, 180 × 12/9 = 240 at 9 % > 200.
    verdict = judge_hour(
        _hour(YANGQUAN_BOILER, SO2, measured=180.0, converted=300.0, ref_o2=6.0, o2=12.0),
        limits.by_factor[SO2],
    )
    std = _by_row(verdict.verdicts)["B3"]
    assert std.value == pytest.approx(240.0)
    assert std.level is Level.ABOVE_STANDARD and std.term_zh == "超标"
    assert verdict.severity is Severity.CRITICAL and verdict.level is Level.ABOVE_STANDARD
    assert verdict.limit == 200.0 and verdict.ref_o2 == 9.0
    assert verdict.value == pytest.approx(240.0)
    assert all(v.status is not HourStatus.UNJUDGED for v in verdict.verdicts)


def test_a_city_row_without_o2_basis_keeps_the_national_16_percent() -> None:
    limits = RESOLVER.for_stack(LUOYANG_SINTER, DAY)
    by_row = {lim.row_id: lim for lim in limits.by_factor[SO2]}
    # S8 (Luoyang 2019, SO2 35, no O2 stated) inherits 16 % from the national S1 it tightens.
    assert by_row["S8"].ref_o2 == 16.0 and by_row["S8"].o2_from_row == "S1"
    assert limits.ref_o2 == 16.0
    # Measured 21 at O2 18 %: 21 × (21 − 16)/(21 − 18) = 35 → within 35 (not above), > 28.
    verdict = judge_hour(
        _hour(LUOYANG_SINTER, SO2, measured=21.0, converted=35.0, ref_o2=16.0, o2=18.0),
        limits.by_factor[SO2],
    )
    s8 = _by_row(verdict.verdicts)["S8"]
    assert s8.value == 35.0 and s8.status is HourStatus.WARNING
    # Judged on the measured value, 35 would have looked like 21: the basis matters.


# ------------------------------------------------------------------ the 1.5 mg/m³ workshop dust


def test_sanmenxia_workshop_is_judged_hourly_on_measured_dust_against_1_5() -> None:
    limits = RESOLVER.for_stack(SANMENXIA_WORKSHOP, DAY)
    assert limits.ref_o2 is None
    (fugitive,) = [lim for lim in limits.by_factor[PM] if lim.averaging == "hour"]
    assert fugitive.kind is LimitKind.FUGITIVE and fugitive.limit_mg_m3 == 1.5
    assert fugitive.ref_o2 is None
    high = judge_hour(
        _hour(SANMENXIA_WORKSHOP, PM, measured=2.5, converted=None, ref_o2=None),
        limits.by_factor[PM],
    )
    assert high.status is HourStatus.EXCEEDANCE and high.value == 2.5
    assert high.level is Level.ABOVE_FUGITIVE
    assert high.verdicts[0].term_zh == "超过车间扬尘控制值"
    low = judge_hour(
        _hour(SANMENXIA_WORKSHOP, PM, measured=0.8, converted=None, ref_o2=None),
        limits.by_factor[PM],
    )
    assert low.status is HourStatus.COMPLIANT and low.level is Level.WITHIN


def _workshop_minute(start: datetime, dust: float) -> Reading:
    return Reading(
        stack_id=SANMENXIA_WORKSHOP.stack_id, mn=SANMENXIA_WORKSHOP.mn, cn="2051",
        kind=ReadingKind.MINUTE, sector="cement", process="grinding_workshop",
        data_time=start, received_at=start + timedelta(seconds=60), ref_o2=None, o2=None,
        values={PM: FactorReading(value=dust, flag="N")},
    )


def _run_workshop(hourly_dust: list[float]) -> tuple[list[AggregateRecord], list]:  # type: ignore[type-arg]
    limits = RESOLVER.for_stack(SANMENXIA_WORKSHOP, DAY)
    proc = StackProcessor(SANMENXIA_WORKSHOP.stack_id)
    aggs: list[AggregateRecord] = []
    alerts = []
    # A real dust monitor wobbles (a constant value is a flat-line fault): ±0.05 alternating,
    # so each hour's mean is exactly its level.
    levels = [v for v in hourly_dust for _ in range(60)] + [hourly_dust[-1]] * 5
    minutes = [round(v + (0.05 if i % 2 else -0.05), 2) for i, v in enumerate(levels)]
    for i, dust in enumerate(minutes):
        out = proc.on_reading(_workshop_minute(T0 + timedelta(minutes=i), dust), limits)
        aggs.extend(out.aggregates)
        alerts.extend(out.alerts)
    return aggs, alerts


def test_a_workshop_hour_at_2_5_raises_the_hourly_exceedance_and_clears_after_normal_hours() -> (
    None
):
    aggs, alerts = _run_workshop([2.5, 0.8, 0.8, 0.8])
    first = next(a for a in aggs if a.period == "hour" and a.period_start == T0)
    assert first.mean == 2.5 and first.limit_mg_m3 == 1.5 and first.ref_o2 is None
    (verdict,) = first.verdicts
    assert verdict.status is HourStatus.EXCEEDANCE and verdict.kind is LimitKind.FUGITIVE
    hourly = [a for a in alerts if a.rule is Rule.HOUR_EXCEEDANCE]
    raised = [a for a in hourly if a.kind is EventKind.RAISE]
    assert len(raised) == 1
    assert raised[0].title_zh == "车间扬尘小时均值超过控制值"
    assert raised[0].value == 2.5 and raised[0].limit == 1.5
    assert raised[0].at == T0 + timedelta(hours=1)
    assert any(a.kind is EventKind.CLEAR for a in hourly)
    # The real-time check used the same value on the same basis: it alarmed too, and cleared.
    provisional = [a for a in alerts if a.rule is Rule.PROVISIONAL_EXCEEDANCE]
    assert [a.kind for a in provisional if a.kind is EventKind.RAISE] == [EventKind.RAISE]
    assert provisional[0].limit == 1.5


def test_a_workshop_at_0_8_raises_nothing() -> None:
    aggs, alerts = _run_workshop([0.8, 0.8, 0.8])
    hours = [a for a in aggs if a.period == "hour"]
    assert hours and all(h.verdicts[0].status is HourStatus.COMPLIANT for h in hours)
    assert not [a for a in alerts if a.kind is EventKind.RAISE]


# ------------------------------------------------------------------ programs by date


def _kiln(**kw: Any) -> StackInfo:
    return StackInfo(stack_id="hn-kiln", mn="MNHNKILN000001", sector="cement",
                     process="kiln_tail", province="河南", city="郑州", **kw)


def test_a_program_schedule_switches_the_nox_target_on_the_retrofit_date() -> None:
    # Henan 2019 cement ULE NOx 100 (C9) until 2024-01-18; the 2024 national opinion 50 (C1).
    kiln = _kiln(program_schedule=[
        ProgramPeriod(program="HN-2019-ULE", until=date(2024, 1, 18)),
        ProgramPeriod(program="NATL-2024-ULE", since=date(2024, 1, 19)),
    ])
    before = LimitResolver(default_catalogue()).for_stack(kiln, date(2024, 1, 18))
    after = LimitResolver(default_catalogue()).for_stack(kiln, date(2024, 1, 19))
    nox_before, nox_after = before.ultra_low(NOX), after.ultra_low(NOX)
    assert nox_before is not None and nox_before.limit_mg_m3 == 100.0
    assert nox_before.program == "HN-2019-ULE"
    assert nox_after is not None and nox_after.limit_mg_m3 == 50.0
    assert nox_after.program == "NATL-2024-ULE"


def test_a_pinned_program_stays_in_force_past_its_end_date() -> None:
    # A kiln granted a later retrofit deadline stays on HN-2019-ULE (NOx 100) in 2025.
    pinned = LimitResolver(default_catalogue()).for_stack(
        _kiln(program="HN-2019-ULE"), date(2025, 3, 1)
    )
    target = pinned.ultra_low(NOX)
    assert target is not None and target.limit_mg_m3 == 100.0


# ------------------------------------------------------------------ daily limits


def _day(mean: float, valid_hours: int) -> DayValue:
    return DayValue(stack_id="hn-kiln", factor=SO2, start=T0, mean_converted=mean,
                    mean_measured=mean, valid=valid_hours >= 20, valid_hours=valid_hours,
                    ref_o2=10.0)


def test_a_daily_override_is_judged_on_valid_days_only() -> None:
    limits = LimitResolver(default_catalogue()).for_stack(
        _kiln(limit_overrides={"day:a21026": 30.0}), DAY
    )
    day_limits = [lim for lim in limits.by_factor[SO2] if lim.averaging == "day"]
    assert [lim.limit_mg_m3 for lim in day_limits] == [30.0]
    # 31 > 30 on a day with 20 valid hours (HJ 212-2017 App. D minimum): exceedance.
    assert judge_day(_day(31.0, 20), limits.by_factor[SO2]).status is HourStatus.EXCEEDANCE
    # 19 valid hours: the day is invalid, not judged.
    invalid = judge_day(_day(31.0, 19), limits.by_factor[SO2])
    assert invalid.status is HourStatus.INVALID and "19 valid hours" in invalid.reason
    # Hourly limits are not applied to a daily mean.
    assert judge_day(_day(31.0, 20), [lim for lim in limits.by_factor[SO2]
                                      if lim.averaging == "hour"]).status is HourStatus.UNJUDGED


def _kiln_minute(stack: StackInfo, start: datetime, so2: float) -> Reading:
    return Reading(
        stack_id=stack.stack_id, mn=stack.mn, cn="2051", kind=ReadingKind.MINUTE,
        sector="cement", process="kiln_tail", data_time=start,
        received_at=start + timedelta(seconds=60), ref_o2=10.0, o2=10.0,
        flow_std_dry_m3_h=100_000.0,
        values={SO2: FactorReading(value=so2, flag="N", zs=so2), O2: FactorReading(value=10.0)},
    )


def _run_kiln(stack: StackInfo, hours_with_data: list[int], so2: float, until_h: int) -> tuple[
    list[AggregateRecord], list  # type: ignore[type-arg]
]:
    limits = LimitResolver(default_catalogue()).for_stack(stack, DAY)
    proc = StackProcessor(stack.stack_id)
    aggs: list[AggregateRecord] = []
    alerts = []
    starts = [T0 + timedelta(hours=h, minutes=m) for h in hours_with_data for m in range(60)]
    starts += [T0 + timedelta(hours=until_h, minutes=m) for m in range(10)]
    for start in starts:
        out = proc.on_reading(_kiln_minute(stack, start, so2), limits)
        aggs.extend(out.aggregates)
        alerts.extend(out.alerts)
    return aggs, alerts


def test_a_day_with_20_valid_hours_has_a_valid_total_and_its_daily_verdict() -> None:
    kiln = _kiln(limit_overrides={"day:a21026": 30.0})
    # SO2 31 mg/m³ × 100 000 m³/h = 3.1 kg/h; 20 hours → 62 kg, a valid day total.
    aggs, alerts = _run_kiln(kiln, list(range(20)), 31.0, until_h=25)
    (day,) = [a for a in aggs if a.period == "day" and a.factor == SO2]
    assert day.valid and day.mass_valid is True
    assert day.mass_kg == pytest.approx(62.0)
    (verdict,) = day.verdicts
    assert verdict.averaging == "day" and verdict.status is HourStatus.EXCEEDANCE
    assert verdict.limit == 30.0
    raised = [a for a in alerts if a.rule is Rule.DAY_EXCEEDANCE and a.kind is EventKind.RAISE]
    assert len(raised) == 1 and raised[0].value == 31.0
    assert raised[0].at == T0 + timedelta(days=1)


def test_a_day_with_19_valid_hours_is_invalid_and_its_total_is_not_valid() -> None:
    kiln = _kiln(limit_overrides={"day:a21026": 30.0})
    aggs, alerts = _run_kiln(kiln, list(range(19)), 31.0, until_h=25)
    (day,) = [a for a in aggs if a.period == "day" and a.factor == SO2]
    assert not day.valid and day.mass_valid is False
    # The total still sums what was emitted in the valid hours: 19 × 3.1 = 58.9 kg.
    assert day.mass_kg == pytest.approx(58.9)
    assert not [a for a in alerts if a.rule is Rule.DAY_EXCEEDANCE]


# ------------------------------------------------------------------ permit caps and totals


def test_the_permit_cap_alarms_the_hour_the_monthly_total_passes_it() -> None:
    # 10 kg a month; 20 mg/m³ × 100 000 m³/h = 2 kg/h: 10 kg after 5 hours (not above),
    # 12 kg after the 6th → critical at 06:00.
    kiln = _kiln(permit_caps=[PermitCap(factor=SO2, tonnes=0.01, per="month")])
    _, alerts = _run_kiln(kiln, list(range(7)), 20.0, until_h=7)
    raised = [a for a in alerts if a.rule is Rule.PERMIT_CAP and a.kind is EventKind.RAISE]
    assert len(raised) == 1
    assert raised[0].severity is Severity.CRITICAL
    assert raised[0].at == T0 + timedelta(hours=6)
    assert raised[0].value == pytest.approx(0.012) and raised[0].limit == 0.01


def test_emission_totals_fold_hours_into_days_and_count_the_month_only() -> None:
    totals = EmissionTotals()
    oct31 = T0 - timedelta(days=2)  # Beijing 2026-10-31 00:00
    totals.record_day(SO2, oct31, 100.0)
    for h in range(3):
        totals.record_hour(SO2, T0 + timedelta(hours=h), 2.0)
    nov = T0.replace(day=1)
    assert totals.total_kg(SO2, nov, T0 + timedelta(hours=3)) == 6.0
    # A revised hour replaces its mass; the closed day replaces its hours.
    totals.record_hour(SO2, T0, 3.0)
    assert totals.total_kg(SO2, nov, T0 + timedelta(hours=3)) == 7.0
    totals.record_day(SO2, T0, 50.0)
    assert totals.hours[SO2] == {}
    assert totals.total_kg(SO2, nov, T0 + timedelta(days=1)) == 50.0
    # October's day belongs to another month; a year cap counts it.
    year = T0.replace(month=1, day=1)
    assert totals.total_kg(SO2, year, T0 + timedelta(days=1)) == 150.0


# ------------------------------------------------------------------ NOx from NO and NO2


def test_nox_is_derived_from_no_and_no2_when_the_logger_sends_no_a21002() -> None:
    kiln = StackInfo(stack_id="k", mn="MNNOXKILN00001", sector="cement", process="kiln_tail")
    (text,) = build_frames(
        "2051", kiln.mn, "pw", T0,
        {"a21003": {"Avg": 100.0}, "a21004": {"Avg": 10.0}, O2: {"Avg": 10.0}}, now=T0,
    )
    raw = RawFrame(text=text, received_at=T0 + timedelta(minutes=1), peer="10.0.0.9:4000",
                   mn=kiln.mn, verdict=FrameVerdict.ACCEPTED, reasons=[])
    reading = reading_from_raw(raw, {kiln.mn: kiln}.get, lambda _s, _t: 10.0)
    assert isinstance(reading, Reading), reading
    # HJ 75-2017: NOx (as NO2) = 1.53 × NO + NO2 = 153 + 10 = 163; at O2 = ref, Zs = 163.
    assert reading.values[NOX].value == pytest.approx(163.0)
    assert reading.values[NOX].zs == pytest.approx(163.0)
    assert any(w.startswith("nox_derived") for w in reading.warnings)


def test_stack_limits_without_an_explicit_governing_target_use_the_strictest() -> None:
    from stackwatch.compliance import Limit

    limits = StackLimits(ref_o2=10.0, by_factor={SO2: (
        Limit(limit_mg_m3=100.0, kind=LimitKind.STANDARD, ref_o2=10.0),
        Limit(limit_mg_m3=50.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0, program="A"),
        Limit(limit_mg_m3=35.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0, program="B"),
    )})
    target = limits.ultra_low(SO2)
    assert target is not None and target.program == "B"


# ------------------------------------------------------------------ audit additions (issue 13)


def test_henan_c9_ends_on_2024_01_18_and_every_plant_moves_to_the_national_values() -> None:
    # A Zhengzhou kiln with no program in the registry: HN-2019-ULE (C9, NOx 100 at 10 %) is
    # in force through 2024-01-18; from 2024-01-19 the 2024 national opinion (C1, NOx 50).
    # NOx 80 at 10 % O2: ≤ 80 (= 80 % of 100, the warning level) → 达标 under C9;
    # 80 > 50 → 超过超低排放限值 under C1. The legal limit C4 (320) holds throughout.
    kiln = _kiln()
    hour = _hour(kiln, NOX, measured=80.0, converted=80.0, ref_o2=10.0, o2=10.0)
    resolver = LimitResolver(default_catalogue())  # the resolver caches by stack id and day
    before = resolver.for_stack(kiln, date(2024, 1, 18))
    after = resolver.for_stack(kiln, date(2024, 1, 19))
    assert {lim.row_id for lim in before.by_factor[NOX]} == {"C9", "C4"}
    assert {lim.row_id for lim in after.by_factor[NOX]} == {"C1", "C4"}
    on_18 = _by_row(judge_hour(hour, before.by_factor[NOX]).verdicts)
    on_19 = judge_hour(hour, after.by_factor[NOX])
    assert on_18["C9"].status is HourStatus.COMPLIANT and on_18["C9"].limit == 100.0
    assert on_18["C4"].status is HourStatus.COMPLIANT
    assert on_19.status is HourStatus.EXCEEDANCE and on_19.limit_row == "C1"
    assert on_19.limit == 50.0 and on_19.program == "NATL-2024-ULE"
    assert _by_row(on_19.verdicts)["C1"].term_zh == "超过超低排放限值"
    assert _by_row(on_19.verdicts)["C4"].term_zh == "达标"


STEEL_COKE_OVEN = StackInfo(
    stack_id="ay-coke", mn="MNAYCOKEOVEN01", sector="steel", process="coke_oven",
    province="河南", city="安阳",
)


def test_a_steel_coke_oven_has_its_legal_limit_from_gb_16171() -> None:
    limits = RESOLVER.for_stack(STEEL_COKE_OVEN, date(2026, 3, 2))
    rows = {(lim.row_id, lim.kind, lim.limit_mg_m3, lim.ref_o2, lim.unconfirmed)
            for lim in limits.by_factor[SO2]}
    # S3: steel ULE SO2 30 at 8 %; K3: GB 16171-2012 special SO2 30, no basis stated (measured),
    # unconfirmed.
    assert rows == {("S3", LimitKind.ULTRA_LOW, 30.0, 8.0, True),
                    ("K3", LimitKind.STANDARD, 30.0, None, True)}
    # Measured SO2 27 at O2 13 %: at 8 % 27 × 13/8 = 43.875 > 30 (超过超低排放限值);
    # measured 27 ≤ 30 but > 24 (80 % of 30): 预警 against the legal limit.
    verdict = judge_hour(
        _hour(STEEL_COKE_OVEN, SO2, measured=27.0, converted=43.875, ref_o2=8.0, o2=13.0),
        limits.by_factor[SO2],
    )
    s3, k3 = _by_row(verdict.verdicts)["S3"], _by_row(verdict.verdicts)["K3"]
    assert (s3.value, s3.term_zh) == (43.875, "超过超低排放限值")
    assert (k3.value, k3.basis, k3.term_zh) == (27.0, Basis.MEASURED, "预警")
    # GB 16171-2012's special limits end on 2026-12-31 (K5): no legal row from 2027.
    later = RESOLVER.for_stack(STEEL_COKE_OVEN, date(2027, 1, 1))
    assert {lim.row_id for lim in later.by_factor[SO2]} == {"S3"}


def test_every_stack_point_has_a_legal_standard() -> None:
    # Every catalogue point judged as a stack has a legal-standard row on 2026-03-02, except
    # the steel sector's catch-all `other` (per-stack permit value, docs/limits.md) and the
    # Sanmenxia workshop (an area point: its 1.5 is the fugitive value).
    cat = default_catalogue()
    day = date(2026, 3, 2)
    points = sorted({(r.sector, r.process) for r in cat.rules})
    missing = [
        (sector, process)
        for sector, process in points
        if not any(r.kind.value == "standard" for r in cat.applicable(sector, process, day))
    ]
    assert missing == [("cement", "grinding_workshop"), ("steel", "other")]
    standards = {r.program for r in cat.rules if r.kind.value == "standard"}
    assert {"GB13223-2011-special", "GB28662-2012-special", "GB28663-2012-special",
            "GB28664-2012-special", "GB28665-2012-special"} <= standards


def test_alert_titles_name_the_level_of_the_deciding_limit() -> None:
    # 超标 only against the legal standard; 超过超低排放限值 against an ultra-low target; the
    # workshop value has its own term; a title without a kind names no level.
    assert alert_title(Rule.HOUR_EXCEEDANCE, {"limit_kind": "standard"})[0] == "小时均值超标"
    assert alert_title(Rule.HOUR_EXCEEDANCE, {"limit_kind": "ultra_low"})[0] == (
        "小时均值超过超低排放限值"
    )
    assert alert_title(Rule.HOUR_EXCEEDANCE, {"limit_kind": "fugitive"})[0] == (
        "车间扬尘小时均值超过控制值"
    )
    assert alert_title(Rule.HOUR_WARNING, {"limit_kind": "ultra_low"})[0] == (
        "小时均值接近超低排放限值（预警）"
    )
    assert alert_title(Rule.DAY_EXCEEDANCE, {"limit_kind": "standard"})[0] == "日均值超标"
    assert alert_title(Rule.DAY_EXCEEDANCE, {"limit_kind": "ultra_low"})[0] == (
        "日均值超过超低排放限值"
    )
    assert alert_title(Rule.PROVISIONAL_EXCEEDANCE, {"limit_kind": "ultra_low"})[0] == (
        "滚动小时均值超过超低排放限值预警"
    )
    assert alert_title(Rule.PROVISIONAL_EXCEEDANCE, {"limit_kind": "standard"})[0] == (
        "滚动小时均值超标预警"
    )
    for rule in (Rule.HOUR_EXCEEDANCE, Rule.DAY_EXCEEDANCE, Rule.PROVISIONAL_EXCEEDANCE):
        assert "超标" not in alert_title(rule, {})[0]


def test_a_yearly_permit_cap_counts_the_earlier_months() -> None:
    # Cap 1 t/a of SO2 and 0.5 t/month. 990 kg on Beijing 2026-10-31, then 2 kg/h on
    # 2026-11-02: after hour 04 (5 hours) 990 + 10 = 1 000 kg = 1.0 t, not above; after hour
    # 05, 1 002 kg = 1.002 t > 1 t → active, carrying the year cap (ratio 1.002 vs the
    # month's 12 kg / 500 kg = 0.024).
    caps = [PermitCap(factor=SO2, tonnes=1.0, per="year"),
            PermitCap(factor=SO2, tonnes=0.5, per="month")]
    totals = EmissionTotals()
    totals.record_day(SO2, T0 - timedelta(days=2), 990.0)
    for h in range(5):
        totals.record_hour(SO2, T0 + timedelta(hours=h), 2.0)
    (at_5,) = totals.conditions("k", caps, T0 + timedelta(hours=4))
    assert not at_5.active and at_5.value == pytest.approx(1.0)
    totals.record_hour(SO2, T0 + timedelta(hours=5), 2.0)
    (at_6,) = totals.conditions("k", caps, T0 + timedelta(hours=5))
    assert at_6.active and at_6.value == pytest.approx(1.002) and at_6.limit == 1.0
    assert at_6.evidence["per"] == "year" and at_6.evidence["period"] == "2026"
    assert at_6.at == T0 + timedelta(hours=6)
