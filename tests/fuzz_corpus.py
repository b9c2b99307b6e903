"""A deterministic corpus of mutated real HJ 212 frames, for the fuzz tests and the benchmark.

Seeds are the intact frames of the real 2016 capture (judged by the independent oracle in
`tests/oracles.py`). Each mutant is one seed changed by one kind of damage seen on real links or
crafted to reach a deeper layer: bit flips, lost and extra bytes, truncation, stray or garbled
`##`, a wrong length field, a changed check code, embedded CRLF/NUL, and — with the length
field and CRC recomputed by the oracle so the damage gets past framing into the data segment —
garbage CP keys and values, NaN/inf/overflowing numbers, absurd values, GBK/invalid UTF-8
bytes, header field garbage and oversized segments.

`make_corpus()` is pure and seeded: the same seed gives byte-identical mutants on every run.
`interleave()` builds one TCP byte stream of mutants with clean "sentinel" frames between them
and the chunk boundaries of the reads that deliver it.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.oracles import crc_hj212_fast
from tests.shared_data import CAPTURE

__all__ = [
    "KINDS",
    "Mutant",
    "interleave",
    "make_corpus",
    "reframe",
    "seed_frames",
]

#: Framing reasons the codec documents (README "HJ 212 codec"); every rejected unit has one.
FRAMING_REASONS = frozenset({
    "garbage", "bad_length_field", "length_mismatch", "bad_crc_field", "bad_crc",
    "segment_too_long", "truncated",
})


@dataclass(frozen=True)
class Mutant:
    """One damaged frame: the kind of damage and the bytes (without a trailing CRLF)."""

    kind: str
    data: bytes
    reframed: bool
    """Length field and CRC were recomputed (by the oracle) after the damage."""


def seed_frames(path: Path = CAPTURE) -> list[bytes]:
    """The capture's frames whose length field and CRC are right (oracle), in file order."""
    return [line for line in path.read_bytes().split(b"\r\n") if _intact(line)]


def _intact(line: bytes) -> bool:
    """`tests.oracles.intact` with the table form of the oracle CRC."""
    if len(line) < 10 or not line.startswith(b"##") or not line[2:6].isdigit():
        return False
    seg, crc = line[6:-4], line[-4:]
    try:
        return int(line[2:6]) == len(seg) and int(crc, 16) == crc_hj212_fast(seg)
    except ValueError:
        return False


def reframe(segment: bytes, *, length: int | None = None) -> bytes:
    """`##` + 4-digit length + segment + the App. A CRC, computed by the oracle."""
    n = len(segment) if length is None else length
    return b"##%04d" % n + segment + b"%04X" % crc_hj212_fast(segment)


# --- damage to the whole frame (framing must cope) -----------------------------------------


def _bit_flip(f: bytes, rng: random.Random) -> bytes:
    b = bytearray(f)
    for _ in range(rng.randint(1, 3)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _byte_delete(f: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(f))
    return f[:i] + f[i + rng.randint(1, 4) :]


def _byte_insert(f: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(f) + 1)
    return f[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + f[i:]


def _truncate(f: bytes, rng: random.Random) -> bytes:
    return f[: rng.randrange(1, len(f))]


def _stray_header(f: bytes, rng: random.Random) -> bytes:
    """A `##`, `##` + digits, or a second frame header inside the frame."""
    i = rng.randrange(len(f) + 1)
    piece = rng.choice([b"##", b"#", b"##0", b"##01", b"##0101", b"##9999", b"###", b"##ab"])
    return f[:i] + piece + f[i:]


def _garbled_hashes(f: bytes, rng: random.Random) -> bytes:
    head = rng.choice([b"#", b"###", b"# #", b"$$", b"", b"#\x00#", b"\xef\xbb\xbf##", b"####"])
    return head + f[2:]


def _wrong_length(f: bytes, rng: random.Random) -> bytes:
    declared = int(f[2:6])
    field = rng.choice([
        b"%04d" % rng.randrange(10_000),
        b"%04d" % max(declared - rng.randint(1, 5), 0),
        b"%04d" % min(declared + rng.randint(1, 5), 9999),
        b"9999", b"0000", b"12a4", b"    ", b"-100", b"+100", b"\xef\xbc\x91234",
    ])
    return f[:2] + field + f[6:]


def _crc_changed(f: bytes, rng: random.Random) -> bytes:
    crc = f[-4:]
    new = rng.choice([
        b"%04X" % ((int(crc, 16) + rng.randint(1, 0xFFFE)) & 0xFFFF),
        crc.lower(),  # still right: lower-case hex is accepted with a warning
        b"ZZZZ", b"12G4", b"", crc[:3], crc + b"0", b"\x00\x00\x00\x00", b"0x1C",
    ])
    return f[:-4] + new


def _embedded_control(f: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(f) + 1)
    return f[:i] + rng.choice([b"\r\n", b"\n", b"\r", b"\x00", b"\x00" * 8, b"\\r\\n"]) + f[i:]


# --- damage to the data segment, reframed so it gets past the CRC -----------------------------

_CP_ITEM = re.compile(rb"([A-Za-z0-9_\-]+)=([^;,&]*)")

GARBAGE_VALUES: tuple[bytes, ...] = (
    b"", b"abc", b"1.2.3", b"--1", b"1,5", b"0x1F", b"1_000", b" 12", b"12 ", b"+", b".",
    b"e5", b"\xd9\xa1\xd9\xa2", b"\xef\xbc\x91\xef\xbc\x92", b"N", b"=", b"1e", b"--",
)
NON_FINITE_VALUES: tuple[bytes, ...] = (
    b"nan", b"NaN", b"-nan", b"inf", b"-inf", b"Infinity", b"INF", b"1e400", b"-1e400",
    b"9" * 400,
)
ABSURD_VALUES: tuple[bytes, ...] = (
    b"1e12", b"-1e12", b"1e308", b"-1e308", b"1.7976931348623157e308", b"99999999999999.99",
    b"-0.0", b"-5", b"4.9e-324", b"0.0000000000000000000001",
)
GARBAGE_KEYS: tuple[bytes, ...] = (
    b"", b" a21026-Rtd", b"a21026-", b"-Rtd", b"zzz-Rtd", b"a21026-Rtd-Rtd", b"CP",
    b"DataTime", b"a21026-Flag", b"\xe7\x83\x9f-Rtd", b"a210\xff26-Avg", b"QN", b"01-Rtd",
)
HEADER_GARBAGE: tuple[tuple[bytes, bytes], ...] = (
    (rb"MN=[^;]*", b"MN="), (rb"MN=[^;]*", b"MN=\xe7\x83\x9f\xe5\x9b\xb1"),
    (rb"MN=[^;]*", b"MN=" + b"M" * 40), (rb"CN=[^;]*", b"CN=20x1"), (rb"CN=[^;]*", b"CN="),
    (rb"ST=[^;]*;", b""), (rb"PW=[^;]*", b"PW=\x00\x00"), (rb"PW=[^;]*;", b""),
    (rb"Flag=[^;]*", b"Flag=999"), (rb"Flag=[^;]*", b"Flag=-1"), (rb"Flag=[^;]*", b"Flag=255"),
    (rb"CN=", b"QN=2016;CN="), (rb"CN=", b"PNUM=0;PNO=9;CN="), (rb"ST=", b"XX=1;ST="),
    (rb"DataTime=[0-9]*", b"DataTime=20161332250000"), (rb"DataTime=[0-9]*", b"DataTime=2016"),
    (rb"DataTime=[0-9]*", b"DataTime="), (rb"DataTime=[0-9]*;?", b""),
    (rb"DataTime=[0-9]*", b"DataTime=29991231235959"),
    (rb"DataTime=[0-9]*", b"DataTime=20000101000000"),
)


def _segment(f: bytes) -> bytes:
    return f[6:-4]


def _replace_value(f: bytes, rng: random.Random, choices: Sequence[bytes]) -> bytes:
    seg = _segment(f)
    items = [m for m in _CP_ITEM.finditer(seg) if m.start() > seg.find(b"CP=&&")]
    if not items:
        return reframe(seg.replace(b"CP=&&", b"CP=&&a21026-Rtd=" + rng.choice(choices) + b";"))
    m = rng.choice(items)
    return reframe(seg[: m.start(2)] + rng.choice(choices) + seg[m.end(2) :])


def _cp_value_garbage(f: bytes, rng: random.Random) -> bytes:
    return _replace_value(f, rng, GARBAGE_VALUES)


def _cp_non_finite(f: bytes, rng: random.Random) -> bytes:
    return _replace_value(f, rng, NON_FINITE_VALUES)


def _cp_absurd(f: bytes, rng: random.Random) -> bytes:
    return _replace_value(f, rng, ABSURD_VALUES)


def _cp_key_garbage(f: bytes, rng: random.Random) -> bytes:
    seg = _segment(f)
    items = [m for m in _CP_ITEM.finditer(seg) if m.start() > seg.find(b"CP=&&")]
    if not items:
        return reframe(seg.replace(b"CP=&&", b"CP=&&" + rng.choice(GARBAGE_KEYS) + b"=1;"))
    m = rng.choice(items)
    return reframe(seg[: m.start(1)] + rng.choice(GARBAGE_KEYS) + seg[m.end(1) :])


def _separators(f: bytes, rng: random.Random) -> bytes:
    seg = _segment(f)
    old, new = rng.choice([
        (b";", b","), (b",", b";"), (b"=", b""), (b"=", b"=="), (b"&&", b"&&&&"),
        (b"&&", b""), (b"CP=&&", b"CP="), (b";", b";;"), (b",", b",,"), (b"&&", b"&"),
    ])
    spots = [m.start() for m in re.finditer(re.escape(old), seg)]
    if not spots:
        return reframe(seg + new)
    i = rng.choice(spots)
    return reframe(seg[:i] + new + seg[i + len(old) :])


def _non_ascii(f: bytes, rng: random.Random) -> bytes:
    """GBK / UTF-8 Chinese / invalid UTF-8 in the segment; the length in bytes or characters."""
    seg = _segment(f)
    text = rng.choice(["烟囱一号", "二氧化硫", "锅炉"])
    raw = rng.choice([text.encode("gbk"), text.encode("utf-8"), b"\xff\xfe", b"\xc3\x28"])
    i = rng.randrange(len(seg) + 1)
    damaged = seg[:i] + raw + seg[i:]
    in_chars = damaged.decode("utf-8", errors="replace")
    length = len(in_chars) if rng.random() < 0.3 else None
    return reframe(damaged, length=length)


def _header_garbage(f: bytes, rng: random.Random) -> bytes:
    pattern, new = rng.choice(HEADER_GARBAGE)
    seg = _segment(f)
    damaged = re.sub(pattern, lambda _m: new, seg, count=1)
    return reframe(damaged)


def _oversize(f: bytes, rng: random.Random) -> bytes:
    """A segment over 1024 characters (Table 2) or a CP area over 950 (Table 3)."""
    seg = _segment(f)
    filler = b";a21026-Rtd=1.0" * rng.randint(40, 200)
    end = seg.rfind(b"&&")
    damaged = seg[:end] + filler + seg[end:] if end > 0 else seg + filler
    return reframe(damaged[:9999])


def _sticky_pair(f: bytes, rng: random.Random) -> bytes:
    """Two copies back to back, the first cut short (a re-send after a broken write)."""
    return f[: rng.randrange(1, len(f))] + f


_MUTATIONS: dict[str, tuple[Callable[[bytes, random.Random], bytes], bool]] = {
    "bit_flip": (_bit_flip, False),
    "byte_delete": (_byte_delete, False),
    "byte_insert": (_byte_insert, False),
    "truncate": (_truncate, False),
    "stray_header": (_stray_header, False),
    "garbled_hashes": (_garbled_hashes, False),
    "wrong_length": (_wrong_length, False),
    "crc_changed": (_crc_changed, False),
    "embedded_control": (_embedded_control, False),
    "sticky_pair": (_sticky_pair, False),
    "cp_value_garbage": (_cp_value_garbage, True),
    "cp_non_finite": (_cp_non_finite, True),
    "cp_absurd": (_cp_absurd, True),
    "cp_key_garbage": (_cp_key_garbage, True),
    "separators": (_separators, True),
    "non_ascii": (_non_ascii, True),
    "header_garbage": (_header_garbage, True),
    "oversize": (_oversize, True),
}
KINDS: tuple[str, ...] = tuple(_MUTATIONS)


def make_corpus(frames: Sequence[bytes], n: int = 10_000, seed: int = 20160824) -> list[Mutant]:
    """`n` mutants of `frames`, kinds taken in turn (so each kind gets n / len(KINDS))."""
    rng = random.Random(seed)
    out: list[Mutant] = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        fn, reframed = _MUTATIONS[kind]
        out.append(Mutant(kind, fn(rng.choice(frames), rng), reframed))
    return out


#: What follows a mutant in the stream: CRLF as loggers send it, or nothing (sticky packets).
SEPARATORS: tuple[bytes, ...] = (b"\r\n", b"\r\n", b"\r\n", b"", b"\n", b"\r\n\r\n", b" ")


def interleave(
    mutants: Sequence[Mutant], sentinels: Sequence[bytes], seed: int = 212
) -> tuple[bytes, list[int]]:
    """`sentinel₀ CRLF mutant₀ sep sentinel₁ CRLF mutant₁ sep …` and random read boundaries.

    Sentinel i is `sentinels[i % len(sentinels)]`; there is one per mutant. Returns the stream
    and the sorted cut positions of the reads (1–3000 bytes each).
    """
    rng = random.Random(seed)
    parts: list[bytes] = []
    for i, m in enumerate(mutants):
        parts += [sentinels[i % len(sentinels)], b"\r\n", m.data, rng.choice(SEPARATORS)]
    stream = b"".join(parts)
    cuts: list[int] = []
    pos = 0
    while True:
        pos += rng.randint(1, 3000)
        if pos >= len(stream):
            break
        cuts.append(pos)
    return stream, cuts


def chunks(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """The reads: `stream` cut at `cuts`."""
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]
