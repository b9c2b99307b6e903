"""The real 2016 Hebei capture (../shared/data): accept every right frame, reject the rest.

Expected verdicts are computed here independently of the codec: records are cut at CRLF and
checked with a regular expression and the standard's bitwise CRC (HJ 212-2017 App. A).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from stackwatch.beijing_time import CST
from stackwatch.hj212 import DecodedFrame, crc16_bitwise, decode_frame, split_frames

CAPTURE = Path(__file__).parents[3] / "shared" / "data" / "hj212-capture-2016-08-24-05.h212"


@pytest.fixture(scope="module")
def data() -> bytes:
    return CAPTURE.read_bytes()


@pytest.fixture(scope="module")
def decoded(data: bytes) -> list[DecodedFrame]:
    return [decode_frame(r) for r in split_frames(data)]


def _independent_verdicts(data: bytes) -> list[bool]:
    verdicts = []
    for record in data.split(b"\r\n"):
        if not record:
            continue
        m = re.fullmatch(rb"##(\d{4})(.*)([0-9A-Fa-f]{4})", record, re.S)
        ok = (
            m is not None
            and len(m.group(2)) == int(m.group(1))
            and crc16_bitwise(m.group(2)) == int(m.group(3), 16)
        )
        verdicts.append(ok)
    return verdicts


def test_counts_match_independent_check(data: bytes, decoded: list[DecodedFrame]) -> None:
    expected = _independent_verdicts(data)
    assert len(expected) == 8696  # the data README: 8,696 frames
    assert len(decoded) == len(expected)
    assert [d.ok for d in decoded] == expected
    assert sum(expected) == 8692 and expected.count(False) == 4


def test_rejected_frames_have_reasons(decoded: list[DecodedFrame]) -> None:
    rejected = [d for d in decoded if not d.ok]
    assert [d.error_codes[0] for d in rejected] == [
        "length_mismatch", "bad_length_field", "length_mismatch", "length_mismatch"
    ]
    assert rejected[0].mn == "ZG130125201320"  # best-effort parse of a corrupt frame
    assert rejected[1].raw.startswith("##test13912345678")


def test_first_frames(decoded: list[DecodedFrame]) -> None:
    # Line 1: ##0091ST=91;CN=9015;...;MN=LD130121000243;Flag=0;
    #         CP=&&DataTime=20160824045356000;CON-RT=0&&8801
    first = decoded[0]
    assert (first.cn, first.mn, first.flag, first.version) == ("9015", "LD130121000243", 0, "2005")
    assert first.data_time == datetime(2016, 8, 24, 4, 53, 56, tzinfo=CST)
    assert first.cp == {"CON-RT": "0"}
    # Line 2: 2011 with 2005 codes: S01-Rtd=10.2, 01-Rtd=3.56, 01-ZsRtd=4.93, B02-Rtd=38.57
    # (no flag), S08-Rtd=395.507813.
    second = decoded[1]
    assert second.mn == "ZG130182201325" and second.cn == "2011" and second.ok
    assert second.values["a19001"] == {"Rtd": 10.2}
    assert second.values["a34013"] == {"Rtd": 3.56, "ZsRtd": 4.93}
    assert second.values["a21026"] == {"Rtd": 13.0, "ZsRtd": 18.05}
    assert second.values["a00000"] == {"Rtd": 38.57}
    assert "a00000" not in second.flags
    assert second.values["a01013"] == {"Rtd": 395.507813}
    assert second.original_codes["a34013"] == "01"
    assert "duplicate_key" in second.warning_codes  # 01-Flag repeated after 01-ZsRtd
    # Line 3: negative pressure S08-Rtd=-0.001221.
    assert decoded[2].values["a01013"] == {"Rtd": -0.001221}
    # Line 4: heartbeat ##0073ST=32;CN=8013;...;CP=&&HeartbeatTime=120&&0500
    assert decoded[3].cn == "8013" and decoded[3].cp == {"HeartbeatTime": "120"}
    # Line 7: a 2051 whose logger clock reads year 2000 (valid CRC, accepted as sent).
    assert decoded[6].data_time == datetime(2000, 2, 2, 5, 0, tzinfo=CST)
    assert decoded[6].values["a00000"]["Cou"] == 198231.17


def test_every_accepted_frame_is_clean(decoded: list[DecodedFrame]) -> None:
    for d in decoded:
        if d.ok:
            assert d.errors == [] and d.version == "2005"
