"""HJ 212 check code (HJ 212-2017 Appendix A; unchanged in HJ 212-2025 App. A.1).

The algorithm is *not* CRC-16/MODBUS: per byte the register is first shifted right by eight
and only then XOR-ed with the byte (C reference: ``crc_reg = (crc_reg >> 8) ^ puchMsg[i]``),
followed by eight reflected shift/XOR-0xA001 steps. It is computed over the data segment only
(from ``QN=``/``ST=`` to the closing ``&&``) and printed as four upper-case hex digits.

Three implementations, all tested against each other:

* :func:`crc16_bitwise` — the standard's algorithm, literally; the reference.
* :func:`crc16_table` — one table lookup per byte. After ``c = (crc >> 8) ^ byte`` the
  eight steps depend only on ``c``, so they are ``TABLE[c & 0xFF] ^ (c >> 8)``; and because
  ``crc >> 8`` is at most 0xFF, ``c >> 8`` is always 0 and the step is just ``TABLE[c]``.
* :func:`crc16` — the hot path. The state carried between bytes is the high byte
  ``h = TABLE[c] >> 8``, a *linear* map ``L`` over GF(2) applied to ``h ^ byte``, and
  ``L`` has order 8 (``L**8`` is the identity). Hence the final ``c`` is the XOR over bytes
  of ``L**(distance from the end mod 8)(byte)`` plus a term for the 0xFFFF start value: XOR
  all bytes whose distance from the end is congruent mod 8 (a big-int fold, done in C), then
  eight table lookups. About 5× faster than the table loop in CPython.
"""

from __future__ import annotations

__all__ = [
    "CRC_TABLE",
    "crc16",
    "crc16_bitwise",
    "crc16_hex",
    "crc16_table",
]

_POLY = 0xA001


def crc16_bitwise(data: bytes) -> int:
    """HJ 212-2017 Appendix A, step by step (the reference for the faster versions)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
    return crc


def _eight_steps(c: int) -> int:
    for _ in range(8):
        c = (c >> 1) ^ _POLY if c & 1 else c >> 1
    return c


CRC_TABLE: tuple[int, ...] = tuple(_eight_steps(i) for i in range(256))
"""``CRC_TABLE[c]`` = the register after the eight shift/XOR steps applied to ``c``."""


def crc16_table(data: bytes) -> int:
    """Table-driven form: one lookup per byte (``c >> 8`` is always 0, see module doc)."""
    table = CRC_TABLE
    crc = 0xFFFF
    for byte in data:
        c = (crc >> 8) ^ byte
        crc = table[c & 0xFF] ^ (c >> 8)
    return crc


# --- folded form -------------------------------------------------------------------------
_L: tuple[int, ...] = tuple(t >> 8 for t in CRC_TABLE)  # state map: high byte of the table


def _l_power(value: int, k: int) -> int:
    for _ in range(k):
        value = _L[value]
    return value


def _check_order() -> None:
    # The folding trick relies on these two facts; verify them at import, never assume.
    for a in range(256):
        if _l_power(a, 8) != a:
            raise RuntimeError("HJ 212 CRC state map does not have order 8")
    for a in (1, 2, 4, 8, 16, 32, 64, 128):
        for b in range(256):
            if _L[a ^ b] != _L[a] ^ _L[b]:
                raise RuntimeError("HJ 212 CRC state map is not linear")


_check_order()
_POW: tuple[tuple[int, ...], ...] = tuple(
    tuple(_l_power(b, s) for b in range(256)) for s in range(8)
)
_INIT: tuple[int, ...] = tuple(_l_power(0xFF, r) for r in range(8))
_P1, _P2, _P3, _P4, _P5, _P6, _P7 = _POW[1:]
# Masks of 1, 2, 4, … 2048 64-bit words (frames up to 16 KiB); longer inputs compute theirs.
_FOLD_MASKS: dict[int, int] = {1 << k: (1 << (64 << k)) - 1 for k in range(12)}


def crc16(data: bytes) -> int:
    """HJ 212 CRC of ``data`` (fast; equal to :func:`crc16_bitwise` for every input)."""
    n = len(data)
    if n == 0:
        return 0xFFFF
    # Byte significance in the big-endian integer == distance from the end of ``data``.
    x = int.from_bytes(data, "big")
    words = 1
    while words * 8 < n:
        words <<= 1
    while words > 1:
        words >>= 1
        mask = _FOLD_MASKS.get(words)
        if mask is None:
            mask = (1 << (64 * words)) - 1
        x = (x >> (64 * words)) ^ (x & mask)
    b = x.to_bytes(8, "little")
    c = (
        _INIT[(n - 1) & 7]
        ^ b[0]
        ^ _P1[b[1]]
        ^ _P2[b[2]]
        ^ _P3[b[3]]
        ^ _P4[b[4]]
        ^ _P5[b[5]]
        ^ _P6[b[6]]
        ^ _P7[b[7]]
    )
    return CRC_TABLE[c]


def crc16_hex(data: bytes) -> str:
    """The check code as transmitted: four upper-case hex digits, high byte first."""
    return f"{crc16(data):04X}"
