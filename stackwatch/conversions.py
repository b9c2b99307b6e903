"""Flue-gas unit and condition conversions (HJ 212-2017 Appendix D.2, citing HJ/T 75-2007).

Every function carries its Appendix D equation number. Concentrations are mg/m³ unless the
name says otherwise; pressures are Pa (HJ 212 reports a01013 in kPa — convert first);
temperatures are °C; moisture (a01014, reported in %) is a *volume fraction* 0 ≤ Xsw < 1 here.

Two error styles, chosen deliberately:

* The plain physics (eq. 18–22, 29–34) raises `ConversionError` (a `ValueError`) for input
  that has no physical meaning (NaN, absolute pressure ≤ 0, moisture ≥ 100 %, ...). That is
  bad data, and the caller turns it into a dead letter with the message as the reason.
* The oxygen corrections (eq. 26–28) never raise: they return a `Converted` result that is
  either usable or carries an `issue` and a human-readable `reason`. An O2 reading close to
  21 % is a normal *operating* state (start-up, shutdown, fan purge with air), not bad data,
  and the pipeline must keep running and mark the value rather than explode (HJ 212-2017
  App. D eq. 28; docs/conversions.md#guards).
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

STANDARD_PRESSURE_PA = 101325.0
"""Standard pressure of HJ 212-2017 App. D eq. 18/31."""

STANDARD_TEMPERATURE_K = 273.0
"""Standard temperature as written in App. D eq. 18/31 (273, not 273.15)."""


AIR_O2_PERCENT = 21.0
"""O2 content of air assumed by App. D eq. 26–28."""


DEFAULT_MAX_O2_PERCENT = 20.0
"""Project choice, NOT from the standard: at measured O2 ≥ 20.0 % (21 − O2 ≤ 1) a converted
value is marked unusable, because the factor (21 − O2ref)/(21 − O2) grows without bound near
air and a 0.1 % O2 error changes the result by ≥ 10 %. Callers may pass another threshold."""


class ConversionError(ValueError):
    """Input with no physical meaning for a conversion (the message says which and why)."""


class ConversionIssue(StrEnum):
    """Why an oxygen-corrected value is not usable."""

    NO_REFERENCE_O2 = "no_reference_o2"
    O2_NEAR_AIR = "o2_near_air"
    INVALID_INPUT = "invalid_input"


class Converted(BaseModel):
    """Result of an O2 / excess-air correction: a usable value, or none plus the reason."""

    model_config = ConfigDict(frozen=True)

    value: float | None
    usable: bool
    issue: ConversionIssue | None = None
    reason: str | None = None

    @classmethod
    def ok(cls, value: float) -> Converted:
        """A usable converted value."""
        return cls(value=value, usable=True)

    @classmethod
    def refused(cls, issue: ConversionIssue, reason: str) -> Converted:
        """No value; `reason` says why (shown to operators and written to the database)."""
        return cls(value=None, usable=False, issue=issue, reason=reason)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConversionError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConversionError(f"{name} must be finite, got {value!r}")
    return float(value)


def _moisture(moisture_fraction: float) -> float:
    x = _finite("moisture_fraction", moisture_fraction)
    if not 0.0 <= x < 1.0:
        hint = " (a percentage? pass a fraction, e.g. 0.08 for 8 %)" if 1.0 <= x <= 100.0 else ""
        raise ConversionError(f"moisture_fraction must be in [0, 1), got {x}{hint}")
    return x


def _absolute_pressure(ambient_pa: float, static_pa: float) -> float:
    p = _finite("ambient_pa", ambient_pa) + _finite("static_pa", static_pa)
    if p <= 0.0:
        raise ConversionError(
            f"absolute flue pressure Ba+Ps must be > 0 Pa, got {p} "
            "(pressures are Pa; HJ 212 a01013 is kPa)"
        )
    return p


def _kelvin(temperature_c: float) -> float:
    t = STANDARD_TEMPERATURE_K + _finite("temperature_c", temperature_c)
    if t <= 0.0:
        raise ConversionError(f"flue temperature must be above absolute zero, got {t - 273} °C")
    return t


def _o2_problem(o2_dry_percent: float, max_o2_percent: float) -> Converted | None:
    """Shared guard of eq. 26–28; None if the measured O2 allows a conversion."""
    if isinstance(o2_dry_percent, bool) or not isinstance(o2_dry_percent, int | float):
        return Converted.refused(
            ConversionIssue.INVALID_INPUT, f"O2 is not a number: {o2_dry_percent!r}"
        )
    if not math.isfinite(o2_dry_percent) or not 0.0 <= o2_dry_percent <= AIR_O2_PERCENT:
        return Converted.refused(
            ConversionIssue.INVALID_INPUT,
            f"measured O2 {o2_dry_percent} % is outside 0–21 % (dry basis expected)",
        )
    if o2_dry_percent >= max_o2_percent:
        return Converted.refused(
            ConversionIssue.O2_NEAR_AIR,
            f"measured O2 {o2_dry_percent} % ≥ {max_o2_percent} %: flue gas is nearly air "
            "(start-up/shutdown/purge); the O2 correction is meaningless",
        )
    return None


def _concentration_problem(c: float) -> Converted | None:
    if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
        return Converted.refused(
            ConversionIssue.INVALID_INPUT, f"concentration is not a finite number: {c!r}"
        )
    return None


def to_reference_o2(
    c_dry_std: float,
    o2_dry_percent: float,
    o2_reference_percent: float | None,
    *,
    max_o2_percent: float = DEFAULT_MAX_O2_PERCENT,
) -> Converted:
    """Standard dry concentration → concentration at the reference O2 (App. D eq. 28).

    `C_zs = C × (21 − O2ref)/(21 − O2)` with O2 on a dry basis. When the source has no
    reference O2 (`None`: it is judged on measured concentration, e.g. cement mills,
    docs/limits.md#reference-o2-by-source) the value must NOT be converted: the result is
    refused with `NO_REFERENCE_O2` and the caller uses the measured value itself. Measured O2 ≥
    `max_o2_percent` (a project choice,
    see `DEFAULT_MAX_O2_PERCENT`) yields `O2_NEAR_AIR` instead of a huge number.
    """
    if o2_reference_percent is None:
        return Converted.refused(
            ConversionIssue.NO_REFERENCE_O2,
            "no reference O2 defined for this source: it is judged on the measured "
            "concentration, which must not be O2-corrected (HJ 212-2017 App. D.2; "
            "docs/limits.md#reference-o2-by-source)",
        )
    if (
        isinstance(o2_reference_percent, bool)
        or not isinstance(o2_reference_percent, int | float)
        or not math.isfinite(o2_reference_percent)
        or not 0.0 <= o2_reference_percent < AIR_O2_PERCENT
    ):
        return Converted.refused(
            ConversionIssue.INVALID_INPUT,
            f"reference O2 {o2_reference_percent!r} must be a number in [0, 21) %",
        )
    problem = _concentration_problem(c_dry_std) or _o2_problem(o2_dry_percent, max_o2_percent)
    if problem is not None:
        return problem
    factor = (AIR_O2_PERCENT - o2_reference_percent) / (AIR_O2_PERCENT - o2_dry_percent)
    return Converted.ok(float(c_dry_std) * factor)


def hourly_std_dry_flow(
    q_actual_m3_h: float,
    *,
    temperature_c: float,
    ambient_pa: float,
    static_pa: float,
    moisture_fraction: float,
) -> float:
    """Hourly flow actual wet → standard dry (App. D eq. 31), m³/h.

    `Q_snh = Q_sh × 273/(273 + ts) × (Ba + Ps)/101325 × (1 − Xsw)`.
    """
    q = _finite("q_actual_m3_h", q_actual_m3_h)
    p = _absolute_pressure(ambient_pa, static_pa)
    x = _moisture(moisture_fraction)
    return q * STANDARD_TEMPERATURE_K / _kelvin(temperature_c) * p / STANDARD_PRESSURE_PA * (1 - x)


def emission_rate_kg_h(conc_mg_m3: float, q_std_dry_m3_h: float) -> float:
    """Hourly emission (App. D eq. 33): `G_h = C_h × Q_snh × 10⁻⁶` kg/h (mg → kg)."""
    return _finite("conc_mg_m3", conc_mg_m3) * _finite("q_std_dry_m3_h", q_std_dry_m3_h) * 1e-6


