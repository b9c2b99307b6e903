"""Compliance judgement and the rolling mean, against hand-computed answers.

Monthly conformity (the 95 % rule) is computed by the database view `conformity_monthly`:
tests/integration/test_schema.py runs it on a hand-built month.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from stackwatch.compliance import (
    Basis,
    HourStatus,
    HourValue,
    Level,
    Limit,
    LimitKind,
    RollingMean,
    Severity,
    judge_hour,
)

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)

# Cement kiln tail SO2: ultra-low 35 mg/m³ at 10 % O2 (row C1, docs/limits.md#catalogue-rows);
# GB 4915 special 100 (C4).
ULE_SO2 = Limit(limit_mg_m3=35, kind=LimitKind.ULTRA_LOW, ref_o2=10, row_id="C1", program="NATL")
STD_SO2 = Limit(limit_mg_m3=100, kind=LimitKind.STANDARD, ref_o2=10, row_id="C4")


def hour(
    converted: float | None,
    *,
    start: datetime = T0,
    valid: bool = True,
    minutes: int = 60,
    flag: str = "N",
    measured: float | None = None,
    ref_o2: float | None = 10,
    production: bool = True,
) -> HourValue:
    return HourValue(
        stack_id="kiln-1",
        factor="a21026",
        start=start,
        mean_converted=converted,
        mean_measured=measured,
        valid=valid,
        valid_minutes=minutes,
        flag=flag,
        ref_o2=ref_o2,
        production=production,
    )


# ----------------------------------------------------------------------------- judge_hour


def test_mean_equal_to_warning_level_is_not_a_warning() -> None:
    # 80 % of 35 = 0.8 × 35 = 28.0; 28.0 is not > 28.0.
    verdict = judge_hour(hour(28.0), [ULE_SO2])
    assert verdict.status is HourStatus.COMPLIANT
    assert verdict.severity is None
    assert verdict.warning_level == 28.0


def test_mean_just_above_warning_level_is_a_warning() -> None:
    verdict = judge_hour(hour(28.1), [ULE_SO2])  # 28.1 > 28.0
    assert verdict.status is HourStatus.WARNING
    assert verdict.severity is Severity.WARNING
    assert verdict.limit == 35


def test_mean_equal_to_limit_is_a_warning_not_an_exceedance() -> None:
    verdict = judge_hour(hour(35.0), [ULE_SO2])  # 35 is not > 35, but > 28
    assert verdict.status is HourStatus.WARNING


def test_mean_above_ultra_low_is_an_alarm() -> None:
    verdict = judge_hour(hour(35.1), [ULE_SO2, STD_SO2])  # 35 < 35.1 ≤ 100
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.severity is Severity.ALARM
    assert verdict.limit == 35
    assert verdict.limit_kind is LimitKind.ULTRA_LOW
    assert verdict.basis is Basis.CONVERTED
    assert verdict.value == 35.1


def test_mean_above_standard_as_well_is_critical() -> None:
    verdict = judge_hour(hour(100.5), [ULE_SO2, STD_SO2])  # 100.5 > 100 > 35
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.severity is Severity.CRITICAL
    assert verdict.limit == 100
    assert verdict.limit_row == "C4"


def test_standard_only_stack_warning_and_critical() -> None:
    # No ultra-low row: the warning level is 0.8 × 100 = 80.
    assert judge_hour(hour(80.0), [STD_SO2]).status is HourStatus.COMPLIANT
    assert judge_hour(hour(80.1), [STD_SO2]).status is HourStatus.WARNING
    assert judge_hour(hour(100.1), [STD_SO2]).severity is Severity.CRITICAL


def test_configured_warning_fraction() -> None:
    # 90 % of 35 = 31.5.
    lim = Limit(limit_mg_m3=35, kind=LimitKind.ULTRA_LOW, ref_o2=10, warning_fraction=0.9)
    assert judge_hour(hour(31.5), [lim]).status is HourStatus.COMPLIANT
    assert judge_hour(hour(31.6), [lim]).status is HourStatus.WARNING


def test_invalid_hour_is_never_an_exceedance() -> None:
    verdict = judge_hour(hour(500.0, valid=False, minutes=30, flag="D"), [ULE_SO2, STD_SO2])
    assert verdict.status is HourStatus.INVALID
    assert verdict.severity is None
    assert "30 valid minutes" in verdict.reason


def test_measured_basis_limit_uses_measured_mean() -> None:
    # Kiln-head PM 10 mg/m³ on measured concentration (docs/limits.md#reference-o2-by-source):
    # measured 12 > 10 although the (irrelevant) converted mean is 8.
    pm = Limit(limit_mg_m3=10, kind=LimitKind.ULTRA_LOW, ref_o2=None)
    verdict = judge_hour(hour(8.0, measured=12.0, ref_o2=None), [pm])
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.basis is Basis.MEASURED
    assert verdict.value == 12.0


def test_a_limit_at_another_reference_o2_is_judged_on_the_rescaled_mean() -> None:
    # Mean converted to 8 % O2 = 50; the limit is at 10 %: 50 × (21 − 10)/(21 − 8) = 550/13
    # = 42.307… > 35. Nothing is left unjudged because the bases differ.
    verdict = judge_hour(hour(50.0, ref_o2=8), [ULE_SO2])
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.value == pytest.approx(550 / 13)
    assert verdict.ref_o2 == 10 and verdict.basis is Basis.CONVERTED


def test_a_workshop_point_is_judged_on_its_measured_dust_and_never_beside_stack_limits() -> None:
    # row C13; docs/limits.md#workshop-dust
    workshop = Limit(limit_mg_m3=1.5, kind=LimitKind.FUGITIVE)
    verdict = judge_hour(hour(None, measured=2.5, ref_o2=None), [workshop])
    assert verdict.status is HourStatus.EXCEEDANCE and verdict.value == 2.5
    assert verdict.basis is Basis.MEASURED and verdict.level is Level.ABOVE_FUGITIVE
    # A fugitive row beside stack rows is left out: stack PM is never compared with 1.5.
    stack_pm = Limit(limit_mg_m3=10, kind=LimitKind.ULTRA_LOW, ref_o2=None)
    mixed = judge_hour(hour(None, measured=9.0, ref_o2=None), [workshop, stack_pm])
    assert mixed.status is HourStatus.WARNING and mixed.limit == 10  # 8 < 9 ≤ 10, no 1.5
    assert [v.kind for v in mixed.verdicts] == [LimitKind.ULTRA_LOW]


def test_strictest_row_of_a_kind_applies() -> None:
    older = Limit(limit_mg_m3=50, kind=LimitKind.ULTRA_LOW, ref_o2=10)  # HN 2018 draft (C8)
    verdict = judge_hour(hour(40.0), [older, ULE_SO2])  # 40 > 35, ≤ 50
    assert verdict.status is HourStatus.EXCEEDANCE
    assert verdict.limit == 35


def test_missing_value_is_unjudged_not_a_crash() -> None:
    assert judge_hour(hour(None), [ULE_SO2]).status is HourStatus.UNJUDGED


def test_bad_inputs_are_refused_at_the_boundary() -> None:
    with pytest.raises(ValidationError):
        hour(float("nan"))
    with pytest.raises(ValidationError):
        Limit(limit_mg_m3=0, kind=LimitKind.ULTRA_LOW)
    with pytest.raises(ValidationError):
        HourValue.model_validate(
            {
                "stack_id": "s",
                "factor": "f",
                "start": "2026-01-01T00:00",
                "valid": True,
                "valid_minutes": 60,
            }
        )  # naive start


# ----------------------------------------------------------------------------- rolling mean


def test_rolling_mean_hand_computed() -> None:
    rm = RollingMean(window=timedelta(minutes=60), min_count=3)
    t = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    rm.add(t, 10.0, True)
    snap = rm.add(t + timedelta(minutes=1), 20.0, True)
    assert (snap.mean, snap.count, snap.ready) == (15.0, 2, False)  # (10+20)/2
    rm.add(t + timedelta(minutes=2), 999.0, False)  # invalid minute: not in the mean
    snap = rm.add(t + timedelta(minutes=3), 30.0, True)
    assert (snap.mean, snap.count, snap.ready) == (20.0, 3, True)  # (10+20+30)/3
    # 11:00 → window (10:00, 11:00]: 10:00 drops out → (20+30+40)/3 = 30.
    snap = rm.add(t + timedelta(minutes=60), 40.0, True)
    assert (snap.mean, snap.count) == (30.0, 3)
    # 11:01 → 10:01 drops out → (30+40+50)/3 = 40.
    snap = rm.add(t + timedelta(minutes=61), 50.0, True)
    assert (snap.mean, snap.count) == (40.0, 3)
    # Duplicate minute: unchanged. A minute older than the window: ignored.
    assert rm.add(t + timedelta(minutes=61), 50.0, True).mean == 40.0
    assert rm.add(t - timedelta(hours=1), 1000.0, True).mean == 40.0
    # A re-sent minute that turned invalid replaces the valid one: (30+40)/2 = 35.
    assert rm.add(t + timedelta(minutes=61), None, False).mean == 35.0


def test_rolling_mean_min_count_45() -> None:
    rm = RollingMean()
    t = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    for i in range(44):
        snap = rm.add(t + timedelta(minutes=i), float(i + 1), True)
    assert snap.count == 44 and snap.ready is False
    snap = rm.add(t + timedelta(minutes=44), 45.0, True)
    # Values 1..45: mean = (45 × 46 / 2) / 45 = 23.
    assert (snap.count, snap.ready, snap.mean) == (45, True, 23.0)


def test_rolling_mean_state_round_trip() -> None:
    rm = RollingMean(min_count=2)
    t = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    rm.add(t, 10.0, True)
    rm.add(t + timedelta(minutes=30), 20.0, True)
    restored = RollingMean.from_state(json.loads(json.dumps(rm.to_state())))
    # 10:30 + 31 min = 11:01 → 10:00 drops out → (20 + 60) / 2 = 40.
    a = rm.add(t + timedelta(minutes=61), 60.0, True)
    b = restored.add(t + timedelta(minutes=61), 60.0, True)
    assert a == b
    assert a.mean == 40.0


def test_rolling_mean_rejects_bad_input_clearly() -> None:
    rm = RollingMean()
    with pytest.raises(ValueError, match="no timezone"):
        rm.add(datetime(2026, 1, 5, 10, 0), 1.0, True)
    with pytest.raises(ValueError, match="finite"):
        rm.add(T0, float("inf"), True)
    with pytest.raises(ValueError, match="malformed"):
        RollingMean.from_state({"window_s": 3600})
