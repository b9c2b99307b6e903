"""`reading_from_raw`: decode + validate + normalise, against hand-computed values.

Equations are HJ 212-2017 Appendix D: eq. 28 (reference O2), eq. 31 (standard dry flow),
eq. 33 (emission rate). Every expected number is written out with its arithmetic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.limits import default_catalogue
from stackwatch.models import RawFrame, Reading, ReadingKind, Verdict
from stackwatch.normalise import NormaliseConfig, Refusal, reading_from_raw
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.stack_limits import LimitResolver

SO2, O2, FLOW, TEMP, PRES, HUM = "a21026", "a19001", "a00000", "a01012", "a01013", "a01014"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
KILN = StackInfo(stack_id="kiln-1", mn="MNKILN00000001", sector="cement", process="kiln_tail")
MILL = StackInfo(stack_id="mill-1", mn="MNMILL00000001", sector="cement", process="cement_mill")
REGISTRY = StackRegistry(stacks=[KILN, MILL])
RESOLVER = LimitResolver(default_catalogue())


def ref_o2_for(stack: StackInfo, ts: datetime) -> float | None:
    return RESOLVER.for_stack(stack, ts.astimezone(CST).date()).ref_o2


def raw(text: str, *, verdict: Verdict = Verdict.ACCEPTED, reasons: list[str] | None = None,
        mn: str | None = None) -> RawFrame:
    return RawFrame(text=text, received_at=T0 + timedelta(minutes=1), peer="10.0.0.9:4000",
                    mn=mn, verdict=verdict, reasons=reasons or [])


def minute(stack: StackInfo, values: dict[str, float]) -> RawFrame:
    (text,) = build_frames("2051", stack.mn, "pw", T0, {c: {"Avg": v} for c, v in values.items()},
                           now=T0)
    return raw(text, mn=stack.mn)


def ok(result: Reading | Refusal) -> Reading:
    assert isinstance(result, Reading), result
    return result


def test_so2_converted_to_reference_o2() -> None:
    reading = ok(reading_from_raw(minute(KILN, {SO2: 8.0, O2: 12.0}), REGISTRY.by_mn, ref_o2_for))
    # Cement kiln tail: reference O2 10 %. Eq. 28: 8 × (21 − 10)/(21 − 12) = 8 × 11/9 = 9.778.
    assert reading.ref_o2 == 10.0
    assert reading.o2 == 12.0
    assert reading.values[SO2].zs == pytest.approx(9.778, abs=5e-4)
    assert reading.values[SO2].value == 8.0
    assert reading.kind is ReadingKind.MINUTE and reading.stack_id == "kiln-1"


def test_o2_near_air_is_not_converted() -> None:
    # O2 20.5 %: 21 − 20.5 = 0.5 ≤ 1 — the factor 11/0.5 = 22 would be noise (project guard 20 %).
    reading = ok(reading_from_raw(minute(KILN, {SO2: 8.0, O2: 20.5}), REGISTRY.by_mn, ref_o2_for))
    assert reading.values[SO2].zs is None
    assert reading.values[SO2].zs_issue == "o2_near_air"
    assert reading.values[SO2].value == 8.0  # the measured value is kept


def test_guard_threshold_is_configuration() -> None:
    cfg = NormaliseConfig(max_o2_percent=20.8)
    reading = ok(
        reading_from_raw(minute(KILN, {SO2: 8.0, O2: 20.5}), REGISTRY.by_mn, ref_o2_for, cfg)
    )
    # 8 × (21 − 10)/(21 − 20.5) = 8 × 22 = 176.
    assert reading.values[SO2].zs == pytest.approx(176.0)


def test_stack_without_reference_o2_is_never_converted() -> None:
    # Cement mill: limits apply to measured values (no reference O2 in GB 4915).
    reading = ok(reading_from_raw(minute(MILL, {SO2: 8.0, O2: 12.0}), REGISTRY.by_mn, ref_o2_for))
    assert reading.ref_o2 is None
    assert reading.values[SO2].zs is None
    assert reading.values[SO2].zs_issue == "no_reference_o2"


def test_standard_dry_flow_and_emission_rate() -> None:
    values = {SO2: 8.0, O2: 10.0, FLOW: 50.0, TEMP: 120.0, PRES: -0.5, HUM: 8.0}
    reading = ok(reading_from_raw(minute(KILN, values), REGISTRY.by_mn, ref_o2_for))
    # Eq. 31: Q_snh = Q_s·3600 × 273/(273 + t) × (Ba + Ps)/101325 × (1 − Xsw)
    #   = 50·3600 × 273/393 × (101325 − 500)/101325 × (1 − 0.08)
    #   = 125 038.17 × 0.9950654 × 0.92 = 124 421.16 × 0.92 = 114 467.46 m³/h
    expected_flow = 50 * 3600 * 273 / 393 * (101325 - 500) / 101325 * 0.92
    assert reading.flow_std_dry_m3_h == pytest.approx(expected_flow)
    assert reading.flow_std_dry_m3_h == pytest.approx(114467.46, abs=0.01)
    # Eq. 33: G = C × Q_snh × 10⁻⁶ = 8 × 114 467.46 × 10⁻⁶ = 0.915740 kg/h.
    assert reading.emission_kg_h[SO2] == pytest.approx(0.915740, abs=1e-6)


def test_flow_without_temperature_is_not_normalised_but_flagged() -> None:
    reading = ok(reading_from_raw(minute(KILN, {SO2: 8.0, FLOW: 50.0}), REGISTRY.by_mn,
                                  ref_o2_for))
    assert reading.flow_std_dry_m3_h is None
    assert any(w.startswith("flow_not_normalised") for w in reading.warnings)
    assert reading.emission_kg_h == {}


def test_unknown_mn_is_refused() -> None:
    stranger = KILN.model_copy(update={"mn": "MNSTRANGER0001"})
    result = reading_from_raw(minute(stranger, {SO2: 8.0}), REGISTRY.by_mn, ref_o2_for)
    assert isinstance(result, Refusal)
    assert result.reason == "unknown_mn"
    assert result.mn == "MNSTRANGER0001"


def test_rejected_raw_frame_keeps_the_gateway_reason() -> None:
    frame = minute(KILN, {SO2: 8.0})
    rejected = frame.model_copy(
        update={"verdict": Verdict.REJECTED, "reasons": ["bad_password: PW does not match"]}
    )
    result = reading_from_raw(rejected, REGISTRY.by_mn, ref_o2_for)
    assert isinstance(result, Refusal)
    assert result.reason == "bad_password"
    assert "PW does not match" in result.detail


def test_corrupt_frame_is_refused_with_the_decoder_reason() -> None:
    frame = minute(KILN, {SO2: 8.0})
    corrupt = frame.model_copy(update={"text": frame.text.replace("Avg=8", "Avg=9")})
    result = reading_from_raw(corrupt, REGISTRY.by_mn, ref_o2_for)
    assert isinstance(result, Refusal) and result.reason == "bad_crc"


def test_2005_codes_are_mapped_to_2017() -> None:
    # HJ/T 212-2005 codes: 02 = SO2, S01 = O2 (HJ 212-2017 App. B maps them to a21026, a19001).
    (text,) = build_frames("2051", KILN.mn, "pw", T0, {"02": {"Avg": 8.0}, "S01": {"Avg": 12.0}},
                           now=T0, version="2005")
    reading = ok(reading_from_raw(raw(text, mn=KILN.mn), REGISTRY.by_mn, ref_o2_for))
    assert set(reading.values) == {SO2, O2}
    assert reading.values[SO2].zs == pytest.approx(88 / 9)  # 8 × 11/9, as above
