"""SM4 encryption of the CP data area (HJ 212-2025; docs/hj212-2025.md; pure, no I/O).

What this follows (HJ 212-2025 as summarised from a public test suite that cites the PDF, and
from a public implementation calibrated on it; **UNCONFIRMED** against the standard's text):

* the data area — the characters between `CP=&&` and the closing `&&` — is encrypted with SM4
  (GB/T 32907) in ECB mode without padding, with the logger's 16-byte key;
* whole 16-byte blocks are encrypted; a trailing part shorter than a block stays in clear;
* the ciphertext is written as `{0xE4,0x3E,…}` (one `0x` hex pair per byte) in place of the
  encrypted part, the clear tail following it;
* the length field and the CRC are those of the *plaintext* data segment, so the receiver
  decrypts first and checks length and CRC on what it decrypted;
* encryption is required on the Internet for data commands 2000–2999, 1014 (key exchange) and
  3020 (field-machine information).

The cipher itself is the `cryptography` package's SM4; nothing here implements SM4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from stackwatch.hj212.crc import crc16

__all__ = [
    "BLOCK",
    "ENCRYPTED_MARK",
    "Decrypted",
    "DecryptionError",
    "cn_requires_encryption",
    "decrypt_record",
    "encrypt_segment",
    "is_encrypted",
    "parse_key",
    "sm4_ecb",
]

BLOCK = 16
ENCRYPTED_MARK = b"CP=&&{0x"
"""How an encrypted data area begins on the wire."""
_CP = "CP=&&"
_HEX_LIST = re.compile(r"\{(0x[0-9A-Fa-f]{2}(?:,0x[0-9A-Fa-f]{2})*)\}")


class DecryptionError(ValueError):
    """A frame that does not decrypt to a well-formed one; `code` is the stable reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def parse_key(text: str) -> bytes:
    """A key as written in the registry: 32 hex digits (16 bytes)."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("an SM4 key is 32 hex digits (16 bytes)") from None
    if len(key) != BLOCK:
        raise ValueError(f"an SM4 key is 16 bytes, got {len(key)}")
    return key


def cn_requires_encryption(cn: str | None) -> bool:
    """Data commands 2000–2999, 1014 and 3020 are encrypted on the Internet (HJ 212-2025)."""
    if cn is None or not cn.isdigit():
        return False
    return 2000 <= int(cn) <= 2999 or cn in ("1014", "3020")


def is_encrypted(record: bytes) -> bool:
    """Whether a frame's data area is written as SM4 ciphertext."""
    return ENCRYPTED_MARK in record


def sm4_ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    """SM4 (GB/T 32907) in ECB mode, no padding: `data` is whole 16-byte blocks."""
    cipher = Cipher(algorithms.SM4(key), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def encrypt_segment(segment: str, key: bytes) -> str:
    """The wire form of a plaintext data segment: its data area encrypted.

    Raises ValueError when the segment has no data area, or when the clear tail would cut a
    UTF-8 character (data areas are ASCII in practice).
    """
    start = segment.find(_CP)
    if start < 0 or not segment.endswith("&&"):
        raise ValueError("segment has no CP=&&…&& data area")
    head, area = segment[: start + len(_CP)], segment[start + len(_CP) : -2]
    data = area.encode("utf-8")
    cut = len(data) // BLOCK * BLOCK
    try:
        tail = data[cut:].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the clear tail would split a UTF-8 character") from None
    if cut == 0:
        return segment  # nothing as long as a block: all of it stays in clear
    cipher = sm4_ecb(key, data[:cut], decrypt=False)
    return head + "{" + ",".join(f"0x{b:02X}" for b in cipher) + "}" + tail + "&&"


@dataclass(frozen=True)
class Decrypted:
    """A decrypted frame: the plaintext record (`##` + length + segment + CRC) and which of
    the keys tried opened it."""

    record: bytes
    key_index: int


def decrypt_record(record: bytes, keys: list[bytes]) -> Decrypted:
    """Decrypt an encrypted frame (without CRLF) with the first key that yields a segment
    whose length and CRC match the frame's; raises `DecryptionError` otherwise."""
    if len(record) < 10 or not record.startswith(b"##") or not record[2:6].isdigit():
        raise DecryptionError("bad_frame", "not a framed record")
    declared, crc_field, wire = int(record[2:6]), record[-4:], record[6:-4]
    try:
        text = wire.decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("bad_ciphertext", "the encrypted segment is not ASCII") from None
    start = text.find(_CP)
    if start < 0 or not text.endswith("&&"):
        raise DecryptionError("bad_ciphertext", "no CP=&&…&& data area")
    head, area = text[: start + len(_CP)], text[start + len(_CP) : -2]
    m = _HEX_LIST.match(area)
    if m is None:
        raise DecryptionError("bad_ciphertext", "data area does not start with {0x..,…}")
    cipher = bytes(int(h, 16) for h in m.group(1).split(","))
    if len(cipher) % BLOCK:
        raise DecryptionError(
            "bad_ciphertext", f"{len(cipher)} cipher bytes are not whole 16-byte blocks"
        )
    tail = area[m.end() :].encode("ascii")
    if not keys:
        raise DecryptionError("no_key", "the frame is encrypted and the logger has no key")
    for index, key in enumerate(keys):
        plain = sm4_ecb(key, cipher, decrypt=True) + tail
        segment = head.encode("ascii") + plain + b"&&"
        if len(segment) == declared and b"%04X" % crc16(segment) == crc_field.upper():
            return Decrypted(b"##%04d" % declared + segment + crc_field, index)
    raise DecryptionError(
        "wrong_key",
        f"none of the logger's {len(keys)} key(s) decrypts it to a frame with the right "
        "length and CRC (wrong key, or the ciphertext was altered)",
    )
