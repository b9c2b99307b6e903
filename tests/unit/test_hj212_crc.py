"""HJ 212 CRC (HJ 212-2017 Appendix A) against known check values and the bitwise reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stackwatch.hj212.crc import CRC_TABLE, crc16, crc16_bitwise, crc16_hex, crc16_table

IMPLEMENTATIONS = (crc16_bitwise, crc16_table, crc16)

# Data segment of the standard's App. A example (p.20), whose frame ends in 1C80.
STANDARD_SEGMENT = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&"
)


def test_check_values() -> None:
    # HJ 212-2017 App. A check values (docs/hj212.md#crc): ""→FFFF, "\x00"→4040, "A"→7080,
    # "123456789"→2F80.
    for impl in IMPLEMENTATIONS:
        assert impl(b"") == 0xFFFF
        assert impl(b"\x00") == 0x4040
        assert impl(b"A") == 0x7080
        assert impl(b"123456789") == 0x2F80


def test_not_modbus() -> None:
    # CRC-16/MODBUS of "123456789" is 4B37 and CRC-16/ARC is BB3D; HJ 212 is neither.
    for impl in IMPLEMENTATIONS:
        assert impl(b"123456789") not in (0x4B37, 0xBB3D)


def test_standard_appendix_a_example() -> None:
    # 101 characters, check code printed in the frame as 1C80 (the prose misprints "1C08").
    assert len(STANDARD_SEGMENT) == 101
    for impl in IMPLEMENTATIONS:
        assert impl(STANDARD_SEGMENT) == 0x1C80
    assert crc16_hex(STANDARD_SEGMENT) == "1C80"


def test_hex_is_upper_case_and_zero_padded() -> None:
    # Derived 9014 vector (docs/hj212.md#test-vectors) ends in FF01; "" gives FFFF.
    seg = b"QN=20160801090000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"
    assert crc16_hex(seg) == "FF01"
    # 2017 Go-receiver packet 0318 ends in 6740 (leading digit kept).
    seg2 = (
        b"QN=20240123123950241;ST=31;CN=2011;PW=123456;MN=81733553216103;Flag=4;CP=&&"
        b"DataTime=20240122081600;a00000-Rtd=5.407,a00000-Flag=N;a01011-Rtd=7.072,"
        b"a01011-Flag=N;a01013-Rtd=-0.052,a01013-Flag=N;a01012-Rtd=6.480,a01012-Flag=N;"
        b"a24088-Rtd=0.804,a24088-Flag=N;a05002-Rtd=0.000,a05002-Flag=N;a01014-Rtd=0.970,"
        b"a01014-Flag=N&&"
    )
    assert crc16_hex(seg2) == "6740"


def test_table_is_the_reflected_0xa001_table() -> None:
    # Well-known first/last entries of the reflected-0xA001 (CRC-16/ARC) byte table.
    assert CRC_TABLE[:4] == (0x0000, 0xC0C1, 0xC181, 0x0140)
    assert CRC_TABLE[255] == 0x4040
    assert len(CRC_TABLE) == 256


@given(st.binary(max_size=3000))
def test_fast_and_table_equal_bitwise(data: bytes) -> None:
    expected = crc16_bitwise(data)
    assert crc16_table(data) == expected
    assert crc16(data) == expected


def test_fold_boundaries() -> None:
    # Lengths around the 8-byte word boundaries of the fold, all byte values.
    for n in (*range(1, 40), 63, 64, 65, 127, 128, 129, 1023, 1024, 1025):
        data = bytes((i * 37 + n) & 0xFF for i in range(n))
        assert crc16(data) == crc16_bitwise(data), n
