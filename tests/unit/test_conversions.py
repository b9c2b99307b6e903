"""HJ 212-2017 App. D conversions against hand-computed values.

The worked numbers: docs/conversions.md#worked-numbers.
"""

from __future__ import annotations

import math

import pytest

from stackwatch.conversions import (
    ConversionError,
    ConversionIssue,
    emission_rate_kg_h,
    hourly_std_dry_flow,
    to_reference_o2,
)


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


@pytest.mark.parametrize(
    "call",
    [
        # absolute flue pressure Ba + Ps = 100 − 500 Pa < 0
        lambda: hourly_std_dry_flow(
            1.0, temperature_c=20, ambient_pa=100.0, static_pa=-500.0, moisture_fraction=0.1
        ),
        # −300 °C is below absolute zero
        lambda: hourly_std_dry_flow(
            1.0, temperature_c=-300, ambient_pa=101325, static_pa=0, moisture_fraction=0.1
        ),
        lambda: hourly_std_dry_flow(
            math.nan, temperature_c=20, ambient_pa=101325, static_pa=0, moisture_fraction=0.1
        ),
        # moisture is a fraction in [0, 1): 1.0 (100 %) and −0.1 have no meaning
        lambda: hourly_std_dry_flow(
            1.0, temperature_c=20, ambient_pa=101325, static_pa=0, moisture_fraction=1.0
        ),
        lambda: hourly_std_dry_flow(
            1.0, temperature_c=20, ambient_pa=101325, static_pa=0, moisture_fraction=-0.1
        ),
        lambda: emission_rate_kg_h(float("inf"), 1.0),
        lambda: emission_rate_kg_h("5", 1.0),  # type: ignore[arg-type]
    ],
)
def test_physically_meaningless_input_raises_conversion_error(call: object) -> None:
    with pytest.raises(ConversionError):
        call()  # type: ignore[operator]


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(ConversionError, ValueError)
