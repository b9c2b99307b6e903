"""Independent oracles the tests judge the code by (never the code under test itself)."""

from __future__ import annotations


def crc_hj212(data: bytes) -> int:
    """HJ 212-2017 App. A CRC, bit by bit as in the standard (b"123456789" → 0x2F80)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _eight_steps(c: int) -> int:
    for _ in range(8):
        c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


_STEPS = tuple(_eight_steps(c) for c in range(256))


def crc_hj212_fast(data: bytes) -> int:
    """`crc_hj212` with the eight steps per byte looked up (for large corpora).

    In `crc = (crc >> 8) ^ b` both operands are < 256, so the eight steps that follow depend on
    that one byte only. Checked against `crc_hj212` by the fuzz tests.
    """
    crc = 0xFFFF
    for b in data:
        crc = _STEPS[(crc >> 8) ^ b]
    return crc


def framed(segment: str) -> str:
    """`##` + 4-digit length + segment + CRC (§6.3.1), without CRLF."""
    return f"##{len(segment.encode()):04d}{segment}{crc_hj212(segment.encode()):04X}"


def intact(line: bytes) -> bool:
    """Length field and CRC right (§6.3.1, App. A)."""
    if len(line) < 10 or not line.startswith(b"##") or not line[2:6].isdigit():
        return False
    seg, crc = line[6:-4], line[-4:]
    try:
        return int(line[2:6]) == len(seg) and int(crc, 16) == crc_hj212(seg)
    except ValueError:
        return False
