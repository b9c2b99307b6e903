"""Decode, validate and normalise one raw frame into a `Reading` (pure; no I/O).

The streams layer calls `reading_from_raw` for every record of the raw topic. It returns a
`Reading` or a `Refusal` (which becomes a dead letter with its reason): nothing is dropped
silently. Normalisation follows HJ 212-2017 Appendix D.2:

* Concentrations reported by the data logger are taken as standard-dry values (HJ 75 requires
  the DAS to report them so); they are converted to the reference O2 of the stack's limit with
  eq. 28, guarded near 21 % O2 (`conversions.to_reference_o2`).
* The flue-gas flow `a00000` is converted to standard dry m³/h with eq. 31 when temperature,
  static pressure and humidity are present. Whether a logger reports `a00000` as actual wet
  m³/s (as printed in App. B.2) or already as standard dry differs by vendor — UNCONFIRMED, so
  it is configuration (`NormaliseConfig.flow_basis`).
* Emission rate per pollutant (eq. 33): `G = C × Q_snh × 10⁻⁶` kg/h, measured concentration,
  only with a valid flow.

Real loggers (docs/loggers.md) add what the standard does not say:

* Only flue gas (ST 31) is averaged and judged; wastewater (ST 32) readings are kept as data.
* The flue-gas pressure a01013 arrives in kPa, Pa or as absolute pressure: the stack's
  registry unit converts it to gauge kPa, and an implausible value is not used for the flow.
* O2 ≤ 0 (no analyser) or at/above `max_o2_percent` is not used for conversion, and is flagged.
* A stopped stack (停运: O2 at air with no flow, or a channel flagged F) is marked `stopped`;
  its values are never O2-converted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.averaging import DEFAULT_FLAGS
from stackwatch.conversions import (
    AIR_O2_PERCENT,
    DEFAULT_MAX_O2_PERCENT,
    ConversionError,
    ConversionIssue,
    emission_rate_kg_h,
    hourly_std_dry_flow,
    to_reference_o2,
)
from stackwatch.hj212 import DecodedFrame, decode_frame
from stackwatch.intervals import DEFAULT_LABELS, PERIOD_OF_CN, IntervalLabel
from stackwatch.models import (
    CN_KINDS,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Verdict,
)
from stackwatch.registry import StackInfo

O2 = "a19001"
FLOW = "a00000"
VELOCITY = "a01011"
TEMPERATURE = "a01012"
PRESSURE = "a01013"
HUMIDITY = "a01014"

POLLUTANTS: frozenset[str] = frozenset(
    {
        "a34013",  # particulate
        "a21026",  # SO2
        "a21002",  # NOx (as NO2)
        "a21003",  # NO
        "a21004",  # NO2
        "a21005",  # CO
        "a21001",  # NH3
        "a21018",  # fluoride
        "a21024",  # HCl
        "a21022",  # Cl2
        "a24088",  # NMHC
    }
)
"""Concentration factors that are O2-corrected and have an emission rate."""

VALUE_SUFFIX: dict[ReadingKind, str] = {
    ReadingKind.REALTIME: "Rtd",
    ReadingKind.MINUTE: "Avg",
    ReadingKind.HOUR: "Avg",
    ReadingKind.DAY: "Avg",
}


class NormaliseConfig(BaseModel):
    """Site configuration of the normaliser (defaults documented in the README)."""

    model_config = ConfigDict(frozen=True)

    ambient_pa: float = Field(
        default=101325.0,
        gt=0,
        description="Ambient pressure Ba for eq. 31 when the site does not report it.",
    )
    flow_basis: Literal["actual_wet_m3_s", "std_dry_m3_h", "std_dry_m3_s"] = Field(
        default="actual_wet_m3_s",
        description="How loggers report a00000 (vendor-specific; UNCONFIRMED in the standard).",
    )
    max_o2_percent: float = Field(
        default=DEFAULT_MAX_O2_PERCENT,
        gt=0,
        lt=21,
        description="At or above this measured O2 a converted value is unusable (near air).",
    )
    valid_flags: frozenset[str] = Field(
        default=DEFAULT_FLAGS.valid_flags,
        description="Flags of a usable O2 value for eq. 28 (Table 8: N, S).",
    )
    flue_gas_systems: frozenset[str] = Field(
        default=frozenset({"31"}),
        description="HJ 212 system codes (ST) averaged and judged as flue gas (31 = air "
        "pollution source); others (32 wastewater, …) are kept as readings only.",
    )
    interval_labels: dict[str, IntervalLabel] = Field(
        default_factory=lambda: dict(DEFAULT_LABELS),
        description="Default label of 2051/2061/2031 DataTimes per protocol version: 'start' "
        "(HJ 212-2017 App. C) or 'end' (observed on HJ/T 212-2005 loggers; UNCONFIRMED).",
    )
    max_abs_static_kpa: float = Field(
        default=20.0,
        gt=0,
        description="A flue-gas static pressure (gauge) beyond ± this many kPa is implausible "
        "and not used for the flow (usually a Pa/kPa unit error).",
    )
    stop_o2_percent: float = Field(
        default=19.5,
        gt=0,
        le=21,
        description="O2 at or above this with no flow means the stack is stopped (停运).",
    )
    stop_max_flow: float = Field(
        default=1.0,
        ge=0,
        description="A flow a00000 at or below this (in the logger's unit) counts as no flow.",
    )
    stop_max_velocity: float = Field(
        default=1.0, ge=0, description="A velocity a01011 at or below this (m/s) is no flow."
    )
    stop_flags: frozenset[str] = Field(
        default=frozenset({"F"}),
        description="Data flags that mark a stopped stack (Table 8: F 停运).",
    )


class Refusal(BaseModel):
    """Why a raw frame produced no reading (becomes a dead letter)."""

    model_config = ConfigDict(frozen=True)

    reason: str = Field(description="Stable code, e.g. unknown_mn, bad_crc, missing_datatime.")
    detail: str
    mn: str | None = None


RefO2Lookup = Callable[[StackInfo, datetime], float | None]
"""Reference O2 (%) of a stack's limits on a date; None = judged on measured values."""


def reading_from_raw(
    raw: RawFrame,
    lookup_stack: Callable[[str], StackInfo | None],
    ref_o2_for: RefO2Lookup,
    cfg: NormaliseConfig | None = None,
) -> Reading | Refusal:
    """Decode, validate and normalise one raw-topic record."""
    if raw.verdict is not Verdict.ACCEPTED:
        reason = raw.reasons[0].partition(":")[0] if raw.reasons else "rejected"
        return Refusal(reason=reason, detail="; ".join(raw.reasons) or "rejected", mn=raw.mn)
    # A masked password changed the length and CRC; the gateway judged both on the original.
    frame = decode_frame(raw.decrypted or raw.text, verified=raw.redacted)
    if not frame.ok:
        reason = frame.error_codes[0] if frame.errors else "invalid_frame"
        return Refusal(reason=reason, detail="; ".join(frame.errors), mn=frame.mn)
    if frame.mn is None or frame.cn is None:
        return Refusal(reason="missing_field", detail="frame has no MN or CN", mn=frame.mn)
    stack = lookup_stack(frame.mn)
    if stack is None:
        return Refusal(reason="unknown_mn", detail=f"MN {frame.mn} is not registered", mn=frame.mn)
    return normalise(frame, stack, raw, ref_o2_for, cfg or NormaliseConfig())


SECURITY_REASONS = frozenset({"not_encrypted", "no_key", "wrong_key", "bad_ciphertext"})
"""Gateway refusals on encryption grounds: the stack is alerted (HJ 212-2025)."""


def security_event(
    raw: RawFrame, lookup_stack: Callable[[str], StackInfo | None], cfg: NormaliseConfig
) -> Reading | None:
    """The event a refused frame raises when it was refused on encryption grounds and its
    logger is registered (a clear upload where encryption is required, a frame no key
    opens); None otherwise."""
    reason = next((r for r in raw.reasons if r in SECURITY_REASONS), None)
    if raw.verdict is Verdict.ACCEPTED or reason is None or raw.mn is None:
        return None
    stack = lookup_stack(raw.mn)
    if stack is None:
        return None
    frame = decode_frame(raw.text)
    return Reading(
        stack_id=stack.stack_id,
        mn=raw.mn,
        st=frame.st,
        cn=frame.cn or raw.cn or "0000",
        kind=ReadingKind.EVENT,
        sector=stack.sector,
        process=stack.process,
        data_time=None,
        received_at=raw.received_at,
        peer=raw.peer,
        flue_gas=_flue_gas(frame, stack, cfg),
        security=reason,
    )


def normalise(
    frame: DecodedFrame,
    stack: StackInfo,
    raw: RawFrame,
    ref_o2_for: RefO2Lookup,
    cfg: NormaliseConfig,
) -> Reading | Refusal:
    """Turn a decoded, authenticated frame into a `Reading`."""
    assert frame.cn is not None and frame.mn is not None
    kind = CN_KINDS.get(frame.cn, ReadingKind.EVENT)
    common = {
        "stack_id": stack.stack_id,
        "mn": frame.mn,
        "st": frame.st,
        "cn": frame.cn,
        "kind": kind,
        "sector": stack.sector,
        "process": stack.process,
        "received_at": raw.received_at,
        "peer": raw.peer,
        "flue_gas": _flue_gas(frame, stack, cfg),
        "resent": frame.resend,
        "encrypted": raw.decrypted is not None,
    }
    if kind is ReadingKind.EVENT:
        return Reading(data_time=frame.data_time, cp=dict(frame.cp), **common)
    if frame.data_time is None:
        return Refusal(
            reason="missing_datatime",
            detail=f"CN {frame.cn} data upload without a DataTime",
            mn=frame.mn,
        )
    warnings: list[str] = []
    suffix = VALUE_SUFFIX[kind]
    values = _factor_readings(frame, suffix, stack, cfg, warnings)
    _derive_nox(values, cfg, warnings)
    stop_reason = _stop_reason(values, cfg)
    ref_o2 = ref_o2_for(stack, frame.data_time)
    o2 = values[O2].value if O2 in values else None
    o2_problem = _o2_problem(values.get(O2), cfg, warnings)
    for code, factor in values.items():
        if code in POLLUTANTS and factor.value is not None:
            values[code] = _converted(code, factor, ref_o2, o2, o2_problem, stop_reason, cfg,
                                      warnings)
    flow = _std_dry_flow(values, cfg, warnings)
    if flow is not None and not math.isfinite(flow):
        warnings.append(f"flow_not_normalised: standard dry flow {flow} is not finite")
        flow = None
    emission: dict[str, float] = {}
    if flow is not None:
        for code, factor in values.items():
            if code in POLLUTANTS and factor.value is not None and factor.value >= 0:
                rate = emission_rate_kg_h(factor.value, flow)
                if math.isfinite(rate):
                    emission[code] = rate
    return Reading(
        data_time=frame.data_time,
        ref_o2=ref_o2,
        o2=o2,
        flow_std_dry_m3_h=flow,
        values=values,
        emission_kg_h=emission,
        warnings=warnings + list(frame.warnings),
        cp=dict(frame.cp),
        interval_label=stack.interval_label
        or cfg.interval_labels.get(frame.version or "2005", "start"),
        interval_s=_declared_interval_s(frame.cn, stack),
        stopped=stop_reason is not None,
        stop_reason=stop_reason,
        **common,
    )


def _flue_gas(frame: DecodedFrame, stack: StackInfo, cfg: NormaliseConfig) -> bool | None:
    """True for flue-gas data; None for interaction frames (ST 91) of a flue-gas logger's
    registry entry left open; False for wastewater and other systems."""
    st = frame.st if frame.st not in (None, "91") else stack.system_type
    if st is None:
        return None
    return st in cfg.flue_gas_systems


def _declared_interval_s(cn: str, stack: StackInfo) -> int | None:
    if cn == "2051":
        return stack.min_interval_min * 60 if stack.min_interval_min is not None else None
    if cn == "2011":
        return stack.rtd_interval_s
    period = PERIOD_OF_CN.get(cn)
    return int(period.total_seconds()) if period is not None else None


NOX, NO, NO2 = "a21002", "a21003", "a21004"

#: NO expressed as NO2 (46/30, rounded as HJ 75-2017 writes it): NOx = 1.53 × NO + NO2.
NO_AS_NO2 = 1.53


def _derive_nox(
    values: dict[str, FactorReading], cfg: NormaliseConfig, warnings: list[str]
) -> None:
    """NOx (as NO2) from NO and NO2 when the logger sends those but no a21002 (HJ 75-2017:
    NOx = 1.53 × NO + NO2). The flag is NO's unless NO2's is invalid; the logger's own
    converted values are not combined (ours are computed from the derived value)."""
    no, no2 = values.get(NO), values.get(NO2)
    if NOX in values or no is None or no2 is None or no.value is None or no2.value is None:
        return
    flag = no2.flag if no2.flag not in cfg.valid_flags else no.flag
    cou = None
    if no.cou is not None and no2.cou is not None:
        cou = NO_AS_NO2 * no.cou + no2.cou
    values[NOX] = FactorReading(value=NO_AS_NO2 * no.value + no2.value, flag=flag, cou=cou)
    warnings.append("nox_derived: a21002 = 1.53 × a21003 (NO) + a21004 (NO2) (HJ 75-2017)")


def _factor_readings(
    frame: DecodedFrame,
    suffix: str,
    stack: StackInfo,
    cfg: NormaliseConfig,
    warnings: list[str],
) -> dict[str, FactorReading]:
    zs_suffix = "Zs" + suffix
    values: dict[str, FactorReading] = {}
    for code, fields in frame.values.items():
        reading = FactorReading(
            value=fields.get(suffix),
            flag=frame.flags.get(code, "N"),
            min=fields.get("Min"),
            max=fields.get("Max"),
            cou=fields.get("Cou"),
            logger_zs=fields.get(zs_suffix),
        )
        if code == PRESSURE:
            reading = _pressure_kpa(reading, stack, cfg, warnings)
        values[code] = reading
    return values


def _pressure_kpa(
    reading: FactorReading, stack: StackInfo, cfg: NormaliseConfig, warnings: list[str]
) -> FactorReading:
    """a01013 as gauge static pressure in kPa (eq. 31 needs Ps), per the stack's unit."""
    unit = stack.pressure_unit or "kPa"
    ambient_kpa = cfg.ambient_pa / 1000.0

    def convert(value: float | None) -> float | None:
        if value is None:
            return None
        if unit == "Pa":
            return value / 1000.0
        if unit == "kPa_abs":
            return value - ambient_kpa
        if unit == "Pa_abs":
            return value / 1000.0 - ambient_kpa
        return value

    converted = reading.model_copy(
        update={
            "value": convert(reading.value),
            "min": convert(reading.min),
            "max": convert(reading.max),
        }
    )
    value = converted.value
    if value is not None and abs(value) > cfg.max_abs_static_kpa:
        warnings.append(
            f"pressure_implausible: {PRESSURE}={reading.value} read as {unit} is "
            f"{value:g} kPa gauge (beyond ±{cfg.max_abs_static_kpa:g} kPa): not used for the "
            "flow; set pressure_unit for this stack"
        )
        return converted.model_copy(update={"issue": "pressure_implausible"})
    return converted


def _stop_reason(values: dict[str, FactorReading], cfg: NormaliseConfig) -> str | None:
    """Why this reading shows a stopped stack (停运), or None while it runs.

    O2 at air with no flow (flow or velocity at/below the configured floor; a stack that
    reports neither is not judged stopped on O2 alone: a dust stack runs at air O2), or every
    flagged pollutant channel carrying a stop flag (Table 8: F) — one analyser flagged F is
    that instrument, not the stack.
    """
    flagged = [values[c].flag for c in sorted(POLLUTANTS) if c in values]
    if flagged and all(flag in cfg.stop_flags for flag in flagged):
        return f"pollutant channels flagged {flagged[0]}"
    o2 = values.get(O2)
    if o2 is None or o2.value is None or o2.value < cfg.stop_o2_percent:
        return None
    channels = (
        (FLOW, values.get(FLOW), cfg.stop_max_flow),
        (VELOCITY, values.get(VELOCITY), cfg.stop_max_velocity),
    )
    measured = [(code, f.value, floor) for code, f, floor in channels
                if f is not None and f.value is not None]
    if not measured or any(value > floor for _, value, floor in measured):
        return None
    no_flow = ", ".join(f"{code}={value:g}" for code, value, _ in measured)
    return f"O2 {o2.value:g} % ≥ {cfg.stop_o2_percent:g} % with no flow ({no_flow})"


def _o2_problem(
    o2: FactorReading | None, cfg: NormaliseConfig, warnings: list[str]
) -> str | None:
    """Why the measured O2 cannot be used for eq. 28, or None (flagged in `warnings`)."""
    if o2 is None or o2.value is None:
        return "no_o2"
    if o2.flag not in cfg.valid_flags:
        # A faulty or calibrating O2 analyser (F/M/D/C/T/B, Table 8) would give a "normal"
        # converted concentration: not data.
        return "o2_invalid_flag"
    if o2.value <= 0 or o2.value >= cfg.max_o2_percent or o2.value > AIR_O2_PERCENT:
        warnings.append(
            f"o2_implausible: {O2}={o2.value:g} % is outside (0, {cfg.max_o2_percent:g}) %: "
            "not used for O2 conversion"
        )
        return "o2_implausible" if o2.value <= 0 else ConversionIssue.O2_NEAR_AIR.value
    return None


def _converted(
    code: str,
    factor: FactorReading,
    ref_o2: float | None,
    o2: float | None,
    o2_problem: str | None,
    stop_reason: str | None,
    cfg: NormaliseConfig,
    warnings: list[str],
) -> FactorReading:
    """The factor with its value at the reference O2 (`zs`), or the reason it has none."""
    assert factor.value is not None
    if factor.value < 0:
        warnings.append(f"negative_value: {code}={factor.value}")
    zs: float | None = None
    if ref_o2 is None:
        issue: str | None = ConversionIssue.NO_REFERENCE_O2.value
    elif stop_reason is not None:
        issue = "stopped"
    elif o2_problem is not None or o2 is None:
        issue = o2_problem or "no_o2"
    else:
        converted = to_reference_o2(factor.value, o2, ref_o2, max_o2_percent=cfg.max_o2_percent)
        zs = converted.value
        issue = converted.issue.value if converted.issue is not None else None
        if zs is not None and not math.isfinite(zs):
            # A huge (finite) value × the O2 factor overflows: refuse, never emit inf.
            zs, issue = None, ConversionIssue.INVALID_INPUT.value
    return factor.model_copy(update={"zs": zs, "zs_issue": issue})


def _std_dry_flow(
    values: dict[str, FactorReading], cfg: NormaliseConfig, warnings: list[str]
) -> float | None:
    """Standard dry flow in m³/h (App. D eq. 30–31), or None when it cannot be had.

    None also when the flow channel is flagged invalid (Table 8): no mass from a faulty meter.
    """
    flow_reading = values.get(FLOW)
    if flow_reading is None or flow_reading.value is None:
        return None
    if flow_reading.flag not in cfg.valid_flags:
        warnings.append(f"flow_not_normalised: {FLOW} flagged {flow_reading.flag}")
        return None
    flow = flow_reading.value
    if cfg.flow_basis == "std_dry_m3_h":
        return flow
    if cfg.flow_basis == "std_dry_m3_s":
        return flow * 3600.0
    temperature = values.get(TEMPERATURE)
    pressure = values.get(PRESSURE)
    humidity = values.get(HUMIDITY)
    if (
        temperature is None or temperature.value is None
        or pressure is None or pressure.value is None
        or humidity is None or humidity.value is None
    ):
        warnings.append("flow_not_normalised: temperature, pressure or humidity missing")
        return None
    if pressure.issue is not None:
        warnings.append(f"flow_not_normalised: {pressure.issue}")
        return None
    try:
        return hourly_std_dry_flow(
            flow * 3600.0,
            temperature_c=temperature.value,
            ambient_pa=cfg.ambient_pa,
            static_pa=pressure.value * 1000.0,
            moisture_fraction=humidity.value / 100.0,
        )
    except ConversionError as exc:
        warnings.append(f"flow_not_normalised: {exc}")
        return None
