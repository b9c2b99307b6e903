"""Review finding on `normalise`: an O2 channel with an invalid flag must not be used for eq. 28."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import RawFrame, Reading, Verdict
from stackwatch.normalise import reading_from_raw
from stackwatch.registry import StackInfo

SO2, O2 = "a21026", "a19001"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
KILN = StackInfo(stack_id="kiln-1", mn="MNKILN00000001", sector="cement", process="kiln_tail")


def _reading(o2_flag: str) -> Reading:
    (text,) = build_frames(
        "2051", KILN.mn, "pw", T0, {SO2: {"Avg": 8.0}, O2: {"Avg": 12.0}},
        flags={SO2: "N", O2: o2_flag}, now=T0,
    )
    raw = RawFrame(text=text, received_at=T0 + timedelta(minutes=1), peer="10.0.0.9:4000",
                   mn=KILN.mn, verdict=Verdict.ACCEPTED, reasons=[])
    result = reading_from_raw(raw, {KILN.mn: KILN}.get, lambda _s, _t: 10.0)
    assert isinstance(result, Reading), result
    return result


def test_o2_normal_converts() -> None:
    # Eq. 28 with reference 10 %: 8 × (21 − 10)/(21 − 12) = 88/9 = 9.7778.
    assert _reading("N").values[SO2].zs == pytest.approx(88 / 9)


@pytest.mark.parametrize("flag", ["D", "M", "C", "F"])
def test_o2_with_invalid_flag_is_not_used_for_conversion(flag: str) -> None:
    # Table 8: an O2 value flagged D/M/C/F is not valid data, so the SO2 (flagged N) cannot
    # be put on the reference O2 from it: no converted value, and the reason says why.
    reading = _reading(flag)
    assert reading.values[SO2].value == 8.0
    assert reading.values[SO2].zs is None
    assert reading.values[SO2].zs_issue == "o2_invalid_flag"


def _huge_so2_frame() -> RawFrame:
    # SO2 1E308 mg/m³ (a corrupt but CRC-valid, finite value) at O2 19 %: eq. 28 gives
    # 1E308 × (21 − 10)/(21 − 19) = 5.5E308, which overflows a double to inf.
    from stackwatch.hj212.crc import crc16_hex

    seg = (
        "QN=20261102100100000;ST=31;CN=2051;PW=pw;MN=MNKILN00000001;Flag=4;"
        "CP=&&DataTime=20261102100000;a21026-Avg=1E308,a21026-Flag=N;"
        "a19001-Avg=19.0,a19001-Flag=N&&"
    )
    text = f"##{len(seg):04d}{seg}{crc16_hex(seg.encode())}\r\n"
    return RawFrame(text=text, received_at=T0 + timedelta(minutes=1), peer="10.0.0.9:4000",
                    mn=KILN.mn, verdict=Verdict.ACCEPTED, reasons=[])


def test_converted_value_that_overflows_is_refused_not_infinite() -> None:
    result = reading_from_raw(_huge_so2_frame(), {KILN.mn: KILN}.get, lambda _s, _t: 10.0)
    assert isinstance(result, Reading), result
    assert result.values[SO2].value == 1e308
    assert result.values[SO2].zs is None
    assert result.values[SO2].zs_issue == "invalid_input"


def test_processor_survives_the_overflowing_reading() -> None:
    from stackwatch.compliance import Limit, LimitKind
    from stackwatch.processor import StackProcessor
    from stackwatch.stack_limits import StackLimits

    reading = reading_from_raw(_huge_so2_frame(), {KILN.mn: KILN}.get, lambda _s, _t: 10.0)
    assert isinstance(reading, Reading)
    limits = StackLimits(
        ref_o2=10.0,
        by_factor={SO2: (Limit(limit_mg_m3=35.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0),)},
    )
    out = StackProcessor("kiln-1").on_reading(reading, limits)
    (rec,) = [a for a in out.aggregates if a.factor == SO2]
    assert rec.mean == 1e308 and rec.zs_mean is None


def test_reading_contract_refuses_nan_and_infinity() -> None:
    # A reading on the topic with NaN would crash the detectors mid-update: refuse it at the
    # boundary (pydantic) so it is dead-lettered with a reason instead.
    from pydantic import ValidationError

    body = (
        '{"stack_id":"s","mn":"m","cn":"2051","kind":"minute","sector":"cement",'
        '"process":"kiln_tail","data_time":"2026-11-02T10:00:00+08:00",'
        '"received_at":"2026-11-02T10:01:00+08:00","values":{"a21026":{"value":%s}}}'
    )
    for bad in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValidationError):
            Reading.model_validate_json(body % bad)
    with pytest.raises(ValidationError):
        Reading.model_validate_json(body.replace('"values"', '"flow_std_dry_m3_h":NaN,"values"')
                                    % "1.0")
