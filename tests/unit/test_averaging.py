"""HJ 212-2017 App. C/D.2 averaging rules against hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from stackwatch.averaging import (
    DEFAULT_RULES,
    AveragingRules,
    Period,
    Sample,
    aggregate,
    aggregate_flag,
    dominant_invalid_flag,
    emission_hour,
    interval_end,
    interval_start,
    scaled_rules,
)
from stackwatch.beijing_time import CST
from stackwatch.period_means import FactorPeriod, day_from_hours
from stackwatch.window_items import HourItem
from stackwatch.windows import ClosedWindow, WindowItem

HOUR = datetime(2026, 3, 1, 8, 0, tzinfo=CST)
MINUTE = datetime(2026, 3, 1, 8, 40, tzinfo=CST)


def minutes(
    values: Sequence[float | None], flags: Sequence[str], start: datetime = HOUR
) -> list[Sample]:
    """One sample per minute from `start`."""
    assert len(values) == len(flags)
    return [
        Sample(ts=start + timedelta(minutes=i), value=v, flag=f)
        for i, (v, f) in enumerate(zip(values, flags, strict=True))
    ]


# --- interval boundaries (+08:00) -------------------------------------------------------------


def test_day_boundary_is_16_utc() -> None:
    # 2026-03-01 16:00 UTC = 2026-03-02 00:00 +08:00 → a new day starts.
    assert interval_start(datetime(2026, 3, 1, 16, 0, tzinfo=UTC), Period.DAY) == datetime(
        2026, 3, 2, 0, 0, tzinfo=CST
    )
    # one second earlier is still 2026-03-01 (local 23:59:59).
    assert interval_start(datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC), Period.DAY) == datetime(
        2026, 3, 1, 0, 0, tzinfo=CST
    )


def test_hour_and_minute_boundaries() -> None:
    ts = datetime(2026, 3, 1, 0, 40, 59, 999_000, tzinfo=UTC)  # 08:40:59.999 local
    assert interval_start(ts, Period.HOUR) == datetime(2026, 3, 1, 8, 0, tzinfo=CST)
    assert interval_start(ts, Period.MINUTE) == datetime(2026, 3, 1, 8, 40, tzinfo=CST)
    # 10-minute data (MinInterval=10): 08:40 covers 08:40–08:50 (App. C example)
    assert interval_start(ts, timedelta(minutes=10)) == datetime(2026, 3, 1, 8, 40, tzinfo=CST)
    assert interval_end(HOUR, Period.HOUR) == datetime(2026, 3, 1, 9, 0, tzinfo=CST)


def test_interval_start_rejects_naive_and_bad_periods() -> None:
    with pytest.raises(ValueError, match="naive"):
        interval_start(datetime(2026, 3, 1, 8, 0), Period.HOUR)
    with pytest.raises(ValueError, match="divide"):
        interval_start(HOUR, timedelta(minutes=7))


# --- the > 75 % flag rule ---------------------------------------------------------------------


def test_aggregate_flag_strictly_more_than_75_percent() -> None:
    # 34/45 = 75.6 % > 75 % → N
    assert aggregate_flag(["N"] * 34 + ["S"] * 11) == "N"
    # 36/48 = 75.0 %, not > 75 % → D
    assert aggregate_flag(["N"] * 36 + ["S"] * 12) == "D"
    # 3/4 = 75 % → D; 4/5 = 80 % → N
    assert aggregate_flag(["N", "N", "N", "C"]) == "D"
    assert aggregate_flag(["N", "N", "N", "N", "C"]) == "N"
    assert aggregate_flag([]) == "D"


def test_dominant_invalid_flag() -> None:
    assert dominant_invalid_flag(["N", "C", "C", "D"]) == "C"
    # tie C/M (2 each) broken by priority F, M, C, D, T, B → M
    assert dominant_invalid_flag(["C", "M", "C", "M", "N"]) == "M"
    assert dominant_invalid_flag(["N", "S"]) is None


# --- minute ------------------------------------------------------------------------------------


def test_minute_from_12_instantaneous_values() -> None:
    # 12 values every 5 s: 10, 11, ..., 21 → sum = 12 × (10 + 21)/2 = 186 → mean 15.5
    samples = [
        Sample(ts=MINUTE + timedelta(seconds=5 * i), value=10.0 + i, flag="N") for i in range(12)
    ]
    agg = aggregate(samples, MINUTE, Period.MINUTE)
    assert agg.valid and agg.flag == "N"
    assert agg.mean == pytest.approx(15.5)
    assert (agg.min, agg.max) == (10.0, 21.0)
    assert (agg.count_valid, agg.count_total, agg.required_valid) == (12, 12, 12)
    assert agg.end == datetime(2026, 3, 1, 8, 41, tzinfo=CST)


def test_minute_with_11_valid_values_is_invalid() -> None:
    samples = [Sample(ts=MINUTE + timedelta(seconds=5 * i), value=1.0) for i in range(11)]
    agg = aggregate(samples, MINUTE, Period.MINUTE)
    assert not agg.valid and agg.mean is None
    assert agg.reason is not None and "only 11 valid" in agg.reason and "12" in agg.reason


def test_minute_ignores_samples_outside_the_interval() -> None:
    inside = [Sample(ts=MINUTE + timedelta(seconds=5 * i), value=2.0) for i in range(12)]
    outside = [Sample(ts=MINUTE + timedelta(minutes=1), value=1000.0)]
    agg = aggregate(inside + outside, MINUTE, Period.MINUTE)
    assert agg.mean == pytest.approx(2.0)
    assert agg.count_outside == 1 and agg.count_total == 12


# --- hour --------------------------------------------------------------------------------------


def test_hour_from_45_known_minutes() -> None:
    # values 1..45: sum = 45 × 46/2 = 1035 → mean 1035/45 = 23.0
    agg = aggregate(minutes([float(v) for v in range(1, 46)], ["N"] * 45), HOUR, Period.HOUR)
    assert agg.valid and agg.flag == "N" and agg.reason is None
    assert agg.mean == pytest.approx(23.0)
    assert (agg.min, agg.max, agg.count_valid) == (1.0, 45.0, 45)


def test_hour_with_44_valid_minutes_is_invalid_and_says_why() -> None:
    # 44 N minutes + 16 calibration minutes
    agg = aggregate(minutes([5.0] * 60, ["N"] * 44 + ["C"] * 16), HOUR, Period.HOUR)
    assert not agg.valid and agg.mean is None
    assert agg.flag == "C" and agg.dominant_invalid_flag == "C"
    assert agg.count_valid == 44 and agg.count_total == 60
    assert agg.reason is not None and "only 44 valid minute values of 45" in agg.reason


def test_hour_34_normal_of_45_is_N() -> None:
    # 34 N at 10.0 + 11 S at 20.0: 34/45 = 75.6 % > 75 % → N
    # mean = (34 × 10 + 11 × 20)/45 = (340 + 220)/45 = 560/45 = 12.444
    agg = aggregate(minutes([10.0] * 34 + [20.0] * 11, ["N"] * 34 + ["S"] * 11), HOUR, Period.HOUR)
    assert agg.flag == "N" and agg.valid
    assert agg.mean == pytest.approx(12.444, abs=5e-4)
    assert agg.count_normal == 34


def test_hour_exactly_75_percent_normal_is_flagged_D_but_stays_valid() -> None:
    # 36 N + 12 S = 48 valid minutes; 36/48 = 75.0 % is not > 75 % → flag D (App. C), but
    # 48 ≥ 45 valid minutes make the hour valid (App. D.2): the flag does not gate validity.
    # mean = (36 × 10 + 12 × 20)/48 = 600/48 = 12.5
    agg = aggregate(minutes([10.0] * 36 + [20.0] * 12, ["N"] * 36 + ["S"] * 12), HOUR, Period.HOUR)
    assert agg.flag == "D" and agg.valid
    assert agg.mean == pytest.approx(12.5)
    assert agg.reason is not None and "75.0 %" in agg.reason


def test_calibration_minutes_beside_45_valid_ones_do_not_invalidate_the_hour() -> None:
    # 45 N minutes at 40 + 15 C minutes (span gas 90): valid (45 ≥ 45), mean of the 45 valid
    # minutes = 40.0, flag D (45/60 = 75 % normal, not > 75 %). Before, the D flag made it
    # invalid and an exceedance of a 35 limit went unjudged.
    agg = aggregate(minutes([40.0] * 45 + [90.0] * 15, ["N"] * 45 + ["C"] * 15), HOUR, Period.HOUR)
    assert agg.valid and agg.mean == 40.0 and agg.flag == "D"


def test_hour_validity_by_minutes_covered_not_by_records() -> None:
    # Six valid 10-minute records cover 60 minutes: valid. Their mean is the plain mean.
    six = minutes([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], ["N"] * 6)
    agg = aggregate(six, HOUR, Period.HOUR)
    assert not agg.valid  # counted as minutes, 6 < 45
    agg = aggregate(six, HOUR, Period.HOUR, coverage=60.0)
    assert agg.valid and agg.mean == 3.5 and agg.coverage_minutes == 60.0
    # Four records cover 40 minutes: invalid, and the reason says why.
    short = aggregate(six[:4], HOUR, Period.HOUR, coverage=40.0)
    assert not short.valid and short.reason is not None
    assert "only 40 minutes covered" in short.reason


def test_hour_share_counts_received_invalid_minutes() -> None:
    # 45 N + 15 C: 45 valid (enough) but 45/60 = 75 % normal → D
    assert aggregate(minutes([1.0] * 60, ["N"] * 45 + ["C"] * 15), HOUR, Period.HOUR).flag == "D"
    # 46 N + 14 C: 46/60 = 76.7 % → N, mean of the 46 valid = 1.0
    agg = aggregate(minutes([1.0] * 60, ["N"] * 46 + ["C"] * 14), HOUR, Period.HOUR)
    assert agg.flag == "N" and agg.valid and agg.mean == pytest.approx(1.0)
    # 45 N received, 15 never received: 45/45 = 100 % → N
    assert aggregate(minutes([1.0] * 45, ["N"] * 45), HOUR, Period.HOUR).flag == "N"


def test_calibration_hour_carries_C() -> None:
    agg = aggregate(minutes([0.0] * 60, ["C"] * 60), HOUR, Period.HOUR)
    assert not agg.valid and agg.flag == "C" and agg.dominant_invalid_flag == "C"
    assert agg.flag_counts == {"C": 60}


def test_invalid_values_and_unknown_flags_are_invalid_constituents() -> None:
    values: list[float | None] = [*([3.0] * 45), None, float("nan"), 99.0]
    flags = ["N"] * 45 + ["N", "N", "X"]
    agg = aggregate(minutes(values, flags), HOUR, Period.HOUR)
    # 45 valid of 48; normal = 45/48 = 93.75 % → N; mean 3.0 (None/NaN/X excluded)
    assert agg.valid and agg.mean == pytest.approx(3.0) and agg.max == 3.0
    assert agg.count_valid == 45 and agg.count_total == 48 and agg.count_normal == 45
    assert agg.dominant_invalid_flag == "X"


def test_hour_from_minute_aggregates() -> None:
    # 45 minutes each built from 12 samples of value m (m = 0..44) → hour mean = 22.0
    minute_aggs = []
    for m in range(45):
        start = HOUR + timedelta(minutes=m)
        samples = [Sample(ts=start + timedelta(seconds=5 * i), value=float(m)) for i in range(12)]
        minute_aggs.append(aggregate(samples, start, Period.MINUTE))
    # one invalid minute (only 3 samples) adds an invalid constituent
    bad_start = HOUR + timedelta(minutes=45)
    minute_aggs.append(aggregate([Sample(ts=bad_start, value=1e6)] * 3, bad_start, Period.MINUTE))
    agg = aggregate(minute_aggs, HOUR, Period.HOUR)
    # sum 0..44 = 990 → 990/45 = 22.0; 45 N of 46 = 97.8 % → N
    assert agg.valid and agg.mean == pytest.approx(22.0)
    assert agg.count_total == 46 and agg.count_valid == 45


def test_thresholds_are_parameters() -> None:
    rules = AveragingRules(min_minutes_per_hour=30)
    assert aggregate(minutes([2.0] * 30, ["N"] * 30), HOUR, Period.HOUR, rules).valid
    assert not aggregate(minutes([2.0] * 30, ["N"] * 30), HOUR, Period.HOUR).valid


def test_unaligned_start_is_refused() -> None:
    with pytest.raises(ValueError, match="boundary"):
        aggregate([], HOUR + timedelta(minutes=1), Period.HOUR)


# --- day ---------------------------------------------------------------------------------------

DAY = datetime(2026, 3, 2, 0, 0, tzinfo=CST)  # = 2026-03-01 16:00 UTC


def hours(n: int, value: float = 1.0, flag: str = "N", start: datetime = DAY) -> list[Sample]:
    return [Sample(ts=start + timedelta(hours=i), value=value, flag=flag) for i in range(n)]


def test_day_with_20_valid_hours() -> None:
    # 20 hours at 4.0 → 4.0; plus 4 maintenance hours: 20/24 = 83.3 % normal → N
    agg = aggregate(hours(20, 4.0) + hours(4, 0.0, "M", DAY + timedelta(hours=20)), DAY, Period.DAY)
    assert agg.valid and agg.flag == "N" and agg.mean == pytest.approx(4.0)


def test_day_with_19_valid_hours_is_invalid() -> None:
    agg = aggregate(hours(19) + hours(5, 1.0, "F", DAY + timedelta(hours=19)), DAY, Period.DAY)
    assert not agg.valid and agg.flag == "F"
    assert agg.reason is not None and "19 valid hourly values of 20" in agg.reason


def test_day_window_runs_00_to_24_local() -> None:
    # The hour starting 2026-03-01 15:00 UTC (= 23:00 +08:00 on 03-01) belongs to the previous
    # day; the hour starting 2026-03-02 15:00 UTC (= 23:00 on 03-02) is the last of this day.
    before = Sample(ts=datetime(2026, 3, 1, 15, 0, tzinfo=UTC), value=100.0)
    last = Sample(ts=datetime(2026, 3, 2, 15, 0, tzinfo=UTC), value=1.0)
    after = Sample(ts=datetime(2026, 3, 2, 16, 0, tzinfo=UTC), value=100.0)
    agg = aggregate([before, *hours(23), last, after], DAY, Period.DAY)
    assert agg.count_total == 24 and agg.count_outside == 2
    assert agg.mean == pytest.approx(1.0)
    assert agg.start == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


# --- emission mass -----------------------------------------------------------------------------


def _hour_of(value: float, start: datetime = HOUR) -> list[Sample]:
    return minutes([value] * 60, ["N"] * 60, start)


def test_emission_hour() -> None:
    # 9.78 mg/m³ × 500 000 m³/h × 10⁻⁶ = 4.89 kg in that hour
    conc = aggregate(_hour_of(9.78), HOUR, Period.HOUR)
    flow = aggregate(_hour_of(500_000.0), HOUR, Period.HOUR)
    mass = emission_hour(conc, flow)
    assert mass.valid and mass.kg == pytest.approx(4.89)
    assert mass.start == HOUR and mass.period is Period.HOUR


def test_emission_hour_invalid_when_concentration_invalid() -> None:
    conc = aggregate(minutes([9.78] * 60, ["C"] * 60), HOUR, Period.HOUR)
    flow = aggregate(_hour_of(500_000.0), HOUR, Period.HOUR)
    mass = emission_hour(conc, flow)
    assert not mass.valid and mass.kg is None
    assert mass.reason is not None and "concentration hour invalid" in mass.reason


def test_emission_hour_refuses_mismatched_hours() -> None:
    conc = aggregate(_hour_of(9.78), HOUR, Period.HOUR)
    next_hour = HOUR + timedelta(hours=1)
    flow = aggregate(_hour_of(500_000.0, next_hour), next_hour, Period.HOUR)
    assert not emission_hour(conc, flow).valid


def test_day_mass_sums_valid_hours() -> None:
    def mass(i: int, kg: float | None) -> tuple[WindowItem, HourItem]:
        start = DAY + timedelta(hours=i)
        hour = HourItem(value=1.0 if kg is not None else None, flag="N" if kg else "M",
                        valid=kg is not None, kg=kg)
        return WindowItem(key=f"{i}", event_time=start, item=hour.to_json()), hour

    def day_of(entries: list[tuple[WindowItem, HourItem]]) -> FactorPeriod:
        closed = ClosedWindow(start=DAY, end=DAY + timedelta(days=1), revision=0, final=True,
                              items=tuple(e for e, _ in entries))
        return day_from_hours(closed, {"a21026": entries}, DEFAULT_RULES)["a21026"].factors[
            "a21026"
        ]

    # 20 valid hours × 4.89 kg = 97.8 kg; 4 invalid hours contribute nothing
    day = day_of([mass(i, 4.89) for i in range(20)] + [mass(i, None) for i in range(20, 24)])
    assert day.agg.valid and day.mass_kg == pytest.approx(97.8)
    assert (day.agg.count_valid, day.agg.count_total) == (20, 24)
    # 19 valid hours × 4.89 = 92.91 kg, below the 20-hour rule → invalid but mass kept
    day19 = day_of([mass(i, 4.89) for i in range(19)])
    assert not day19.agg.valid and day19.mass_kg == pytest.approx(92.91)


def test_scaled_rules_for_sparse_sources() -> None:
    # 30 s real-time: ceil(12 × 5/30) = ceil(2.0) = 2; 7 s: ceil(60/7 = 8.57) = 9
    assert scaled_rules(rtd_interval_s=30).min_samples_per_minute == 2
    assert scaled_rules(rtd_interval_s=7).min_samples_per_minute == 9
    assert scaled_rules(rtd_interval_s=600).min_samples_per_minute == 1
    # at or below 5 s the standard's 12 stands
    assert scaled_rules(rtd_interval_s=5).min_samples_per_minute == 12
    # MinInterval=10: ceil(45/10 = 4.5) = 5 of 6 values; MinInterval=15: ceil(3.0) = 3
    rules = scaled_rules(min_interval_min=10)
    assert (rules.min_minutes_per_hour, rules.min_hours_per_day) == (5, 20)
    assert scaled_rules(min_interval_min=15).min_minutes_per_hour == 3
    with pytest.raises(ValueError):
        scaled_rules(rtd_interval_s=0)


def test_hour_of_ten_minute_values() -> None:
    # six 10-minute values, 5 valid at 2.0 and one C: with scaled rules 5 ≥ 5 → valid;
    # 5/6 = 83.3 % normal → N; mean 2.0. Four valid would be invalid (4 < 5).
    rules = scaled_rules(min_interval_min=10)
    ten = [HOUR + timedelta(minutes=10 * i) for i in range(6)]
    ok = [Sample(ts=ts, value=2.0, flag="N" if i < 5 else "C") for i, ts in enumerate(ten)]
    agg = aggregate(ok, HOUR, Period.HOUR, rules)
    assert agg.valid and agg.flag == "N" and agg.mean == pytest.approx(2.0)
    short = [Sample(ts=ts, value=2.0, flag="N" if i < 4 else "C") for i, ts in enumerate(ten)]
    assert not aggregate(short, HOUR, Period.HOUR, rules).valid
