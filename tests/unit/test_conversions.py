"""HJ 212-2017 App. D conversions against hand-computed values.

The worked numbers: docs/conversions.md#worked-numbers.
"""

from __future__ import annotations

import math

import pytest

from stackwatch.conversions import (
    ConversionError,
    ConversionIssue,
    daily_emission_kg,
    daily_std_dry_flow,
    emission_rate_kg_h,
    excess_air_coefficient,
    hourly_actual_flow,
    hourly_std_dry_flow,
    kg_to_tonnes,
    nox_as_no2,
    nox_as_no2_from_ppm,
    ppm_to_mg_m3,
    to_reference_excess_air,
    to_reference_o2,
    to_standard_conditions,
    velocity,
    wet_to_dry,
)


def test_eq18_actual_to_standard_conditions() -> None:
    # 20 × 101325/(101325 − 500) × (273 + 120)/273
    # = 20 × 1.0049591 × 1.4395604 = 20 × 1.4466993 = 28.934
    csn = to_standard_conditions(20.0, ambient_pa=101325.0, static_pa=-500.0, temperature_c=120.0)
    assert csn == pytest.approx(28.934, abs=5e-4)


def test_eq18_at_standard_conditions_is_identity() -> None:
    # 101325 Pa and 0 °C are the standard conditions: factor 1.
    assert to_standard_conditions(
        7.5, ambient_pa=101325.0, static_pa=0.0, temperature_c=0.0
    ) == pytest.approx(7.5)


def test_eq19_wet_to_dry() -> None:
    # 10/(1 − 0.10) = 11.111
    assert wet_to_dry(10.0, 0.10) == pytest.approx(11.111, abs=5e-4)


def test_eq19_rejects_percent_moisture_with_hint() -> None:
    with pytest.raises(ConversionError, match="percentage"):
        wet_to_dry(10.0, 10.0)


@pytest.mark.parametrize(
    ("gas", "ppm", "expected"),
    [
        ("SO2", 100.0, 285.982),  # 64.06/22.4 = 2.859821 → × 100 = 285.982
        ("NO2", 10.0, 20.540),  # 46.01/22.4 = 2.054018 → × 10 = 20.540
        ("NO", 1.0, 1.340),  # 30.01/22.4 = 1.339732
    ],
)
def test_eq20_ppm_to_mg(gas: str, ppm: float, expected: float) -> None:
    assert ppm_to_mg_m3(ppm, gas) == pytest.approx(expected, abs=5e-4)  # type: ignore[arg-type]


def test_eq20_unknown_gas_is_a_clear_error() -> None:
    with pytest.raises(ConversionError, match="CO"):
        ppm_to_mg_m3(1.0, "CO")  # type: ignore[arg-type]


def test_eq22_nox_from_ppm() -> None:
    # (100 + 5) × 46.01/22.4 = 105 × 2.0540179 = 215.67
    assert nox_as_no2_from_ppm(100.0, 5.0) == pytest.approx(215.67, abs=5e-3)


def test_eq21_nox_from_mass() -> None:
    # 30.01 mg NO → × 46.01/30.01 = 46.01 mg as NO2; + 4 mg NO2 = 50.01
    assert nox_as_no2(30.01, 4.0) == pytest.approx(50.01, abs=1e-9)


def test_eq21_and_eq22_agree() -> None:
    # 100 ppm NO = 100 × 30.01/22.4 mg; 5 ppm NO2 = 5 × 46.01/22.4 mg; eq. 21 must give 215.67.
    no_mg = 100 * 30.01 / 22.4
    no2_mg = 5 * 46.01 / 22.4
    assert nox_as_no2(no_mg, no2_mg) == pytest.approx(215.67, abs=5e-3)


def test_eq28_kiln_reference_o2() -> None:
    # cement kiln: 8 × (21 − 10)/(21 − 12) = 8 × 11/9 = 9.778
    r = to_reference_o2(8.0, 12.0, 10.0)
    assert r.usable and r.issue is None
    assert r.value == pytest.approx(9.778, abs=5e-4)


def test_eq28_sinter_reference_o2() -> None:
    # sinter: 8 × (21 − 16)/(21 − 18) = 8 × 5/3 = 13.333
    r = to_reference_o2(8.0, 18.0, 16.0)
    assert r.value == pytest.approx(13.333, abs=5e-4)


def test_eq28_without_reference_refuses_to_convert() -> None:
    # docs/limits.md#reference-o2-by-source: a measured-basis stack must not be O2-corrected.
    r = to_reference_o2(8.0, 12.0, None)
    assert not r.usable and r.value is None
    assert r.issue is ConversionIssue.NO_REFERENCE_O2
    assert r.reason is not None and "measured" in r.reason


@pytest.mark.parametrize("o2", [20.0, 20.95, 21.0])
def test_eq28_guard_near_air(o2: float) -> None:
    r = to_reference_o2(8.0, o2, 10.0)
    assert not r.usable and r.value is None
    assert r.issue is ConversionIssue.O2_NEAR_AIR


def test_eq28_just_below_guard_still_converts() -> None:
    # 19.9 % O2: 1 × (21 − 10)/(21 − 19.9) = 11/1.1 = 10.0
    r = to_reference_o2(1.0, 19.9, 10.0)
    assert r.usable and r.value == pytest.approx(10.0)


def test_eq28_guard_threshold_is_configurable() -> None:
    # 19 % ≥ 18.5 % threshold → refused; default threshold (20 %) converts: 1 × 11/2 = 5.5
    assert (
        to_reference_o2(1.0, 19.0, 10.0, max_o2_percent=18.5).issue is ConversionIssue.O2_NEAR_AIR
    )
    assert to_reference_o2(1.0, 19.0, 10.0).value == pytest.approx(5.5)


@pytest.mark.parametrize(
    ("c", "o2", "ref"),
    [
        (float("nan"), 12.0, 10.0),
        (8.0, float("nan"), 10.0),
        (8.0, -1.0, 10.0),
        (8.0, 25.0, 10.0),
        (8.0, 12.0, 21.0),
        (8.0, 12.0, float("inf")),
        ("8", 12.0, 10.0),
    ],
)
def test_eq28_bad_input_is_marked_not_raised(c: object, o2: float, ref: float) -> None:
    r = to_reference_o2(c, o2, ref)  # type: ignore[arg-type]
    assert not r.usable and r.value is None
    assert r.issue is ConversionIssue.INVALID_INPUT
    assert r.reason


def test_eq27_excess_air_coefficient() -> None:
    # α = 21/(21 − 12) = 21/9 = 2.3333
    assert excess_air_coefficient(12.0).value == pytest.approx(2.3333, abs=5e-5)


def test_eq26_excess_air_form() -> None:
    # α = 21/(21 − 14) = 3; αs = 1.5 → 10 × 3/1.5 = 20
    r = to_reference_excess_air(10.0, 14.0, 1.5)
    assert r.usable and r.value == pytest.approx(20.0)
    assert to_reference_excess_air(10.0, 14.0, None).issue is ConversionIssue.NO_REFERENCE_O2
    assert to_reference_excess_air(10.0, 20.5, 1.5).issue is ConversionIssue.O2_NEAR_AIR
    assert to_reference_excess_air(10.0, 14.0, 0.5).issue is ConversionIssue.INVALID_INPUT


def test_eq26_equals_eq28_for_matching_reference() -> None:
    # αs = 21/(21 − 10) ⇔ O2ref = 10 %: both forms give 8 × 11/9 = 9.778
    r = to_reference_excess_air(8.0, 12.0, 21.0 / 11.0)
    assert r.value == pytest.approx(9.778, abs=5e-4)


def test_eq29_velocity() -> None:
    # Kv = 0.9, Vp = 15 m/s → 13.5 m/s
    assert velocity(0.9, 15.0) == pytest.approx(13.5)
    with pytest.raises(ConversionError):
        velocity(0.0, 15.0)


def test_eq30_hourly_actual_flow() -> None:
    # 3600 × 3 m² × 12 m/s = 129 600 m³/h
    assert hourly_actual_flow(3.0, 12.0) == pytest.approx(129_600.0)


def test_eq31_hourly_std_dry_flow() -> None:
    # 129 600 × 273/353 × (101325 − 200)/101325 × (1 − 0.08)
    # = 129 600 × 0.7733711 × 0.9980262 × 0.92 = 100 228.90 × 0.9980262 × 0.92
    # = 100 031.06 × 0.92 = 92 028.6
    q = hourly_std_dry_flow(
        129_600.0, temperature_c=80.0, ambient_pa=101325.0, static_pa=-200.0, moisture_fraction=0.08
    )
    assert q == pytest.approx(92_028.6, abs=0.05)


def test_eq33_emission_rate() -> None:
    # 9.78 mg/m³ × 500 000 m³/h × 10⁻⁶ = 4.89 kg/h
    assert emission_rate_kg_h(9.78, 500_000.0) == pytest.approx(4.89)


def test_eq32_eq34_daily_sums() -> None:
    # 24 hours of 4.89 kg → 117.36 kg/d = 0.11736 t/d; flows 2 × 92 028.6 = 184 057.2 m³
    assert daily_emission_kg([4.89] * 24) == pytest.approx(117.36)
    assert kg_to_tonnes(117.36) == pytest.approx(0.11736)
    assert daily_std_dry_flow([92_028.6, 92_028.6]) == pytest.approx(184_057.2)
    assert daily_emission_kg([]) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: to_standard_conditions(20.0, ambient_pa=100.0, static_pa=-500.0, temperature_c=20),
        lambda: to_standard_conditions(20.0, ambient_pa=101325, static_pa=0, temperature_c=-300),
        lambda: to_standard_conditions(math.nan, ambient_pa=101325, static_pa=0, temperature_c=20),
        lambda: wet_to_dry(10.0, 1.0),
        lambda: wet_to_dry(10.0, -0.1),
        lambda: hourly_actual_flow(0.0, 12.0),
        lambda: emission_rate_kg_h(float("inf"), 1.0),
        lambda: daily_emission_kg([1.0, float("nan")]),
        lambda: nox_as_no2("5", 1.0),  # type: ignore[arg-type]
    ],
)
def test_physically_meaningless_input_raises_conversion_error(call: object) -> None:
    with pytest.raises(ConversionError):
        call()  # type: ignore[operator]


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(ConversionError, ValueError)
