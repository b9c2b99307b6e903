"""Masking passwords in frames, and reading a masked accepted frame again.

The frame is HJ 212-2017 App. A's worked example (CRC 1C80, docs/hj212.md#crc); masked texts are
written out by hand.
"""

from __future__ import annotations

from stackwatch.hj212 import decode_frame, frame_digest, redact_credentials

STD = (
    "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    "Flag=5;CP=&&RtdInterval=30&&1C80"
)
STD_MASKED = (
    "##0101QN=20160801085857223;ST=32;CN=1062;PW=******;MN=010000A8900016F000169DC0;"
    "Flag=5;CP=&&RtdInterval=30&&1C80"
)


def test_header_and_new_passwords_are_masked() -> None:
    assert redact_credentials(STD.encode()) == STD_MASKED.encode()
    assert redact_credentials(b"##0042PW=7;MN=1;CP=&&&&ABCD") == b"##0042PW=******;MN=1;CP=&&&&ABCD"
    assert redact_credentials(b"ST=32;CN=1072;PW=1;MN=2;CP=&&NewPW=654321;x=1&&") == (
        b"ST=32;CN=1072;PW=******;MN=2;CP=&&NewPW=******;x=1&&")
    assert redact_credentials(b"GET /?pw=hunter2;") == b"GET /?pw=hunter2;"  # not a field
    assert redact_credentials(b"x;pw=hunter2") == b"x;pw=******"  # any spelling of the field
    assert redact_credentials(b"QN=1;PW=;MN=2") == b"QN=1;PW=;MN=2"  # nothing to hide
    assert redact_credentials(STD_MASKED.encode()) == STD_MASKED.encode()  # idempotent


def test_digest_is_of_the_original() -> None:
    # sha256 of b"abc" (FIPS 180-2 example)
    assert frame_digest(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_masked_accepted_frame_is_read_again_only_when_vouched_for() -> None:
    plain = decode_frame(STD)
    assert plain.ok and plain.pw == "100000"
    assert not decode_frame(STD_MASKED).ok  # same length, CRC no longer matches
    again = decode_frame(STD_MASKED, verified=True)
    assert again.ok and again.pw == "******"
    assert (again.mn, again.cn, again.qn, again.cp) == (plain.mn, plain.cn, plain.qn, plain.cp)
    longer = STD.replace("PW=100000", "PW=1")  # a mask longer than the PW: length differs too
    masked = redact_credentials(longer.encode()).decode()
    assert not decode_frame(masked).ok and decode_frame(masked, verified=True).ok
    assert not decode_frame("garbage;PW=******", verified=True).ok  # no frame at all
