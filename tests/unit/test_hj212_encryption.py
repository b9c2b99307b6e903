"""HJ 212-2025 SM4 encryption of the data area (stackwatch.hj212.encryption, the gateway).

Oracles: the SM4 example of GB/T 32907-2016 itself (key = plaintext = 0123…3210 →
681EDF34D206965E86B3E94F536E4246), the system's own OpenSSL command (a build separate from
the library stackwatch uses) for every other ciphertext, and the standard's bitwise CRC.
The test key is the one the HJ 212-2025 examples use: sixteen bytes 0x30.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from stackwatch.beijing_time import CST
from stackwatch.hj212 import (
    DecryptionError,
    build_frames,
    cn_requires_encryption,
    decode_frame,
    decrypt_record,
    encrypt_segment,
    split_frames,
)
from stackwatch.hj212.encryption import sm4_ecb
from stackwatch.models import RawFrame, Reading, Verdict
from stackwatch.normalise import reading_from_raw
from stackwatch.registry import Sm4Key, StackInfo, StackRegistry
from streams.gateway_judge import Hj212Codec, judge_frame
from tests.oracles import crc_hj212

KEY = bytes([0x30] * 16)
OTHER = bytes.fromhex("00112233445566778899aabbccddeeff")
MN = "010000A8900016F000169DC0"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=CST)
VALUES = {"a21026": {"Avg": 12.5, "Min": 11.0, "Max": 14.0}, "a19001": {"Avg": 10.0}}


def openssl_sm4(key: bytes, data: bytes) -> bytes:
    out = subprocess.run(
        ["openssl", "enc", "-sm4-ecb", "-nopad", "-K", key.hex()],
        input=data, capture_output=True, check=True,
    )
    return out.stdout


def frame(key: bytes | None = KEY, **kw: object) -> str:
    (text,) = build_frames("2051", MN, "123456", T0, VALUES, version="2025", ack=True, now=T0,
                           sm4_key=key, **kw)  # type: ignore[arg-type]
    return text


def test_the_cipher_is_gb_t_32907_sm4() -> None:
    block = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert sm4_ecb(block, block).hex().upper() == "681EDF34D206965E86B3E94F536E4246"
    assert sm4_ecb(block, bytes.fromhex("681EDF34D206965E86B3E94F536E4246"), decrypt=True) == block


def test_encrypted_frame_layout_length_and_crc_are_the_plaintexts() -> None:
    clear = frame(key=None).rstrip("\r\n")
    wire = frame().rstrip("\r\n")
    plain_segment = clear[6:-4]
    head, area = plain_segment.split("CP=&&", 1)
    area = area[:-2]
    data = area.encode()
    cut = len(data) // 16 * 16
    cipher = openssl_sm4(KEY, data[:cut])
    expected = (head + "CP=&&{" + ",".join(f"0x{b:02X}" for b in cipher) + "}"
                + data[cut:].decode() + "&&")
    assert wire[6:-4] == expected
    assert wire[2:6] == f"{len(plain_segment.encode()):04d}"  # the plaintext's length
    assert wire[-4:] == f"{crc_hj212(plain_segment.encode()):04X}"  # and its CRC


def test_a_data_area_shorter_than_a_block_stays_in_clear() -> None:
    segment = "QN=20260301100000000;ST=91;CN=9014;PW=1;MN=M;Flag=8;CP=&&short=1&&"
    assert encrypt_segment(segment, KEY) == segment


def test_round_trip_gives_the_clear_frame_and_the_same_readings() -> None:
    clear, wire = frame(key=None).rstrip("\r\n"), frame().rstrip("\r\n")
    (unit,) = split_frames(wire.encode())
    assert (unit.ok, unit.reason) == (False, "encrypted")  # unreadable without the key
    opened = decrypt_record(unit.raw, [KEY])
    assert opened.record.decode() == clear and opened.key_index == 0
    stack = StackInfo(stack_id="s", mn=MN, sector="cement", process="kiln_tail")
    readings = [
        reading_from_raw(
            RawFrame(text=wire, received_at=T0, peer="p", mn=MN, verdict=Verdict.ACCEPTED,
                     decrypted=text),
            {MN: stack}.get, lambda _s, _t: 10.0,
        )
        for text in (opened.record.decode(), clear)
    ]
    enc_reading, clear_reading = readings
    assert isinstance(enc_reading, Reading) and isinstance(clear_reading, Reading)
    assert enc_reading.values == clear_reading.values and enc_reading.encrypted


def _same(wire: str) -> str:
    return wire


def _flip_a_cipher_digit(wire: str) -> str:
    at = wire.index("{0x") + 3  # first hex digit of the first cipher byte
    return wire[:at] + ("E" if wire[at] == "F" else "F") + wire[at + 1 :]


def _one_byte_too_many(wire: str) -> str:
    return wire.replace("{0x", "{0x00,0x", 1)  # 49 bytes: not whole blocks


@pytest.mark.parametrize(
    ("tamper", "keys", "code"),
    [
        (_same, [OTHER], "wrong_key"),
        (_flip_a_cipher_digit, [KEY], "wrong_key"),  # ECB has no MAC: the CRC catches it
        (_same, [], "no_key"),
        (_one_byte_too_many, [KEY], "bad_ciphertext"),
    ],
)
def test_frames_that_do_not_open_say_why(
    tamper: Callable[[str], str], keys: list[bytes], code: str
) -> None:
    wire = tamper(frame().rstrip("\r\n"))
    with pytest.raises(DecryptionError) as err:
        decrypt_record(wire.encode(), keys)
    assert err.value.code == code


def _stack(**kw: Any) -> StackInfo:
    return StackInfo(stack_id="s", mn=MN, password="123456", sector="cement",
                     process="kiln_tail", **kw)


def judge(wire: str, stack: StackInfo, now: datetime = T0):  # type: ignore[no-untyped-def]
    (unit,) = split_frames(wire.encode())
    return judge_frame(unit, codec=Hj212Codec(), registry=StackRegistry(stacks=[stack]),
                       auto_register=False, now=now)


def test_gateway_opens_with_the_loggers_key_keeps_the_wire_text_and_answers() -> None:
    stack = _stack(sm4_keys=[Sm4Key(key=SecretStr(KEY.hex()))])
    got = judge(frame(), stack)
    assert got.verdict is Verdict.ACCEPTED
    # Kept as received, but for the password (masked in the clear header and the plaintext).
    assert "PW=123456" in frame()
    assert got.text == frame().rstrip("\r\n").replace("PW=123456", "PW=******")
    assert got.decrypted == frame(key=None).rstrip("\r\n").replace("PW=123456", "PW=******")
    assert got.ack is not None and ";CN=9014;" in got.ack and ";Flag=8;" in got.ack
    assert decode_frame(got.ack.encode()).qn == "20260301100000000"


def test_gateway_refuses_clear_data_where_encryption_is_required() -> None:
    keyed = {"sm4_keys": [Sm4Key(key=SecretStr(KEY.hex()))]}
    required = judge(frame(key=None), _stack(encryption="required", **keyed))
    assert (required.verdict, required.reason) == (Verdict.REJECTED, "not_encrypted")
    optional = judge(frame(key=None), _stack(encryption="optional", **keyed))
    assert optional.verdict is Verdict.ACCEPTED
    # A heartbeat is not a data command: clear is fine even where encryption is required.
    (beat,) = build_frames("9015", MN, "123456", T0, {}, st="91", version="2025", now=T0)
    assert judge(beat, _stack(encryption="required", **keyed)).verdict is Verdict.ACCEPTED
    assert [cn for cn in ("2011", "2061", "1014", "3020", "9014", "9015", "1011")
            if cn_requires_encryption(cn)] == ["2011", "2061", "1014", "3020"]


def test_gateway_refuses_a_frame_no_key_opens() -> None:
    got = judge(frame(key=OTHER), _stack(sm4_keys=[Sm4Key(key=SecretStr(KEY.hex()))]))
    assert got.verdict is Verdict.REJECTED and got.reasons[:2] == ("wrong_key", "encrypted")
    assert got.mn == MN and got.decrypted is None


def test_key_rotation_accepts_the_old_key_until_its_end() -> None:
    # New key current; the old one accepted until 12:00.
    until = T0 + timedelta(hours=2)
    stack = _stack(sm4_keys=[
        Sm4Key(key=SecretStr(OTHER.hex())),
        Sm4Key(key=SecretStr(KEY.hex()), valid_until=until),
    ])
    assert judge(frame(key=OTHER), stack).verdict is Verdict.ACCEPTED
    assert judge(frame(key=KEY), stack, until - timedelta(seconds=1)).verdict is Verdict.ACCEPTED
    late = judge(frame(key=KEY), stack, until + timedelta(seconds=1))
    assert (late.verdict, late.reason) == (Verdict.REJECTED, "wrong_key")


def test_keys_are_never_in_a_registry_entrys_text_form() -> None:
    stack = _stack(sm4_keys=[Sm4Key(key=SecretStr(KEY.hex()), valid_until=datetime(
        2027, 1, 1, tzinfo=UTC))])
    assert KEY.hex() not in repr(stack) and KEY.hex() not in str(stack.model_dump())
    with pytest.raises(ValueError, match="32 hex digits"):
        Sm4Key(key=SecretStr("not a key"))


def test_resend_mark_is_read() -> None:
    (text,) = build_frames("2051", MN, "123456", T0, VALUES, version="2025", now=T0,
                           resend=True)
    decoded = decode_frame(text.encode())
    assert decoded.ok and decoded.resend
