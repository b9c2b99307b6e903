"""Framer on dirty TCP streams (HJ 212-2017 §6.3.1; docs/hj212.md#real-traffic)."""

from __future__ import annotations

from stackwatch.hj212 import Framer, FrameResult, decode_frame, frame_segment
from tests.oracles import crc_hj212, intact

STD = b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80"  # noqa: E501 (verbatim vector)
P9014 = b"##0087QN=20160801090000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&FF01"  # noqa: E501 (verbatim vector)
P0813 = b"##0813QN=20210722140000509;ST=31;CN=2061;PW=123456;MN=NEWPROTOCOLTEST000000092;Flag=4;CP=&&DataTime=20210722130000;a24088-Min=0.0000,a24088-Avg=0.0196,a24088-Max=0.1988,a24088-Cou=0.0003,a24088-Flag=N;a01012-Min=38.9250,a01012-Avg=39.7515,a01012-Max=40.7387,a01012-Flag=T;a01013-Min=-130.7116,a01013-Avg=-123.0723,a01013-Max=-115.9674,a01013-Flag=T;a01011-Min=5.4136,a01011-Avg=5.7286,a01011-Max=5.8780,a01011-Flag=T;a05002-Min=0.0110,a05002-Avg=0.1293,a05002-Max=1.1489,a05002-Cou=0.0017,a05002-Flag=N;a24087-Min=0.0110,a24087-Avg=0.1489,a24087-Max=1.3478,a24087-Cou=0.0019,a24087-Flag=N;a01014-Min=9.4451,a01014-Avg=9.6075,a01014-Max=9.9131,a01014-Flag=T;a19001-Min=15.1661,a19001-Avg=15.1909,a19001-Max=15.2188,a19001-Flag=T;a00000-Min=3.7077,a00000-Avg=3.9151,a00000-Max=4.0276,a00000-Cou=12758.2462,a00000-Flag=N&&5140"  # noqa: E501 (verbatim vector)
CRLF = b"\r\n"


def run(*chunks: bytes) -> list[FrameResult]:
    framer = Framer()
    out: list[FrameResult] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out + framer.flush()


def verdicts(results: list[FrameResult]) -> list[tuple[bool, str | None]]:
    return [(r.ok, r.reason) for r in results]


def test_several_frames_in_one_read() -> None:
    results = run(STD + CRLF + P9014 + CRLF + P0813 + CRLF)
    assert [r.raw for r in results] == [STD, P9014, P0813]
    assert all(r.ok and r.crc_ok and r.length_ok for r in results)


def test_frame_split_across_reads_at_every_point() -> None:
    data = STD + CRLF
    for cut in range(1, len(data)):
        results = run(data[:cut], data[cut:])
        assert [r.raw for r in results] == [STD], cut
        assert results[0].ok


def test_frame_byte_by_byte() -> None:
    framer = Framer()
    out: list[FrameResult] = []
    for i in range(len(P0813 + CRLF)):
        out += framer.feed((P0813 + CRLF)[i : i + 1])
    assert [r.raw for r in out] == [P0813]


def test_frame_is_delivered_before_its_crlf_arrives() -> None:
    # A logger waiting for its 9014 must not wait for bytes that are already complete.
    framer = Framer()
    assert [r.raw for r in framer.feed(STD)] == [STD]
    assert framer.feed(CRLF) == []


def test_back_to_back_without_crlf() -> None:
    # The Go receiver test sends the 0813 packet four times with no CRLF between them.
    results = run(P0813 * 4)
    assert [r.raw for r in results] == [P0813] * 4
    assert all(r.ok for r in results)


def test_garbage_between_frames_is_reported_and_resynced() -> None:
    results = run(b"xyz\x00junk" + STD + CRLF + b"noise line" + CRLF + P9014 + CRLF)
    assert verdicts(results) == [(False, "garbage"), (True, None), (False, "garbage"),
                                 (True, None)]
    assert results[0].raw == b"xyz\x00junk"
    assert results[2].raw == b"noise line"


def test_blank_lines_are_not_frames() -> None:
    assert verdicts(run(CRLF + CRLF + STD + CRLF + b"\n\r\n")) == [(True, None)]


def test_length_too_large_then_next_frame_ok() -> None:
    bad = STD.replace(b"##0101", b"##0104")
    results = run(bad + CRLF + P9014 + CRLF)
    assert verdicts(results) == [(False, "length_mismatch"), (True, None)]
    assert results[0].raw == bad


def test_length_too_small_then_next_frame_ok() -> None:
    bad = STD.replace(b"##0101", b"##0099")
    results = run(bad + CRLF + P9014 + CRLF)
    assert verdicts(results) == [(False, "length_mismatch"), (True, None)]


def test_truncated_frame_followed_by_frame_without_crlf() -> None:
    results = run(STD[:60] + P9014 + CRLF)
    assert verdicts(results) == [(False, "length_mismatch"), (True, None)]
    assert results[1].raw == P9014


def test_bad_crc() -> None:
    bad = STD[:-4] + b"1C08"
    results = run(bad + CRLF + P9014 + CRLF)
    assert verdicts(results) == [(False, "bad_crc"), (True, None)]
    assert results[0].length_ok and not results[0].crc_ok
    assert results[0].detail == "received 1C08, computed 1C80"


def test_bad_crc_back_to_back() -> None:
    bad = STD[:-4] + b"1C08"
    assert verdicts(run(bad + P9014)) == [(False, "bad_crc"), (True, None)]


def test_non_hex_crc() -> None:
    assert verdicts(run(STD[:-4] + b"1CXZ" + CRLF)) == [(False, "bad_crc_field")]


def test_lower_case_crc_accepted() -> None:
    frame = P9014[:-4] + b"ff01"
    results = run(frame + CRLF)
    assert verdicts(results) == [(True, None)]


def test_non_digit_length() -> None:
    results = run(b"##12abQN=1;CP=&&&&1C80" + CRLF + STD + CRLF)
    assert verdicts(results) == [(False, "bad_length_field"), (True, None)]


def test_over_long_segment() -> None:
    values = ";".join(f"a{20000 + i:05d}-Rtd=1.000" for i in range(60))
    seg = "QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=A1;Flag=4;CP=&&" + values + "&&"
    frame = frame_segment(seg).encode()
    results = run(frame + STD + CRLF)
    assert verdicts(results) == [(False, "segment_too_long"), (True, None)]
    assert results[0].crc_ok and results[0].length_ok


def test_utf8_length_in_bytes_and_in_characters() -> None:
    seg = "ST=31;CN=3020;PW=1;MN=A1;CP=&&i12001-Info=设备正常&&"
    # 4 Chinese characters = 12 UTF-8 bytes: byte length = character length + 8.
    assert len(seg.encode()) == len(seg) + 8
    by_bytes = frame_segment(seg).encode()
    crc = by_bytes[-6:-2]
    by_chars = f"##{len(seg):04d}".encode() + seg.encode() + crc
    results = run(by_bytes + by_chars + CRLF + STD + CRLF)
    assert verdicts(results) == [(True, None), (True, None), (True, None)]
    assert not results[0].length_in_chars and results[1].length_in_chars
    assert "length_in_characters" in decode_frame(results[1]).warning_codes


def test_truncated_at_end_of_stream() -> None:
    results = run(STD[:50])
    assert verdicts(results) == [(False, "truncated")]
    assert results[0].raw == STD[:50]


def test_buffer_is_bounded_on_garbage() -> None:
    framer = Framer(max_buffer=16384)
    fed = 0
    reported = 0
    for _ in range(200):
        chunk = b"x" * 1000  # no '##', no CRLF: pure garbage
        fed += len(chunk)
        reported += sum(len(r.raw) for r in framer.feed(chunk) if r.reason == "garbage")
        assert framer.pending_bytes <= 16384
    reported += sum(len(r.raw) for r in framer.flush())
    assert reported == fed  # nothing silently dropped


def test_buffer_is_bounded_inside_a_header() -> None:
    framer = Framer(max_buffer=16384)
    framer.feed(b"##9999")
    for _ in range(40):
        framer.feed(b"y" * 1000)
        assert framer.pending_bytes <= 16384
    assert framer.feed(CRLF + STD + CRLF)[-1].raw == STD


def test_literal_backslash_crlf_between_frames() -> None:
    assert verdicts(run(STD + b"\\r\\n" + P9014 + b"\\r\\n")) == [(True, None), (True, None)]


def test_stray_hash_right_before_a_frame_does_not_cost_the_frame() -> None:
    # A '#' (line noise, a cut-off header) glued to the next frame: "###0101…" must resync on
    # the second '#', not reject the whole frame as a bad length field.
    for prefix in (b"#", b"abc#", b"##", b"###", b"##0"):
        results = run(prefix + STD + CRLF)
        assert results[-1].ok and results[-1].raw == STD, prefix
        assert all(r.reason in ("garbage", "bad_length_field") for r in results[:-1]), prefix
        assert b"".join(r.raw for r in results) == prefix + STD


def test_cut_frame_whose_crc_matches_by_chance_cannot_swallow_the_next() -> None:
    # A frame cut short, then a whole frame without CRLF between (sticky). The cut frame's
    # length field reaches into the next frame, and there — built here on purpose; by chance
    # about 1 in 256 where four hex characters sit, as the App. A check code has only 256
    # values — four characters equal the CRC (oracle) of everything before them. Bytes
    # containing another frame's header are never one frame.
    head = b"QN=20240601085857223;ST=31;CN=2011;PW=123456;MN=CUT01;CP=&&DataTime=2024"
    nxt_seg = b"QN=20240601085900001;ST=31;CN=2011;PW=123456;MN=NEXT1;Flag=4;CP=&&Info="
    k = 6 + len(nxt_seg)  # where the four "CRC" characters sit inside the next frame
    nxt_len = len(nxt_seg) + 4 + 2
    probe = b"##%04d" % nxt_len + nxt_seg
    check = b"%04X" % crc_hj212(head + probe[:k])
    nxt_body = nxt_seg + check + b"&&"
    nxt = b"##%04d" % len(nxt_body) + nxt_body + b"%04X" % crc_hj212(nxt_body)
    assert nxt[:k] == probe[:k]
    cut = b"##%04d" % (len(head) + k) + head
    assert intact(cut + nxt[: k + 4])  # to the length field and the CRC, that IS a frame
    results = run(cut + nxt + CRLF)
    assert verdicts(results) == [(False, "length_mismatch"), (True, None)]
    assert results[1].raw == nxt and results[0].raw == cut


def test_bad_crc_frame_then_stray_byte_then_frame_is_judged_by_its_own_length() -> None:
    # A whole frame with a wrong check code, one stray byte of line noise, then the next frame
    # with no CRLF: the bad frame is cut at its declared length (bad_crc, length right), the
    # stray byte is garbage on its own, and the next frame is intact. Cutting at the next
    # boundary instead glued the stray byte onto the frame and called it a length mismatch.
    bad = STD[:-4] + b"1C08"
    for stray in (b"#", b"x", b" ", b"\n", b"\r", b"\r\n#"):
        results = run(bad + stray + P9014 + CRLF)
        assert results[0].raw == bad, stray
        assert (results[0].reason, results[0].detail) == ("bad_crc", "received 1C08, computed 1C80")
        assert results[0].length_ok, stray
        assert results[-1].ok and results[-1].raw == P9014, stray
        assert all(r.reason == "garbage" for r in results[1:-1]), stray
        assert b"".join(r.raw for r in results) == bad + stray.strip(b"\r\n ") + P9014


def test_wrong_length_field_with_crc_right_at_the_line_end_stays_a_length_mismatch() -> None:
    # The opposite case: the check code is right for the whole line, only the length field is
    # off by one. Cutting at the declared length would turn one mis-labelled frame into a
    # bad-CRC fragment plus garbage; the frame is reported whole, as a length mismatch.
    seg = STD[6:-4]
    wrong = b"##%04d" % (len(seg) - 1) + seg + b"%04X" % crc_hj212(seg)
    results = run(wrong + CRLF + P9014 + CRLF)
    assert verdicts(results) == [(False, "length_mismatch"), (True, None)]
    assert results[0].raw == wrong
