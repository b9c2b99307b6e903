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
* Emission rate per pollutant (eq. 33): `G = C × Q_snh × 10⁻⁶` kg/h, measured concentration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.averaging import DEFAULT_FLAGS
from stackwatch.conversions import (
    DEFAULT_MAX_O2_PERCENT,
    ConversionError,
    ConversionIssue,
    emission_rate_kg_h,
    hourly_std_dry_flow,
    to_reference_o2,
)
from stackwatch.hj212 import DecodedFrame, decode_frame
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
    frame = decode_frame(raw.text)
    if not frame.ok:
        reason = frame.error_codes[0] if frame.errors else "invalid_frame"
        return Refusal(reason=reason, detail="; ".join(frame.errors), mn=frame.mn)
    if frame.mn is None or frame.cn is None:
        return Refusal(reason="missing_field", detail="frame has no MN or CN", mn=frame.mn)
    stack = lookup_stack(frame.mn)
    if stack is None:
        return Refusal(reason="unknown_mn", detail=f"MN {frame.mn} is not registered", mn=frame.mn)
    return normalise(frame, stack, raw, ref_o2_for, cfg or NormaliseConfig())


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
    zs_suffix = "Zs" + suffix
    ref_o2 = ref_o2_for(stack, frame.data_time)
    o2 = frame.values.get(O2, {}).get(suffix)
    # An O2 value flagged invalid (F/M/D/C/T/B, Table 8) is not data: converting with it would
    # give a "normal" converted concentration from a faulty or calibrating O2 analyser.
    o2_usable = o2 is not None and frame.flags.get(O2, "N") in cfg.valid_flags
    values: dict[str, FactorReading] = {}
    for code, fields in frame.values.items():
        value = fields.get(suffix)
        flag = frame.flags.get(code, "N")
        zs: float | None = None
        zs_issue: str | None = None
        if code in POLLUTANTS and value is not None:
            if value < 0:
                warnings.append(f"negative_value: {code}={value}")
            if ref_o2 is None:
                zs_issue = ConversionIssue.NO_REFERENCE_O2.value
            elif o2 is None:
                zs_issue = "no_o2"
            elif not o2_usable:
                zs_issue = "o2_invalid_flag"
            else:
                converted = to_reference_o2(
                    value, o2, ref_o2, max_o2_percent=cfg.max_o2_percent
                )
                zs = converted.value
                zs_issue = converted.issue.value if converted.issue is not None else None
                if zs is not None and not math.isfinite(zs):
                    # A huge (finite) value × the O2 factor overflows: refuse, never emit inf.
                    zs, zs_issue = None, ConversionIssue.INVALID_INPUT.value
        values[code] = FactorReading(
            value=value,
            flag=flag,
            min=fields.get("Min"),
            max=fields.get("Max"),
            cou=fields.get("Cou"),
            zs=zs,
            zs_issue=zs_issue,
            logger_zs=fields.get(zs_suffix),
        )
    flow = _std_dry_flow(frame, suffix, cfg, warnings)
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
        **common,
    )


def _std_dry_flow(
    frame: DecodedFrame, suffix: str, cfg: NormaliseConfig, warnings: list[str]
) -> float | None:
    """Standard dry flow in m³/h (App. D eq. 30–31), or None when it cannot be had."""
    flow = frame.values.get(FLOW, {}).get(suffix)
    if flow is None:
        return None
    if cfg.flow_basis == "std_dry_m3_h":
        return flow
    if cfg.flow_basis == "std_dry_m3_s":
        return flow * 3600.0
    temperature = frame.values.get(TEMPERATURE, {}).get(suffix)
    pressure_kpa = frame.values.get(PRESSURE, {}).get(suffix)
    humidity = frame.values.get(HUMIDITY, {}).get(suffix)
    if temperature is None or pressure_kpa is None or humidity is None:
        warnings.append("flow_not_normalised: temperature, pressure or humidity missing")
        return None
    try:
        return hourly_std_dry_flow(
            flow * 3600.0,
            temperature_c=temperature,
            ambient_pa=cfg.ambient_pa,
            static_pa=pressure_kpa * 1000.0,
            moisture_fraction=humidity / 100.0,
        )
    except ConversionError as exc:
        warnings.append(f"flow_not_normalised: {exc}")
        return None
