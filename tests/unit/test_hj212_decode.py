"""decode_frame on the verbatim examples and negative vectors (docs/hj212.md#test-vectors)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stackwatch.beijing_time import CST
from stackwatch.hj212 import DecodedFrame, decode_frame, frame_segment

# --- verbatim examples (docs/hj212.md#test-vectors) ---------------------------------------
EX1_STANDARD = "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80"  # noqa: E501 (verbatim vector)
EX2_2025 = "##0087QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&2200"  # noqa: E501 (verbatim vector)
EX3_WATER_2005 = "##0139ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;B01-Rtd=36.91;011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&4980"  # noqa: E501 (verbatim vector)
EX10_0893 = "##0893QN=20210722132000042;ST=31;CN=2051;PW=123456;MN=41082201S15303;Flag=4;CP=&&DataTime=20210722132000;a24088-Min=0.0002,a24088-Avg=0.0002,a24088-Max=0.0002,a24088-ZsMin=0.0002,a24088-ZsAvg=0.0002,a24088-ZsMax=0.0002,a24088-Cou=0.0000,a24088-Flag=N;a01012-Min=39.4953,a01012-Avg=39.4953,a01012-Max=39.4953,a01012-Flag=T;a01013-Min=-120.4117,a01013-Avg=-120.4117,a01013-Max=-120.4117,a01013-Flag=T;a01011-Min=5.8497,a01011-Avg=5.8497,a01011-Max=5.8497,a01011-Flag=T;a05002-Min=0.0221,a05002-Avg=0.0221,a05002-Max=0.0221,a05002-ZsMin=0.0221,a05002-ZsAvg=0.0221,a05002-ZsMax=0.0221,a05002-Cou=0.0000,a05002-Flag=N;a24087-Min=0.0223,a24087-Avg=0.0223,a24087-Max=0.0223,a24087-ZsMin=0.0223,a24087-ZsAvg=0.0223,a24087-ZsMax=0.0223,a24087-Cou=0.0000,a24087-Flag=N;a01014-Min=9.4608,a01014-Avg=9.4608,a01014-Max=9.4608,a01014-Flag=T;a19001-Min=15.1771,a19001-Avg=15.1771,a19001-Max=15.1771,a19001-Flag=T&&24C0"  # noqa: E501 (verbatim vector)
EX11_0813 = "##0813QN=20210722140000509;ST=31;CN=2061;PW=123456;MN=NEWPROTOCOLTEST000000092;Flag=4;CP=&&DataTime=20210722130000;a24088-Min=0.0000,a24088-Avg=0.0196,a24088-Max=0.1988,a24088-Cou=0.0003,a24088-Flag=N;a01012-Min=38.9250,a01012-Avg=39.7515,a01012-Max=40.7387,a01012-Flag=T;a01013-Min=-130.7116,a01013-Avg=-123.0723,a01013-Max=-115.9674,a01013-Flag=T;a01011-Min=5.4136,a01011-Avg=5.7286,a01011-Max=5.8780,a01011-Flag=T;a05002-Min=0.0110,a05002-Avg=0.1293,a05002-Max=1.1489,a05002-Cou=0.0017,a05002-Flag=N;a24087-Min=0.0110,a24087-Avg=0.1489,a24087-Max=1.3478,a24087-Cou=0.0019,a24087-Flag=N;a01014-Min=9.4451,a01014-Avg=9.6075,a01014-Max=9.9131,a01014-Flag=T;a19001-Min=15.1661,a19001-Avg=15.1909,a19001-Max=15.2188,a19001-Flag=T;a00000-Min=3.7077,a00000-Avg=3.9151,a00000-Max=4.0276,a00000-Cou=12758.2462,a00000-Flag=N&&5140"  # noqa: E501 (verbatim vector)
EX12_0612 = "##0612QN=20240123101501421;ST=31;CN=2061;PW=123456;MN=81733553216103;Flag=4;CP=&&DataTime=20240122170000;a00000-Cou=19191.973,a00000-Min=5.051,a00000-Avg=5.331,a00000-Max=5.617,a00000-Flag=N;a01011-Min=6.686,a01011-Avg=7.029,a01011-Max=7.425,a01011-Flag=N;a01013-Min=-0.041,a01013-Avg=-0.026,a01013-Max=0.011,a01013-Flag=N;a01012-Min=8.074,a01012-Avg=8.524,a01012-Max=8.789,a01012-Flag=N;a24088-Cou=0.018,a24088-Min=0.665,a24088-Avg=0.933,a24088-Max=1.418,a24088-Flag=N;a05002-Cou=0.000,a05002-Min=0.000,a05002-Avg=0.000,a05002-Max=0.000,a05002-Flag=N;a01014-Min=0.828,a01014-Avg=1.040,a01014-Max=1.239,a01014-Flag=N&&0E40"  # noqa: E501 (verbatim vector)
EX13_0318 = "##0318QN=20240123123950241;ST=31;CN=2011;PW=123456;MN=81733553216103;Flag=4;CP=&&DataTime=20240122081600;a00000-Rtd=5.407,a00000-Flag=N;a01011-Rtd=7.072,a01011-Flag=N;a01013-Rtd=-0.052,a01013-Flag=N;a01012-Rtd=6.480,a01012-Flag=N;a24088-Rtd=0.804,a24088-Flag=N;a05002-Rtd=0.000,a05002-Flag=N;a01014-Rtd=0.970,a01014-Flag=N&&6740"  # noqa: E501 (verbatim vector)
EX14_AIR = "##0411QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&DataTime=20220513162600;a21004-Avg=4,a21004-Flag=N;a05024-Avg=63,a05024-Flag=N;a21026-Avg=6,a21026-Flag=N;a21005-Avg=0.427,a21005-Flag=N;a34004-Avg=14,a34004-Flag=N;a34002-Avg=31,a34002-Flag=N;a01007-Avg=1,a01007-Flag=N;a01008-Avg=11,a01008-Flag=N;a01001-Avg=17,a01001-Flag=N;a01002-Avg=85,a01002-Flag=N;a01006-Avg=95,a01006-Flag=N&&D641"  # noqa: E501 (verbatim vector)
EX15_EMPTY_CP = "##0069QN=20230723080035006;ST=91;CN=9021;PW=123456;MN=000201;Flag=4;CP=&&&&BDC1"
EX16_WATER_ST31 = "##0354QN=20230803171130538;ST=31;CN=2011;PW=123456;MN=88888880000001234567;Flag=5;CP=&&DataTime=20230803165500;w01001-Rtd=0.000,w01001-Flag=N;w21003-Rtd=0.000,w21003-Flag=N;w01018-Rtd=0.000,w01018-Flag=N;e01002-Rtd=0.000,e01002-Flag=N;w01010-Rtd=0.000,w01010-Flag=N;e01001-Rtd=0.000,e01001-Flag=N;w01003-Rtd=0.000,w01003-Flag=N;w21011-Rtd=0.000,w21011-Flag=N&&A141"  # noqa: E501 (verbatim vector)
EX17_ALL_FAULT = "##0328ST=31;CN=2011;PW=123456;MN=88888880000001;CP=&&DataTime=20171219115817;S01-Rtd=0.00,S01-Flag=D;S02-Rtd=0.00,S02-Flag=D;S03-Rtd=0.00,S03-Flag=D;02-Rtd=0.00,02-Flag=D;S05-Rtd=0.00,S05-Flag=D;03-Rtd=0.00,03-Flag=D;01-ZsRtd=0.00;S08-Rtd=0.000000,S08-Flag=D;B02-Rtd=0.00,B02-Flag=D;01-Rtd=0.00,01-Flag=D;02-ZsRtd=0.00;03-ZsRtd=0.00&&B681"  # noqa: E501 (verbatim vector)
EX18_QN_2005 = "##0372QN=20180315134456001;ST=31;CN=2011;PW=123456;MN=TY0102183V0001;CP=&&DataTime=20180315134400;S03-Rtd=147.12,S03-Flag=N;S08-Rtd=1.349,S08-Flag=N;S05-Rtd=8.000,S05-Flag=N;S01-Rtd=14.913,S01-Flag=N;S02-Rtd=6.38,S02-Flag=N;B02-Rtd=3600.0,B02-Flag=N;01-Rtd=25.2100,01-ZsRtd=63.6616,01-Flag=N;02-Rtd=20.3400,02-ZsRtd=51.0317,02-Flag=N;03-Rtd=50.5467,03-ZsRtd=125.0510,03-Flag=N&&A781"  # noqa: E501 (verbatim vector)
DER_9011 = "##0094QN=20160801085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=1&&1B00"  # noqa: E501 (verbatim vector)
DER_9012 = "##0095QN=20160801085857223;ST=91;CN=9012;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&ExeRtn=1&&6240"  # noqa: E501 (verbatim vector)
DER_9014 = "##0087QN=20160801090000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&FF01"  # noqa: E501 (verbatim vector)
DER_2061_REQ = "##0134QN=20160801085857223;ST=32;CN=2061;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&BeginTime=20160801080000;EndTime=20160801080000&&7EC0"  # noqa: E501 (verbatim vector)
DER_1000 = "##0107QN=20160801085857223;ST=32;CN=1000;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&OverTime=5;ReCount=3&&CAC1"  # noqa: E501 (verbatim vector)

ALL_VALID = [
    EX1_STANDARD, EX2_2025, EX3_WATER_2005, EX10_0893, EX11_0813, EX12_0612, EX13_0318,
    EX14_AIR, EX15_EMPTY_CP, EX16_WATER_ST31, EX17_ALL_FAULT, EX18_QN_2005, DER_9011,
    DER_9012, DER_9014, DER_2061_REQ, DER_1000,
]


def codes(frame: DecodedFrame) -> list[str]:
    return frame.error_codes


@pytest.mark.parametrize("text", ALL_VALID)
def test_every_valid_example_is_accepted(text: str) -> None:
    frame = decode_frame(text)
    assert frame.ok, frame.errors
    assert frame.crc_ok and frame.length_ok
    assert frame.errors == []
    assert frame.raw == text
    # The CRC field printed in the example is what the decoder accepted.
    assert int(text[2:6]) == len(text) - 10


def test_standard_appendix_a() -> None:
    f = decode_frame(EX1_STANDARD)
    assert (f.qn, f.st, f.cn, f.pw, f.mn) == (
        "20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0"
    )
    # Flag=5 = 0b101: version bits 1 (2017), A=1, D=0.
    assert (f.flag, f.version, f.ack_requested, f.split) == (5, "2017", True, False)
    assert f.cp == {"RtdInterval": "30"}
    assert f.values == {} and f.data_time is None


def test_2025_flag_9() -> None:
    f = decode_frame(EX2_2025)
    # Flag=9 = 0b1001: version bits 2 (HJ 212-2025), A=1.
    assert (f.flag, f.version, f.ack_requested, f.split) == (9, "2025", True, False)
    assert f.cn == "1011" and f.cp == {} and f.values == {}


def test_water_2005_unmapped_and_17_digit_datatime() -> None:
    f = decode_frame(EX3_WATER_2005)
    assert f.version == "2005" and f.flag is None and f.qn is None
    # 17 digits: 2016-08-24 00:38:17.000 in +08:00.
    assert f.data_time == datetime(2016, 8, 24, 0, 38, 17, tzinfo=CST)
    assert f.values == {"B01": {"Rtd": 36.91}, "011": {"Rtd": 231.0}, "060": {"Rtd": 1.803}}
    assert f.flags == {"011": "N", "060": "N"}
    assert f.original_codes == {}


def test_2017_minute_packet_values() -> None:
    f = decode_frame(EX10_0893)
    assert f.version == "2017" and f.flag == 4 and not f.ack_requested
    assert f.data_time == datetime(2021, 7, 22, 13, 20, tzinfo=CST)
    assert f.values["a24088"] == {
        "Min": 0.0002, "Avg": 0.0002, "Max": 0.0002, "ZsMin": 0.0002, "ZsAvg": 0.0002,
        "ZsMax": 0.0002, "Cou": 0.0,
    }
    assert f.values["a01013"] == {"Min": -120.4117, "Avg": -120.4117, "Max": -120.4117}
    assert f.flags["a01012"] == "T" and f.flags["a24088"] == "N"
    assert len(f.values) == 8 and len(f.flags) == 8


def test_2017_hour_packets() -> None:
    f = decode_frame(EX11_0813)
    assert f.cn == "2061" and f.data_time == datetime(2021, 7, 22, 13, 0, tzinfo=CST)
    assert f.values["a00000"]["Cou"] == 12758.2462
    assert f.values["a01013"]["Max"] == -115.9674
    g = decode_frame(EX12_0612)
    assert g.values["a00000"] == {"Cou": 19191.973, "Min": 5.051, "Avg": 5.331, "Max": 5.617}
    assert len(g.values) == 7


def test_2017_realtime_and_air() -> None:
    f = decode_frame(EX13_0318)
    assert f.values["a01013"] == {"Rtd": -0.052}
    assert f.values["a01012"] == {"Rtd": 6.48}
    a = decode_frame(EX14_AIR)
    assert a.st == "22" and a.values["a21026"] == {"Avg": 6.0} and len(a.values) == 11


def test_unknown_cn_and_empty_cp_pass_through() -> None:
    f = decode_frame(EX15_EMPTY_CP)
    assert f.ok and f.cn == "9021" and f.values == {} and f.cp == {}


def test_water_codes_with_st31_pass_through() -> None:
    f = decode_frame(EX16_WATER_ST31)
    assert f.st == "31" and f.ack_requested
    assert set(f.values) == {
        "w01001", "w21003", "w01018", "e01002", "w01010", "e01001", "w01003", "w21011"
    }
    assert f.values["w01018"] == {"Rtd": 0.0}


def test_2005_codes_mapped_to_2017() -> None:
    f = decode_frame(EX18_QN_2005)
    assert f.version == "2005" and f.qn == "20180315134456001"
    # HJ 212-2017 App. B.2: 01→a34013 dust, 02→a21026 SO2, 03→a21002 NOx, S01→a19001 O2,
    # S02→a01011 velocity, S03→a01012 temperature, S05→a01014 humidity, S08→a01013
    # pressure, B02→a00000 flue gas flow.
    assert f.values["a34013"] == {"Rtd": 25.21, "ZsRtd": 63.6616}
    assert f.values["a21026"] == {"Rtd": 20.34, "ZsRtd": 51.0317}
    assert f.values["a21002"] == {"Rtd": 50.5467, "ZsRtd": 125.051}
    assert f.values["a19001"] == {"Rtd": 14.913}
    assert f.values["a01011"] == {"Rtd": 6.38}
    assert f.values["a01012"] == {"Rtd": 147.12}
    assert f.values["a01014"] == {"Rtd": 8.0}
    assert f.values["a01013"] == {"Rtd": 1.349}
    assert f.values["a00000"] == {"Rtd": 3600.0}
    assert f.original_codes == {
        "a01012": "S03", "a01013": "S08", "a01014": "S05", "a19001": "S01", "a01011": "S02",
        "a00000": "B02", "a34013": "01", "a21026": "02", "a21002": "03",
    }
    assert "01" not in f.values


def test_all_fault_packet() -> None:
    f = decode_frame(EX17_ALL_FAULT)
    assert f.ok
    assert set(f.flags.values()) == {"D"}
    assert f.values["a34013"] == {"ZsRtd": 0.0, "Rtd": 0.0}
    assert f.flags["a01013"] == "D"  # S08


def test_interaction_packets() -> None:
    assert decode_frame(DER_9011).cp == {"QnRtn": "1"}
    assert decode_frame(DER_9012).cp == {"ExeRtn": "1"}
    assert decode_frame(DER_2061_REQ).cp == {
        "BeginTime": "20160801080000", "EndTime": "20160801080000"
    }
    assert decode_frame(DER_1000).cp == {"OverTime": "5", "ReCount": "3"}


def test_json_shape() -> None:
    d = decode_frame(EX13_0318).to_json_dict()
    assert list(d)[:15] == [
        "ok", "crc_ok", "length_ok", "version", "qn", "st", "cn", "pw", "mn", "flag",
        "data_time", "values", "flags", "errors", "warnings",
    ]
    assert d["data_time"] == "2024-01-22T08:16:00+08:00"
    assert d["values"]["a00000"] == {"Rtd": 5.407}


# --- accepted input forms ------------------------------------------------------------------
def test_crlf_bytes_and_literal_crlf_accepted() -> None:
    assert decode_frame(EX1_STANDARD + "\r\n").ok
    assert decode_frame((EX1_STANDARD + "\r\n").encode()).ok
    assert decode_frame(EX1_STANDARD + "\\r\\n").ok


def test_lowercase_crc_accepted_with_warning() -> None:
    f = decode_frame(EX12_0612[:-4] + "0e40")
    assert f.ok and "lowercase_crc" in f.warning_codes


# --- negative vectors (docs/hj212.md#test-vectors) ----------------------------------------
def test_appendix_a_misprint_1c08_rejected() -> None:
    f = decode_frame(EX1_STANDARD[:-4] + "1C08")
    assert not f.ok and not f.crc_ok and f.error_codes == ["bad_crc"]
    # Still parsed best-effort so the raw layer can show who sent it.
    assert f.mn == "010000A8900016F000169DC0"


def _framed(segment: str) -> DecodedFrame:
    """Frame with a right length and CRC, so only the content can be wrong."""
    return decode_frame(frame_segment(segment))


def test_comma_instead_of_semicolon_in_header() -> None:
    f = _framed("QN=20160801085857534,ST=32;CN=2011;PW=123456;MN=A1;CP=&&&&")
    assert f.crc_ok and not f.ok
    assert "bad_field" in codes(f) and "missing_field" in codes(f)  # QN malformed, ST absent


def test_missing_semicolon_before_cp() -> None:
    f = _framed("QN=20160801085857534;ST=32;CN=2011;PW=123456;MN=A1;Flag=5CP=&&&&")
    assert not f.ok and "bad_separator" in codes(f)


def test_water_code_missing_w() -> None:
    f = _framed("ST=32;CN=2011;PW=123456;MN=A1;CP=&&DataTime=20160801085857;01018-Rtd=2.2&&")
    assert not f.ok and codes(f) == ["bad_factor_code"]


def test_spaces_inside_cp() -> None:
    f = _framed("ST=32;CN=3020;PW=123456;MN=A1;CP=&& PolId=w01018&&")
    assert not f.ok and codes(f) == ["bad_key"]
    g = _framed("ST=32;CN=3020;PW=123456;MN=A1;CP=&& &&")
    assert not g.ok and codes(g) == ["bad_item"]


def test_no_header() -> None:
    f = decode_frame("0101QN=20160801085857223;ST=32;CP=&&&&1C80")
    assert not f.ok and codes(f) == ["garbage"]


def test_non_digit_length() -> None:
    f = decode_frame("##12abQN=1;CP=&&&&1C80")
    assert not f.ok and codes(f) == ["bad_length_field"]


def test_missing_cp_terminator() -> None:
    f = _framed("ST=32;CN=2011;PW=123456;MN=A1;CP=&&DataTime=20160801085857")
    assert not f.ok and "missing_cp_terminator" in codes(f)


def test_missing_cp() -> None:
    f = _framed("ST=32;CN=2011;PW=123456;MN=A1")
    assert not f.ok and "missing_cp" in codes(f)


def test_length_mismatch() -> None:
    f = decode_frame(EX1_STANDARD.replace("##0101", "##0102"))
    assert not f.ok and not f.length_ok and codes(f)[0] == "length_mismatch"


def test_cp_longer_than_950() -> None:
    # Header "ST=31;CN=2011;PW=1;MN=A;" is 24 chars; data area 944 → CP field
    # 5 + 944 + 2 = 951 > 950, segment 24 + 951 = 975 ≤ 1024: only the CP rule is broken.
    area = "DataTime=20160801085857;XY=" + "1" * (944 - 27)
    assert len(area) == 944
    f = _framed("ST=31;CN=2011;PW=1;MN=A;CP=&&" + area + "&&")
    assert not f.ok and codes(f) == ["cp_too_long"]


def test_cp_of_exactly_950_is_fine() -> None:
    # Data area 943 → CP field 5 + 943 + 2 = 950.
    area = "DataTime=20160801085857;XY=" + "1" * (943 - 27)
    f = _framed("ST=31;CN=2011;PW=1;MN=A;CP=&&" + area + "&&")
    assert f.ok, f.errors


def test_segment_longer_than_1024_without_split() -> None:
    values = ";".join(f"a{20000 + i:05d}-Rtd=1.000" for i in range(60))
    seg = "QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=A1;Flag=4;CP=&&" + values + "&&"
    assert len(seg) > 1024
    f = _framed(seg)
    assert not f.ok and f.crc_ok and "segment_too_long" in codes(f)


def test_pnum_pno_without_d_bit() -> None:
    f = _framed("QN=20160801085857223;ST=31;CN=2011;PW=1;MN=A1;Flag=4;PNUM=2;PNO=1;CP=&&&&")
    assert not f.ok and codes(f) == ["bad_split"]


def test_d_bit_without_pnum_pno() -> None:
    f = _framed("QN=20160801085857223;ST=31;CN=2011;PW=1;MN=A1;Flag=6;CP=&&&&")
    assert not f.ok and codes(f) == ["bad_split"]


def test_flag_above_255() -> None:
    f = _framed("QN=20160801085857223;ST=31;CN=2011;PW=1;MN=A1;Flag=256;CP=&&&&")
    assert not f.ok and codes(f) == ["bad_flag"]


def test_unknown_version_bits() -> None:
    # Flag=12 = 0b1100: version bits 3, not defined.
    f = _framed("QN=20160801085857223;ST=31;CN=2011;PW=1;MN=A1;Flag=12;CP=&&&&")
    assert not f.ok and codes(f) == ["unsupported_version"] and f.version is None


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "1_0", " 1", "1,5", "--1", "1e999"])
def test_non_numeric_values_rejected(value: str) -> None:
    f = _framed(f"ST=31;CN=2011;PW=1;MN=A1;CP=&&a21026-Rtd={value}&&")
    assert not f.ok
    assert "non_numeric_value" in codes(f) or "bad_item" in codes(f)


@pytest.mark.parametrize(("value", "expected"), [
    ("12.5", 12.5), ("-0.25", -0.25), ("+3", 3.0), (".5", 0.5), ("7.", 7.0), ("1.5E+2", 150.0),
])
def test_numeric_forms(value: str, expected: float) -> None:
    f = _framed(f"ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime=20160801085857;a21026-Rtd={value}&&")
    assert f.ok and f.values == {"a21026": {"Rtd": expected}}


def test_datatime_14_and_17_digits_and_invalid() -> None:
    f = _framed("ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime=20160824050243123&&")
    assert f.data_time == datetime(2016, 8, 24, 5, 2, 43, 123000, tzinfo=CST)
    g = _framed("ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime=20160824050243&&")
    assert g.data_time == datetime(2016, 8, 24, 5, 2, 43, tzinfo=CST)
    assert g.data_time is not None and g.data_time.utcoffset() == timedelta(hours=8)
    for bad in ("20161324050243", "2016082405024", "201608240502431", "20160230000000"):
        h = _framed(f"ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime={bad}&&")
        assert not h.ok and codes(h) == ["bad_datatime"], bad


def test_duplicate_keys_last_wins_with_warning() -> None:
    # Real 2005 traffic: 01-Flag repeated after 01-ZsRtd.
    f = _framed(
        "ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime=20160801085857;"
        "01-Rtd=3.56,01-Flag=N;01-ZsRtd=4.93,01-Flag=D;01-Rtd=9&&"
    )
    assert f.ok
    assert f.values == {"a34013": {"Rtd": 9.0, "ZsRtd": 4.93}}
    assert f.flags == {"a34013": "D"}
    assert f.warning_codes.count("duplicate_key") == 2


def test_other_cp_fields_kept_as_strings() -> None:
    f = _framed(
        "ST=31;CN=2021;PW=1;MN=A1;CP=&&DataTime=20160824045500;SB1-RS=0;SB1-RT=23.5;"
        "01-EFlag=A01,01-SampleTime=20160824045000;HeartbeatTime=120&&"
    )
    assert f.ok
    assert f.cp == {
        "SB1-RS": "0", "SB1-RT": "23.5", "a34013-EFlag": "A01",
        "a34013-SampleTime": "20160824045000", "HeartbeatTime": "120",
    }
    assert f.original_codes == {}  # no measured value for 01 here


def test_unknown_data_flag_is_a_warning() -> None:
    f = _framed(
        "ST=31;CN=2011;PW=1;MN=A1;CP=&&DataTime=20160801085857;a21026-Rtd=1,a21026-Flag=H&&"
    )
    assert f.ok and f.flags == {"a21026": "H"} and f.warning_codes == ["unknown_data_flag"]


def test_utf8_segment() -> None:
    seg = "ST=31;CN=3020;PW=1;MN=A1;CP=&&i12001-Info=设备正常&&"
    f = decode_frame(frame_segment(seg))
    assert f.ok and f.cp == {"i12001-Info": "设备正常"}


def test_resend_marker_2025() -> None:
    f = _framed("QN=20240601085857223;ST=32;CN=2011;PW=1;MN=A1;Flag=8;RF=1;CP=&&&&")
    assert f.ok and f.resend and f.version == "2025"


def test_never_raises_on_odd_input() -> None:
    for junk in ("", "##", "##0000", "##00001234", "\x00" * 20, "##0004CP=&FFFF", "🙂" * 9):
        f = decode_frame(junk)
        assert not f.ok and f.errors


def test_2025_split_flags_10_and_11() -> None:
    # Flag=10 = 0b1010 (2025, split), Flag=11 = 0b1011 (2025, split, ack).
    f = _framed("QN=20240601085857223;ST=32;CN=2011;PW=1;MN=A1;Flag=10;PNUM=2;PNO=1;CP=&&&&")
    assert f.ok and (f.version, f.split, f.ack_requested, f.pnum, f.pno) == (
        "2025", True, False, 2, 1
    )
    g = _framed("QN=20240601085857223;ST=32;CN=2011;PW=1;MN=A1;Flag=11;PNUM=2;PNO=2;CP=&&&&")
    assert g.ok and g.ack_requested and g.pno == 2
    h = _framed("QN=20240601085857223;ST=32;CN=2011;PW=1;MN=A1;Flag=11;PNUM=2;PNO=3;CP=&&&&")
    assert not h.ok and codes(h) == ["bad_split"]


def test_values_without_datatime_rejected() -> None:
    f = _framed("ST=31;CN=2011;PW=1;MN=A1;CP=&&a21026-Rtd=1.5,a21026-Flag=N&&")
    assert not f.ok and codes(f) == ["missing_field"]
    # A host request (2061 with BeginTime/EndTime) has no DataTime and is fine.
    g = _framed("QN=20160801085857223;ST=32;CN=2061;PW=1;MN=A1;Flag=5;"
                "CP=&&BeginTime=20160801080000;EndTime=20160801080000&&")
    assert g.ok
