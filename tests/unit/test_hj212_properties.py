"""Property tests: round trips, never-raise guarantees, fast path == reference semantics."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackwatch.beijing_time import CST
from stackwatch.hj212 import REASONS, Framer, build_frames, decode_frame, reassemble
from stackwatch.hj212 import segment as seg_mod
from stackwatch.hj212.codes import NUMERIC_SUFFIXES, VALID_DATA_FLAGS
from stackwatch.hj212.segment import new_fields
from tests.oracles import framed

codes_2017 = st.from_regex(r"[a-z][0-9]{5}", fullmatch=True)
# Measured values as HJ 212 carries them (N14.2-style: ≤ 14 integer digits, a few decimals).
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).map(lambda x: round(x, 6))
values_st = st.dictionaries(
    codes_2017,
    st.dictionaries(st.sampled_from(sorted(NUMERIC_SUFFIXES)), finite, min_size=1),
    max_size=40,
)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                     timezones=st.just(CST)).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=values_st, data_time=times, data=st.data(), ack=st.booleans(),
       version=st.sampled_from(["2005", "2017", "2025"]))
def test_encode_decode_round_trip(values: dict[str, dict[str, float]], data_time: datetime,
                                  data: st.DataObject, ack: bool, version: str) -> None:
    flags = data.draw(st.dictionaries(st.sampled_from(sorted(values)) if values else st.nothing(),
                                      st.sampled_from(sorted(VALID_DATA_FLAGS))))
    frames = build_frames("2051", "MN0001", "123456", data_time, values, flags=flags,
                          qn="20210722132000042", ack=ack, version=version)
    decoded = [decode_frame(f) for f in frames]
    assert all(d.ok for d in decoded), [d.errors for d in decoded]
    whole = decoded[0] if len(decoded) == 1 else reassemble(decoded)
    assert whole is not None
    assert whole.values == {c: dict(v) for c, v in values.items() if v}
    assert whole.flags == flags
    assert whole.data_time == data_time
    assert whole.version == version and whole.ack_requested == ack


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_decode_never_raises_on_bytes(data: bytes) -> None:
    frame = decode_frame(data)
    assert frame.ok is False or (frame.crc_ok and frame.length_ok)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_decode_never_raises_on_text(text: str) -> None:
    decode_frame(text)
    decode_frame("##" + f"{len(text.encode()):04d}" + text + "FFFF")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_framer_never_raises(chunks: list[bytes]) -> None:
    framer = Framer()
    for chunk in chunks:
        for result in framer.feed(chunk):
            assert result.ok or result.reason
        assert framer.pending_bytes <= framer.max_buffer
    framer.flush()


STD = b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80"  # noqa: E501 (verbatim vector)
junk = st.binary(max_size=200).filter(lambda b: b"#" not in b)


@settings(max_examples=200, deadline=None)
@given(before=junk, after=junk, cut=st.integers(min_value=0, max_value=400))
def test_valid_frame_survives_surrounding_garbage(before: bytes, after: bytes, cut: int) -> None:
    stream = before + STD + b"\r\n" + after
    cut = min(cut, len(stream))
    framer = Framer()
    results = framer.feed(stream[:cut]) + framer.feed(stream[cut:]) + framer.flush()
    assert [r.raw for r in results if r.ok] == [STD]


# --- fast CP path vs reference loop --------------------------------------------------------
keys = st.sampled_from([
    "DataTime", "a21026-Rtd", "a21026-Avg", "a21026-Flag", "01-Rtd", "01-ZsRtd", "01-Flag",
    "S08-Min", "B01-Cou", "w01018-Avg", "SB1-RS", "RtdInterval", "01-EFlag", "a21026-ZsCou",
    "01018-Rtd", " PolId", "", "a-b", "CON-RT", "QN",
])
vals = st.one_of(
    st.sampled_from(["1", "-0.5", "3.", ".25", "+2", "1e3", "N", "D", "H", "", "x", "nan",
                     "20160824050243", "20160824050243123", "2016082405", "1_0", "9" * 400]),
    st.text(alphabet="0123456789.-+eEND =", max_size=8),
)
item = st.one_of(
    st.tuples(keys, vals).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["bare", ""]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(item, st.sampled_from([";", ","])), min_size=1, max_size=12),
       st.sampled_from(["MN1", "MN2"]))
def test_fast_cp_path_matches_reference(items: list[tuple[str, str]], mn: str) -> None:
    cp = "".join(text + sep for text, sep in items)[:-1]
    if len(seg_mod._PLANS) > 400:  # keep room for new layouts so the fast path is exercised
        seg_mod._PLANS.clear()
        seg_mod._LAST_PLAN.clear()

    def run(fn: Any) -> dict[str, Any]:
        out = new_fields()
        out["mn"], out["cn"] = mn, "2011"
        fn(cp, out, out["errors"], out["warnings"])
        return out

    reference = run(seg_mod._parse_cp_reference)
    # A layout gets its compiled plan when it comes back: the second call takes the fast path.
    assert run(seg_mod._parse_cp) == reference
    assert run(seg_mod._parse_cp) == reference


header_fields = st.lists(
    st.tuples(
        st.sampled_from(["QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO", "RF", "XX"]),
        st.one_of(
            st.sampled_from(["20160801085857223", "2016080108585722", "31", "2011", "123456",
                             "A1", "", "4", "7", "256", "2", "1", "0x", "12345"]),
            st.text(alphabet="0123456789AZaz=,&", max_size=6),
        ),
    ),
    max_size=9,
)


@settings(max_examples=200, deadline=None)
@given(header_fields, st.booleans())
def test_fast_header_path_matches_reference(fields: list[tuple[str, str]],
                                            canonical: bool) -> None:
    order = ["QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"]
    if canonical:  # mostly well-formed, in Table 3 order, to reach the fast path
        fields = sorted({k: v for k, v in fields}.items(),
                        key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    header = "".join(f"{k}={v};" for k, v in fields)
    if not header:
        return
    segment = header + "CP=&&&&"

    def run(fast: bool) -> dict[str, Any]:
        out = new_fields()
        if fast:
            seg_mod._parse_header_fast(segment, len(header), out, out["errors"],
                                       out["warnings"])
        else:
            seg_mod._parse_header(header[:-1], out, out["errors"], out["warnings"])
        return out

    assert run(True) == run(False)


def test_canonical_headers_match_reference() -> None:
    # Deterministic companions of the property above, hitting the fast path for sure.
    for header in (
        "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;",
        "ST=31;CN=2011;PW=123456;MN=LD130133000015;",
        "QN=20240601085857223;ST=32;CN=2011;PW=1;MN=A1;Flag=10;PNUM=3;PNO=2;",
        "ST=31;CN=2011;PW=1;MN=A1;Flag=300;",
    ):
        fast, ref = new_fields(), new_fields()
        seg_mod._parse_header_fast(header + "CP=&&&&", len(header), fast, fast["errors"],
                                   fast["warnings"])
        seg_mod._parse_header(header[:-1], ref, ref["errors"], ref["warnings"])
        assert fast == ref, header


def test_fast_path_is_taken_for_a_regular_layout() -> None:
    cp = "DataTime=20240122081600;a00000-Rtd=5.407,a00000-Flag=N;01-Rtd=3.56,01-ZsRtd=4.93"
    seg_mod._PLANS.clear()
    seg_mod._LAST_PLAN.clear()
    seg_mod._SEEN.clear()
    first = new_fields()
    first["mn"], first["cn"] = "FASTPATH", "2011"
    seg_mod._parse_cp(cp, first, first["errors"], first["warnings"])
    # A layout seen once gets no plan (compiling costs milliseconds; junk rarely repeats).
    assert ("FASTPATH", "2011") not in seg_mod._LAST_PLAN and not seg_mod._PLANS
    out = new_fields()
    out["mn"], out["cn"] = "FASTPATH", "2011"
    seg_mod._parse_cp(cp, out, out["errors"], out["warnings"])
    plan = seg_mod._LAST_PLAN[("FASTPATH", "2011")]
    assert plan.pattern is not None and plan.pattern.fullmatch(cp) is not None
    assert out["values"] == {"a00000": {"Rtd": 5.407}, "a34013": {"Rtd": 3.56, "ZsRtd": 4.93}}
    assert out == first


# --- damaged frames: identical decode or a documented reason, and no collateral damage -------


def _damage(frame: bytes, data: st.DataObject) -> bytes:
    """One random edit: bit flip, deletion, insertion, one-byte overwrite or truncation.

    Each is always caught (or harmless): a length change by the length field, a one-byte
    change by the App. A check code. Not so a multi-byte overwrite: the check code's state
    between bytes is a single byte (crc.py), so it has only 256 values and a random burst of
    two or more bytes passes it 1 time in 256.
    """
    kind = data.draw(st.sampled_from(["flip", "delete", "insert", "overwrite", "truncate"]))
    n = len(frame)
    # Near either end as often as anywhere: the header, the CRC and the cut-off frame matter.
    i = data.draw(st.one_of(st.integers(0, 8), st.integers(n - 8, n - 1), st.integers(0, n - 1)))
    if kind == "insert" and data.draw(st.booleans()):
        i = n  # glued after the CRC
    if kind == "flip":
        return frame[:i] + bytes([frame[i] ^ (1 << data.draw(st.integers(0, 7)))]) + frame[i + 1 :]
    if kind == "delete":
        return frame[:i] + frame[i + data.draw(st.integers(1, 8)) :]
    pieces = st.one_of(st.binary(min_size=1, max_size=8),
                       st.sampled_from([b"#", b"##", b"##0", b"##0101", b"\r\n", b"\r", b"&&"]))
    if kind == "insert":
        return frame[:i] + data.draw(pieces) + frame[i:]
    if kind == "overwrite":
        return frame[:i] + bytes([data.draw(st.integers(0, 255))]) + frame[i + 1 :]
    return frame[:i]


small_values = st.dictionaries(
    st.sampled_from(["a21026", "a21002", "a34013", "a19001", "a00000", "01", "S01"]),
    st.dictionaries(st.sampled_from(["Rtd", "ZsRtd"]), finite, min_size=1),
    min_size=1, max_size=4,
)


def _facts(frame: Any) -> tuple[Any, ...]:
    return (frame.qn, frame.st, frame.cn, frame.pw, frame.mn, frame.flag, frame.data_time,
            frame.values, frame.flags, frame.cp)


@settings(max_examples=200, deadline=None)
@given(values=small_values, data_time=times, data=st.data())
def test_damaged_frame_decodes_identically_or_is_rejected_with_a_reason(
    values: dict[str, dict[str, float]], data_time: datetime, data: st.DataObject
) -> None:
    (text,) = build_frames("2011", "MUTANT0001", "123456", data_time, values,
                           qn="20240601085857223", ack=True)
    original = decode_frame(text)
    assert original.ok, original.errors
    damaged = decode_frame(_damage(text.encode(), data))
    codes = damaged.error_codes
    assert "decoder_error" not in codes and set(codes) <= REASONS.keys()
    if damaged.ok:
        # Harmless damage only (CR/LF/blanks after the frame, lower-case CRC hex, a byte
        # overwritten by itself): the same frame.
        assert _facts(damaged) == _facts(original)
    else:
        assert codes, damaged.raw


good = [
    framed(f"QN=2024060108585722{i};ST=31;CN=2011;PW=123456;MN=GOOD{i};Flag=5;"
           f"CP=&&DataTime=20240601085800;a21026-Rtd={i}.5,a21026-Flag=N&&").encode()
    for i in range(2)
]


@settings(max_examples=200, deadline=None)
@given(values=small_values, data_time=times, data=st.data(),
       seps=st.tuples(*[st.sampled_from([b"\r\n", b"", b"\n", b" ", b"\r\n\r\n"])] * 2),
       cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_damaged_frame_never_takes_its_neighbours_down(
    values: dict[str, dict[str, float]], data_time: datetime, data: st.DataObject,
    seps: tuple[bytes, bytes], cuts: list[int],
) -> None:
    (text,) = build_frames("2011", "MUTANT0001", "123456", data_time, values, ack=True)
    damaged = _damage(text.encode(), data)
    stream = good[0] + seps[0] + damaged + seps[1] + good[1] + b"\r\n"
    framer = Framer()
    results = []
    edges = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    for a, b in itertools.pairwise(edges):
        results += framer.feed(stream[a:b])
    results += framer.flush()
    # Both neighbours whole and accepted, in order, whatever the damage and the read sizes.
    assert [r.raw for r in results if b"MN=GOOD" in r.raw] == good
    assert all(r.ok for r in results if b"MN=GOOD" in r.raw)
    assert all(r.ok or (r.reason in REASONS and r.detail) for r in results)
    # Every byte in exactly one unit (the framer skips only CR, LF, blanks between frames) ...
    def squeeze(b: bytes) -> bytes:
        return b.replace(b"\\r\\n", b"").translate(None, b"\r\n \t")
    assert squeeze(b"".join(r.raw for r in results)) == squeeze(stream)
    # ... and the units do not depend on where the reads split the stream.
    whole = Framer()
    assert whole.feed(stream) + whole.flush() == results
