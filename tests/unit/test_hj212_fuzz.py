"""Fuzz: 10 000 mutated real frames through the framer, the decoder, the gateway's verdict and
the worker's normaliser.

The corpus (`tests/fuzz_corpus.py`, seeded) damages intact frames of the real 2016 capture in
18 ways. In the stream test every mutant sits between two clean "sentinel" frames and the bytes
arrive in random read sizes, as on a TCP socket. What must hold, judged by the independent oracle
(`tests/oracles.py`) and the documented reason codes, never by the code under test:

* nothing raises and no stage reports its own failure (`decoder_error`, `decode_error`);
* every rejected unit carries a documented reason;
* every sentinel comes out intact, in order, exactly once — bad frames never take good ones
  down with them — and every byte of the stream is in exactly one unit;
* whatever is accepted really is intact (length and App. A CRC by the oracle), and no decoded
  value is NaN or infinite.

Throughput on this corpus is measured by `bench/bench_fuzz.py`, never asserted here.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from stackwatch.hj212 import REASONS, DecodedFrame, Framer, FrameResult, decode_frame
from stackwatch.hj212 import segment as seg_mod
from stackwatch.models import RawFrame, Reading, Verdict
from stackwatch.normalise import Refusal, reading_from_raw
from stackwatch.registry import StackInfo, StackRegistry
from streams.gateway_judge import (
    REASON_BAD_PASSWORD,
    REASON_MISSING_MN,
    REASON_UNKNOWN_MN,
    Hj212Codec,
    Judgement,
    build_records,
    judge_frame,
)
from tests.fuzz_corpus import (
    FRAMING_REASONS,
    KINDS,
    Mutant,
    chunks,
    interleave,
    make_corpus,
    seed_frames,
)
from tests.oracles import crc_hj212, crc_hj212_fast, framed

N_MUTANTS = 10_000
PW = "123456"  # every logger of the capture uses it
SENTINELS = [
    framed(
        f"QN=20260105080000{i:03d};ST=31;CN=2011;PW={PW};MN=SENTINEL{i:04d};Flag=5;"
        f"CP=&&DataTime=20260105080000;a21026-Rtd={i}.5,a21026-Flag=N&&"
    ).encode()
    for i in range(50)
]
RECEIVED = datetime(2016, 8, 24, 5, 30, tzinfo=UTC)


def oracle_intact(raw: bytes, *, in_chars: bool = False) -> bool:
    """Length field and CRC right by the oracle (the length may count characters)."""
    m = re.fullmatch(rb"##(\d{4})(.*)([0-9A-Fa-f]{4})", raw, re.S)
    if m is None:
        return False
    seg = m.group(2)
    try:
        size = len(seg.decode("utf-8")) if in_chars else len(seg)
    except UnicodeDecodeError:
        return False
    return size == int(m.group(1)) and crc_hj212_fast(seg) == int(m.group(3), 16)


def as_record(data: bytes) -> bytes:
    """One frame as `decode_frame` documents taking it: with or without CRLF (also as text)."""
    data = data.strip(b" \t\r\n")
    while data.endswith(b"\\r\\n"):
        data = data[:-4].rstrip(b" \t")
    return data


def squeeze(data: bytes) -> bytes:
    """`data` without the bytes the framer may skip between frames (CR LF blank tab, `\\r\\n`)."""
    return re.sub(rb"[\r\n \t]", b"", data.replace(b"\\r\\n", b""))


@dataclass(frozen=True)
class Streamed:
    stream: bytes
    results: list[FrameResult]
    max_pending: int


@pytest.fixture(scope="module", autouse=True)
def _fresh_decoder_caches() -> Iterator[None]:
    """The corpus fills the decoder's layout caches with junk; leave them clean for others."""
    yield
    for cache in (seg_mod._PLANS, seg_mod._LAST_PLAN, seg_mod._KEY_CACHE, seg_mod._DT_CACHE):
        cache.clear()
    seg_mod._SEEN.clear()


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return seed_frames()


@pytest.fixture(scope="module")
def corpus(seeds: list[bytes]) -> list[Mutant]:
    return make_corpus(seeds, N_MUTANTS)


@pytest.fixture(scope="module")
def streamed(corpus: list[Mutant]) -> Streamed:
    stream, cuts = interleave(corpus, SENTINELS)
    framer = Framer()
    results: list[FrameResult] = []
    max_pending = 0
    for chunk in chunks(stream, cuts):
        results += framer.feed(chunk)
        max_pending = max(max_pending, framer.pending_bytes)
    results += framer.flush()
    return Streamed(stream, results, max_pending)


@pytest.fixture(scope="module")
def registry(seeds: list[bytes]) -> StackRegistry:
    mns = {m.group(1).decode() for s in seeds if (m := re.search(rb";MN=([^;]+);", s))}
    mns |= {f"SENTINEL{i:04d}" for i in range(len(SENTINELS))}
    return StackRegistry(stacks=[
        StackInfo(stack_id=mn, mn=mn, password=PW, sector="power", process="coal_boiler")
        for mn in sorted(mns)
    ])


@pytest.fixture(scope="module")
def judged(streamed: Streamed, registry: StackRegistry) -> list[tuple[FrameResult, Judgement]]:
    codec = Hj212Codec()
    return [
        (r, judge_frame(r, codec=codec, registry=registry, auto_register=False))
        for r in streamed.results
    ]


# --- the corpus itself ---------------------------------------------------------------------


def test_corpus_is_deterministic_and_every_kind_is_used(
    seeds: list[bytes], corpus: list[Mutant]
) -> None:
    assert len(seeds) == 8692  # 8 696 frames, 4 damaged in the capture itself (oracle)
    assert make_corpus(seeds, 360) == corpus[:360]  # same seed, same bytes
    assert make_corpus(seeds, 360, seed=1) != corpus[:360]
    per_kind = Counter(m.kind for m in corpus)
    assert set(per_kind) == set(KINDS) and len(KINDS) == 18
    assert min(per_kind.values()) == N_MUTANTS // 18 and max(per_kind.values()) == 556
    # The table oracle used for the corpus agrees with the standard's bitwise algorithm.
    assert crc_hj212_fast(b"123456789") == crc_hj212(b"123456789") == 0x2F80
    for m in corpus[::50]:
        assert crc_hj212_fast(m.data) == crc_hj212(m.data)
    # Reframed damage really gets past framing (length and CRC right by the oracle; non_ascii
    # sometimes counts the characters of a lossy decode on purpose) ...
    reframed = [m for m in corpus if m.reframed and m.kind != "non_ascii"]
    assert all(oracle_intact(m.data) for m in reframed)
    # ... and the raw damage mostly does not.
    raw = [m for m in corpus if not m.reframed]
    assert sum(oracle_intact(m.data) for m in raw) < len(raw) // 10


# --- framer --------------------------------------------------------------------------------


def test_stream_gives_back_every_sentinel_and_every_byte(streamed: Streamed) -> None:
    results = streamed.results
    # Each sentinel exactly once, whole and accepted, in stream order: no damaged neighbour
    # swallowed one (sticky packets, stray '#', a CRC that matches by chance) or cut it.
    carrying = [r for r in results if b"MN=SENTINEL" in r.raw]
    assert [r.raw for r in carrying] == [SENTINELS[i % 50] for i in range(N_MUTANTS)]
    assert all(r.ok for r in carrying)
    # No byte lost or duplicated: the units are the stream minus the skipped separators.
    assert squeeze(b"".join(r.raw for r in results)) == squeeze(streamed.stream)
    assert streamed.max_pending <= Framer().max_buffer


def test_every_unit_is_intact_or_rejected_with_a_documented_reason(streamed: Streamed) -> None:
    reasons: Counter[str] = Counter()
    for r in streamed.results:
        if r.ok:
            assert r.reason is None
            assert oracle_intact(r.raw, in_chars=r.length_in_chars), r.raw[:120]
        else:
            assert r.reason in FRAMING_REASONS and r.detail, r
            reasons[r.reason] += 1
    # The corpus reaches every rejection path of the framer.
    assert set(reasons) == FRAMING_REASONS


def test_read_boundaries_do_not_change_the_units(streamed: Streamed) -> None:
    framer = Framer()
    whole = framer.feed(streamed.stream) + framer.flush()
    assert whole == streamed.results


# --- decoder -------------------------------------------------------------------------------


def check_decoded(frame: DecodedFrame, errors: Counter[str]) -> None:
    codes = frame.error_codes
    assert "decoder_error" not in codes, frame.errors  # the decoder's own failure report
    assert set(codes) <= REASONS.keys() and set(frame.warning_codes) <= REASONS.keys()
    if frame.ok:
        assert frame.crc_ok and frame.length_ok and not codes
    else:
        assert codes, frame.raw[:120]  # every rejection says why
    for per_code in frame.values.values():
        assert all(math.isfinite(v) for v in per_code.values()), frame.values
    errors.update(codes)


def test_decoder_on_every_unit_and_every_mutant(
    streamed: Streamed, corpus: list[Mutant]
) -> None:
    errors: Counter[str] = Counter()
    for r in streamed.results:
        frame = decode_frame(r)
        check_decoded(frame, errors)
        if not r.ok:
            assert frame.error_codes[0] == r.reason  # the framer's verdict comes first
    for m in corpus:
        frame = decode_frame(m.data)
        check_decoded(frame, errors)
        if frame.ok:
            record = as_record(m.data)
            assert oracle_intact(record) or oracle_intact(record, in_chars=True), m
    # The damage reaches the data segment: the content checks fire too.
    assert {
        "non_numeric_value", "bad_key", "bad_factor_code", "bad_encoding", "bad_datatime",
        "cp_too_long", "segment_too_long", "missing_field", "bad_field", "bad_flag",
        "missing_cp", "missing_cp_terminator", "bad_item", "bad_split", "bad_separator",
    } <= set(errors)


# --- gateway verdict and worker normaliser ---------------------------------------------------

GATEWAY_FIRST = FRAMING_REASONS | {REASON_MISSING_MN, REASON_UNKNOWN_MN, REASON_BAD_PASSWORD}


def test_gateway_verdict_on_every_unit(judged: list[tuple[FrameResult, Judgement]]) -> None:
    first: Counter[str] = Counter()
    for result, judgement in judged:
        raw, dead = build_records(judgement, received_at=RECEIVED, peer="fuzz:1", gateway="gw")
        # The raw layer keeps the bytes verbatim (UTF-8 as text, anything else escaped) but for
        # password values, masked; the digest is of the bytes as received.
        try:
            verbatim = result.raw.decode("utf-8")
        except UnicodeDecodeError:
            verbatim = result.raw.decode("utf-8", errors="backslashreplace")
        assert raw.sha256 == hashlib.sha256(result.raw).hexdigest()
        if raw.redacted:
            assert _PW_VALUE.sub("PW=", raw.text) == _PW_VALUE.sub("PW=", verbatim)
            assert "pw=******" in raw.text.lower()
        else:
            assert raw.text == verbatim
        if judgement.verdict is Verdict.REJECTED:
            assert judgement.reason in GATEWAY_FIRST, judgement
            assert "decode_error" not in judgement.reasons
            assert dead is not None and dead.reason == judgement.reason
            assert dead.payload == raw.text and dead.stage == "gateway"
            first[judgement.reason] += 1
        else:
            assert dead is None and oracle_intact(result.raw, in_chars=result.length_in_chars)
    accepted = [j for _, j in judged if j.verdict is Verdict.ACCEPTED]
    sentinels = [j for j in accepted if (j.mn or "").startswith("SENTINEL")]
    assert len(sentinels) == N_MUTANTS
    # Flag=5 asks for the 9014 answer, which echoes the sentinel's own QN.
    assert all(j.ack is not None and f"QN={j.qn};" in j.ack for j in sentinels)
    assert {REASON_UNKNOWN_MN, REASON_BAD_PASSWORD, REASON_MISSING_MN} <= set(first)


_PW_VALUE = re.compile(r"PW=[^;\r\n]*", re.IGNORECASE)
ACCEPTED_REFUSALS = REASONS.keys() | {"unknown_mn", "missing_field", "missing_datatime"}


def test_worker_normalises_every_accepted_frame(
    judged: list[tuple[FrameResult, Judgement]], registry: StackRegistry
) -> None:
    refused: Counter[str] = Counter()
    readings = 0
    for _, judgement in judged:
        if judgement.verdict is not Verdict.ACCEPTED:
            continue
        raw = RawFrame(text=judgement.text, received_at=RECEIVED, peer="fuzz:1",
                       mn=judgement.mn, cn=judgement.cn, verdict=Verdict.ACCEPTED,
                       redacted=judgement.redacted)
        result = reading_from_raw(raw, registry.by_mn, lambda _s, _t: 10.0)  # must not raise
        if isinstance(result, Refusal):
            assert result.reason in ACCEPTED_REFUSALS and result.detail, result
            refused[result.reason] += 1
            continue
        readings += 1
        # The reading survives the readings topic: the sinks re-validate the JSON (NaN/inf
        # would be refused there).
        try:
            again = Reading.model_validate_json(result.model_dump_json())
        except ValidationError as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{exc}\n{judgement.text[:200]}")
        assert again == result
    assert readings > N_MUTANTS  # the sentinels and the undamaged/harmlessly damaged frames
    # Frames with garbage values pass the gateway (it checks CRC, MN, PW) and are refused here.
    assert refused["non_numeric_value"] > 0
