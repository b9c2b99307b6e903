"""Frame building: known frames reproduced, split packets, 9014 answers (HJ 212-2017 App. C)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from stackwatch.beijing_time import CST
from stackwatch.hj212 import (
    build_data_ack,
    build_frames,
    crc16_bitwise,
    decode_frame,
    encode_segment,
    flag_value,
    format_number,
    frame_segment,
    make_qn,
    reassemble,
)

MN = "010000A8900016F000169DC0"


def test_encode_reproduces_standard_appendix_a() -> None:
    seg = encode_segment({"qn": "20160801085857223", "st": "32", "cn": "1062", "pw": "100000",
                          "mn": MN, "flag": 5, "cp": {"RtdInterval": "30"}})
    assert frame_segment(seg) == (
        "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
        "Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
    )


def test_encode_reproduces_2025_example_and_derived_vectors() -> None:
    base = {"qn": "20160801085857223", "pw": "123456", "mn": MN}
    cases = [
        ({**base, "qn": "20240601085857223", "st": "32", "cn": "1011", "flag": 9},
         "##0087QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&2200\r\n"),
        ({**base, "st": "91", "cn": "9011", "flag": 4, "cp": {"QnRtn": "1"}},
         "##0094QN=20160801085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=1&&1B00\r\n"),
        ({**base, "st": "32", "cn": "1000", "flag": 5, "cp": {"OverTime": "5", "ReCount": "3"}},
         "##0107QN=20160801085857223;ST=32;CN=1000;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&OverTime=5;ReCount=3&&CAC1\r\n"),
    ]
    for fields, expected in cases:
        assert frame_segment(encode_segment(fields)) == expected


def test_encode_rejects_bad_input_with_reason() -> None:
    with pytest.raises(ValidationError):
        encode_segment({"st": "31", "cn": "2011", "pw": "1"})  # no MN
    with pytest.raises(ValidationError):
        encode_segment({"st": "31", "cn": "2011", "pw": "1", "mn": "A", "flag": 300})
    with pytest.raises(ValueError, match="contains"):
        encode_segment({"st": "31", "cn": "2011", "pw": "1", "mn": "A;B"})
    with pytest.raises(ValidationError):
        encode_segment({"st": "31", "cn": "2011", "pw": "1", "mn": "A",
                        "values": {"a21026": {"Rtd": float("nan")}}})


def test_make_qn_in_china_standard_time() -> None:
    # 05:20:00.042 UTC = 13:20:00.042 +08:00 → QN 20210722132000042 (as in the 0893 packet).
    assert make_qn(datetime(2021, 7, 22, 5, 20, 0, 42000, tzinfo=UTC)) == "20210722132000042"
    with pytest.raises(ValueError):
        make_qn(datetime(2021, 7, 22, 5, 20))  # naive


def test_flag_values() -> None:
    # Table 3 (docs/hj212.md#flag): 2017 plain 4, ack 5, split 6, split+ack 7; 2025 ack 9;
    # 2005 ack 1.
    assert flag_value("2017") == 4
    assert flag_value("2017", ack=True) == 5
    assert flag_value("2017", split=True) == 6
    assert flag_value("2017", ack=True, split=True) == 7
    assert flag_value("2025", ack=True) == 9
    assert flag_value("2005", ack=True) == 1


def test_format_number() -> None:
    assert format_number(36.91) == "36.91"
    assert format_number(-0.052) == "-0.052"
    assert format_number(1e-7) == "0.0000001"
    assert format_number(1e16) == "10000000000000000"
    assert format_number(123456.0) == "123456.0"
    assert format_number(3) == "3"
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            format_number(bad)


def test_build_minute_frame() -> None:
    frames = build_frames(
        "2051", "41082201S15303", "123456", datetime(2021, 7, 22, 13, 20, tzinfo=CST),
        {"a21026": {"Min": 1.5, "Avg": 2.25, "Max": 3.0}, "a19001": {"Avg": 15.1771}},
        flags={"a21026": "N", "a19001": "T"}, qn="20210722132000042",
    )
    assert len(frames) == 1
    frame = frames[0]
    seg = (
        "QN=20210722132000042;ST=31;CN=2051;PW=123456;MN=41082201S15303;Flag=4;CP=&&"
        "DataTime=20210722132000;a21026-Min=1.5,a21026-Avg=2.25,a21026-Max=3.0,a21026-Flag=N;"
        "a19001-Avg=15.1771,a19001-Flag=T&&"
    )
    # CRC from the standard's bitwise algorithm, independent of the fast implementation.
    assert frame == f"##{len(seg):04d}{seg}{crc16_bitwise(seg.encode()):04X}\r\n"
    decoded = decode_frame(frame)
    assert decoded.ok and decoded.values["a21026"] == {"Min": 1.5, "Avg": 2.25, "Max": 3.0}
    assert decoded.flags == {"a21026": "N", "a19001": "T"}


def test_build_uses_now_for_qn_and_converts_datatime_to_cst() -> None:
    frames = build_frames("2011", "A1", "123456", datetime(2024, 1, 22, 0, 16, tzinfo=UTC),
                          {"a21026": {"Rtd": 1.0}},
                          now=datetime(2024, 1, 23, 4, 39, 50, 241000, tzinfo=UTC))
    # 00:16 UTC = 08:16 +08:00; now 04:39:50.241 UTC = 12:39:50.241 +08:00.
    assert "QN=20240123123950241;" in frames[0]
    assert "DataTime=20240122081600;" in frames[0]


def _big_values(n: int) -> dict[str, dict[str, float]]:
    return {
        f"a{21000 + i:05d}": {"Min": i + 0.5, "Avg": i + 1.25, "Max": i + 2.0, "Cou": i * 10.0}
        for i in range(n)
    }


def test_split_packets_reassemble() -> None:
    values = _big_values(40)
    flags = {code: "N" for code in values}
    frames = build_frames("2061", "NEWPROTOCOLTEST000000092", "123456",
                          datetime(2021, 7, 22, 13, 0, tzinfo=CST), values, flags=flags,
                          qn="20210722140000509")
    assert len(frames) > 1
    decoded = [decode_frame(f) for f in frames]
    for i, part in enumerate(decoded, start=1):
        assert part.ok, part.errors
        assert part.flag == 6  # 2017, split, no ack
        assert (part.pnum, part.pno) == (len(frames), i)
        assert part.qn == "20210722140000509"
        segment_len = int(frames[i - 1][2:6])
        assert segment_len <= 1024
        cp_field = frames[i - 1][frames[i - 1].index("CP=&&") : -6]
        assert len(cp_field) <= 950
        assert int(frames[i - 1][-6:-2], 16) == crc16_bitwise(frames[i - 1][6:-6].encode())
    whole = reassemble(list(reversed(decoded)))
    assert whole is not None
    assert whole.values == values and whole.flags == flags
    assert whole.data_time == datetime(2021, 7, 22, 13, 0, tzinfo=CST)


def test_reassemble_needs_every_part() -> None:
    frames = build_frames("2061", "A1", "1", datetime(2021, 7, 22, 13, tzinfo=CST),
                          _big_values(40), qn="20210722140000509")
    decoded = [decode_frame(f) for f in frames]
    assert reassemble(decoded[:-1]) is None
    assert reassemble([decoded[0], decoded[0]]) is None


def test_split_with_ack_sets_flag_7() -> None:
    frames = build_frames("2061", "A1", "1", datetime(2021, 7, 22, 13, tzinfo=CST),
                          _big_values(40), qn="20210722140000509", ack=True)
    assert all(decode_frame(f).flag == 7 for f in frames)


def test_group_too_big_for_one_packet() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_frames("2011", "A1", "1", datetime(2021, 7, 22, 13, tzinfo=CST),
                     {"a21026": {f"S{i}": 1.0 for i in range(200)}}, qn="20210722140000509")


def test_data_ack_echoes_qn() -> None:
    # The derived 9014 answer of docs/hj212.md#test-vectors (CRC FF01) answers an upload with
    # this QN.
    upload = build_frames("2011", MN, "123456", datetime(2016, 8, 1, 9, tzinfo=CST),
                          {"a21026": {"Rtd": 1.0}}, qn="20160801090000001", ack=True)[0]
    request = decode_frame(upload)
    assert request.flag == 5
    assert build_data_ack(request) == (
        "##0087QN=20160801090000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=4;CP=&&&&FF01\r\n"
    )


def test_no_ack_when_not_requested_or_crc_bad() -> None:
    plain = build_frames("2011", MN, "123456", datetime(2016, 8, 1, 9, tzinfo=CST),
                         {"a21026": {"Rtd": 1.0}}, qn="20160801090000001")[0]
    assert build_data_ack(decode_frame(plain)) is None
    acked = build_frames("2011", MN, "123456", datetime(2016, 8, 1, 9, tzinfo=CST),
                         {"a21026": {"Rtd": 1.0}}, qn="20160801090000001", ack=True)[0]
    corrupted = acked[:-6] + ("0000" if acked[-6:-2] != "0000" else "1111") + "\r\n"
    assert build_data_ack(decode_frame(corrupted)) is None


def test_ack_2025_and_2005_without_qn() -> None:
    req = decode_frame(
        "##0087QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=9;CP=&&&&2200"
    )
    ack = build_data_ack(req)
    assert ack is not None and "QN=20240601085857223;" in ack and ";Flag=8;" in ack
    old = decode_frame(frame_segment("ST=31;CN=2011;PW=1;MN=A1;Flag=1;CP=&&&&"))
    ack2 = build_data_ack(old, now=datetime(2016, 8, 24, 0, 0, 1, tzinfo=UTC))
    # 00:00:01 UTC = 08:00:01.000 +08:00.
    assert ack2 is not None and ack2.startswith("##") and "QN=20160824080001000;" in ack2
    assert ";Flag=0;" in ack2


def test_naive_datatime_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_frames("2011", "A1", "1", datetime(2021, 7, 22, 13), {"a21026": {"Rtd": 1.0}},
                     qn="20210722140000509")
