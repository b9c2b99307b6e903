"""The gateway's per-frame decision (pure): verdict, reasons, answer, records.

Frames are the standard's own packets (HJ 212-2017 App. A; docs/hj212.md#test-vectors) or
frames whose CRC is computed here with the App. A algorithm, independently of the codec.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from stackwatch.hj212 import Framer
from stackwatch.models import Verdict
from stackwatch.registry import StackInfo, StackRegistry, hash_password
from streams.gateway import format_peer
from streams.gateway_judge import (
    DecodedLike,
    FrameResultLike,
    FramerLike,
    Hj212Codec,
    Judgement,
    build_records,
    frame_text,
    judge_frame,
    split_oversized,
)
from tests.oracles import crc_hj212, framed

STD_BODY = (
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    "Flag=5;CP=&&RtdInterval=30&&"
)
STD = f"##0101{STD_BODY}1C80"  # App. A worked example, CRC 1C80 (docs/hj212.md#crc)
STD_MN = "010000A8900016F000169DC0"
# A 2005-dialect real-time upload (no QN, no Flag), docs/hj212.md#test-vectors, CRC 4980.
OLD = (
    "##0139ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;"
    "B01-Rtd=36.91;011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&4980"
)
CODEC = Hj212Codec()






def registry(*, sha: bool = False) -> StackRegistry:
    std: dict[str, object] = {
        "stack_id": "std",
        "mn": STD_MN,
        "sector": "power",
        "process": "coal_boiler",
    }
    if sha:
        std["password_hash"] = hash_password("100000", n=16)  # cheap scrypt: same code path
    else:
        std["password"] = "100000"
    old = {
        "stack_id": "old",
        "mn": "LD130133000015",
        "password": "123456",
        "sector": "boiler",
        "process": "coal_boiler",
    }
    return StackRegistry(stacks=[StackInfo.model_validate(std), StackInfo.model_validate(old)])


def results(data: str | bytes, *, flush: bool = False) -> list[FrameResultLike]:
    framer = Framer()
    raw = data.encode() if isinstance(data, str) else data
    out: list[FrameResultLike] = list(framer.feed(raw))
    if flush:
        out += framer.flush()
    return out


def judge(
    data: str | bytes,
    *,
    reg: StackRegistry | None = None,
    auto: bool = False,
    flush: bool = False,
) -> Judgement:
    (result,) = results(data, flush=flush)
    return judge_frame(
        result,
        codec=CODEC,
        registry=reg or registry(),
        auto_register=auto,
        at_disconnect=flush,
    )


def test_oracle_crc() -> None:
    assert crc_hj212(b"123456789") == 0x2F80  # App. A check value (docs/hj212.md#crc)
    assert framed(STD_BODY) == STD


def test_standard_example_accepted_and_answered() -> None:
    j = judge(STD + "\r\n")
    assert j.verdict is Verdict.ACCEPTED and j.reasons == ()
    assert (j.mn, j.cn, j.qn) == (STD_MN, "1062", "20160801085857223")
    # The password is masked in what is recorded; length field and CRC stay as received.
    assert j.text == STD.replace("PW=100000;", "PW=******;") and j.redacted
    assert j.sha256 == hashlib.sha256(STD.encode()).hexdigest()
    assert j.ack is not None and j.ack.endswith("\r\n")
    ack = j.ack[:-2]
    seg = ack[6:-4]
    assert ack.startswith("##") and int(ack[2:6]) == len(seg)
    assert int(ack[-4:], 16) == crc_hj212(seg.encode())  # a well-formed frame itself
    assert "QN=20160801085857223;" in seg and ";CN=9014;" in seg and f"MN={STD_MN}" in seg


def test_2005_frame_without_flag_accepted_not_answered() -> None:
    j = judge(OLD + "\r\n")
    assert j.verdict is Verdict.ACCEPTED and j.ack is None  # no Flag ⇒ A bit 0 (Table 3)
    assert (j.mn, j.cn, j.qn) == ("LD130133000015", "2011", None)


def test_misprinted_crc_rejected_with_mn_kept() -> None:
    # The standard's prose misprints the example's CRC as 1C08 (docs/hj212.md#crc).
    j = judge(STD.replace("1C80", "1C08") + "\r\n")
    assert j.verdict is Verdict.REJECTED and j.reasons == ("bad_crc",)
    assert j.ack is None and j.mn == STD_MN
    assert j.detail is not None and "1C80" in j.detail


def test_length_field_wrong_rejected() -> None:
    j = judge("##0100" + STD[6:] + "\r\n")  # 101 characters declared as 100
    assert j.verdict is Verdict.REJECTED and j.reasons[0] == "length_mismatch"
    assert j.ack is None


def test_garbage_rejected() -> None:
    j = judge(b"\xff\x00binary junk\r\n")
    assert j.verdict is Verdict.REJECTED and j.reasons == ("garbage",)
    # Invalid UTF-8 is escaped, valid control bytes are kept: the text stays verbatim.
    assert j.mn is None and j.text == "\\xff\x00binary junk"


def test_frame_without_mn_rejected() -> None:
    j = judge(framed("QN=20160801085857223;ST=32;CN=2011;PW=123456;Flag=5;CP=&&&&") + "\r\n")
    assert j.verdict is Verdict.REJECTED and "missing_mn" in j.reasons and j.ack is None


def test_unknown_mn_rejected_or_auto_registered() -> None:
    other = framed(STD_BODY.replace(STD_MN, "FOREIGN0001")) + "\r\n"
    rejected = judge(other)
    assert rejected.verdict is Verdict.REJECTED and rejected.reasons == ("unknown_mn",)
    assert rejected.ack is None
    accepted = judge(other, auto=True)
    assert accepted.verdict is Verdict.ACCEPTED and accepted.reasons == ("unregistered_mn",)
    assert accepted.ack is not None and "MN=FOREIGN0001" in accepted.ack


@pytest.mark.parametrize("sha", [False, True])
def test_wrong_password_rejected(sha: bool) -> None:
    wrong = framed(STD_BODY.replace("PW=100000", "PW=100001")) + "\r\n"
    j = judge(wrong, reg=registry(sha=sha))
    assert j.verdict is Verdict.REJECTED and j.reasons == ("bad_password",) and j.ack is None
    assert judge(STD + "\r\n", reg=registry(sha=sha)).verdict is Verdict.ACCEPTED


@pytest.mark.parametrize("sha", [False, True])
@pytest.mark.parametrize("pw", ["密码", "1000０0", "\x00\x00", "", "100000 "])
def test_garbage_password_is_a_bad_password_not_a_crash(sha: bool, pw: str) -> None:
    # Non-ASCII (UTF-8 Chinese, a full-width digit), NUL bytes, empty, trailing blank: all
    # just wrong. (Non-ASCII text used to raise TypeError in the constant-time comparison.)
    wrong = framed(STD_BODY.replace("PW=100000", f"PW={pw}")) + "\r\n"
    j = judge(wrong, reg=registry(sha=sha))
    assert j.verdict is Verdict.REJECTED and j.reasons == ("bad_password",) and j.ack is None


def test_half_frame_flushed_at_disconnect() -> None:
    assert results(STD[:40]) == []  # the framer waits for more
    j = judge(STD[:40], flush=True)
    assert j.verdict is Verdict.REJECTED
    assert j.reasons[-1] == "at_disconnect" and len(j.reasons) == 2
    assert j.text == STD[:40]


def test_oversized_junk_is_split_not_truncated() -> None:
    @dataclass(frozen=True)
    class Big:
        raw: bytes
        ok: bool = False
        reason: str | None = "garbage"

    # 40 000 bytes in slices of 16 384: 16 384 + 16 384 + 7 232.
    pieces = split_oversized(Big(b"x" * 40_000))
    assert [len(p.raw) for p in pieces] == [16_384, 16_384, 7_232]
    j = judge_frame(pieces[0], codec=CODEC, registry=registry(), auto_register=False)
    assert j.verdict is Verdict.REJECTED and j.reasons == ("garbage", "split_record")
    small = Big(b"y" * 100)
    assert split_oversized(small) == [small]  # short units pass unchanged


def test_codec_that_raises_does_not_crash() -> None:
    class Exploding:
        def new_framer(self) -> FramerLike:
            return Framer()

        def decode(self, result: FrameResultLike) -> DecodedLike:
            raise RuntimeError("boom")

        def data_ack(self, request: object) -> str | None:
            raise RuntimeError("boom")

    (result,) = results(STD + "\r\n")
    j = judge_frame(result, codec=Exploding(), registry=registry(), auto_register=False)
    assert j.verdict is Verdict.REJECTED and j.reasons == ("decode_error",) and j.ack is None


def test_records_of_a_rejected_frame() -> None:
    at = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    j = judge(STD.replace("1C80", "1C08") + "\r\n")
    raw, dead = build_records(j, received_at=at, peer="10.0.0.7:40001", gateway="gw-1")
    assert raw.verdict is Verdict.REJECTED and raw.reasons == ["bad_crc"]
    assert (raw.mn, raw.cn, raw.peer, raw.gateway, raw.received_at) == (
        STD_MN,
        "1062",
        "10.0.0.7:40001",
        "gw-1",
        at,
    )
    assert dead is not None
    assert (dead.stage, dead.reason, dead.key) == ("gateway", "bad_crc", STD_MN)
    assert dead.occurred_at == at
    assert dead.payload == raw.text == STD.replace("1C80", "1C08").replace("PW=100000;",
                                                                         "PW=******;")
    assert raw.redacted and raw.sha256 == dead.details["sha256"] == hashlib.sha256(
        STD.replace("1C80", "1C08").encode()).hexdigest()
    assert dead.details["peer"] == "10.0.0.7:40001" and dead.details["cn"] == "1062"
    _, none = build_records(judge(STD + "\r\n"), received_at=at, peer="p", gateway="g")
    assert none is None


def test_text_and_peer_formatting() -> None:
    assert frame_text(b"##\xff\xfe") == "##\\xff\\xfe"
    assert frame_text("##污染".encode()) == "##污染"
    assert format_peer(("10.1.2.3", 5000)) == "10.1.2.3:5000"
    assert format_peer(("::1", 5000, 0, 0)) == "[::1]:5000"
    assert format_peer(None) == "unknown"
