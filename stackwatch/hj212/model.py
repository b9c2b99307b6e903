"""Codec result types: the framer's verdict and the decoded frame.

Errors and warnings are strings ``"<code>: <human text>"``; the code before the colon is
stable (see :data:`REASONS`) so downstream stages and dashboards can count them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.beijing_time import CST

__all__ = [
    "CST",
    "REASONS",
    "DecodedFrame",
    "FrameResult",
    "Version",
    "issue",
    "issue_code",
]


Version = Literal["2005", "2017", "2025"]

REASONS: dict[str, str] = {
    # framing (HJ 212-2017 §6.3.1 Table 2)
    "garbage": "bytes outside any frame (no '##' header)",
    "bad_length_field": "'##' not followed by a 4-digit data segment length",
    "length_mismatch": "data segment length differs from the length field",
    "bad_crc_field": "check code is not 4 hex digits",
    "bad_crc": "CRC (HJ 212-2017 App. A) does not match the data segment",
    "segment_too_long": "data segment longer than 1024 characters",
    "truncated": "stream ended inside a frame",
    "encrypted": "SM4-encrypted data area (HJ 212-2025): length and CRC are checked after "
    "decryption with the logger's key",
    # data segment (Table 3, §6.3.3)
    "bad_encoding": "data segment is not valid UTF-8",
    "missing_cp": "no 'CP=&&' data area",
    "missing_cp_terminator": "data area does not end with '&&'",
    "bad_separator": "field separator missing or wrong",
    "missing_field": "required header field absent",
    "bad_field": "header field malformed",
    "bad_flag": "Flag is not an integer 0..255",
    "unsupported_version": "Flag version bits name no known protocol version",
    "bad_split": "PNUM/PNO inconsistent with the Flag D bit",
    "cp_too_long": "data area longer than 950 characters",
    "bad_item": "CP item is not key=value",
    "bad_key": "CP key malformed (spaces or illegal characters)",
    "bad_factor_code": "measurement key with a code that is neither a 2017 nor a 2005 code",
    "non_numeric_value": "measurement value is not a number",
    "bad_datatime": "DataTime is not a valid 14/17-digit local time",
    # warnings
    "duplicate_key": "key repeated; the last value wins",
    "length_in_characters": "length field counts characters, not UTF-8 bytes",
    "lowercase_crc": "check code in lower-case hex",
    "bad_qn": "QN is not 17 digits YYYYMMDDhhmmsszzz",
    "unknown_data_flag": "data flag not in HJ 212-2017 Table 8",
    "non_utf8_decoded_gb18030": "data segment is not UTF-8; decoded as GB18030",
    "decoder_error": "unexpected decoder failure (a bug; the frame is kept)",
}


def issue(code: str, detail: str | None = None) -> str:
    """Format an error/warning as ``"code: text"``."""
    return f"{code}: {detail if detail is not None else REASONS.get(code, code)}"


def issue_code(text: str) -> str:
    """The stable code of an error/warning string."""
    return text.partition(":")[0]


class FrameResult(NamedTuple):
    """One unit cut from a TCP byte stream by :class:`~stackwatch.hj212.framing.Framer`.

    ``raw`` is the frame without its CRLF (or the rejected bytes). A frame is ``ok`` when its
    length field, CRC field and CRC are right (HJ 212-2017 §6.3.1: "if the CRC is wrong,
    execution ends"); its content is judged later by ``decode_frame``. A NamedTuple: it is
    immutable and the cheapest record to create once per frame.
    """

    raw: bytes
    ok: bool
    reason: str | None = None
    """Stable short code (a key of :data:`REASONS`), None when ok."""
    detail: str | None = None
    """Human-readable explanation of ``reason``."""
    length_ok: bool = False
    crc_ok: bool = False
    length_in_chars: bool = False
    """Length field matched the character count rather than the UTF-8 byte count."""

    @property
    def segment(self) -> bytes:
        """The data segment (between the length field and the CRC)."""
        return self.raw[6:-4]


class DecodedFrame(BaseModel):
    """A decoded HJ 212 frame (2005 / 2017 / 2025 dialects), valid or not.

    ``ok`` is true only when length and CRC are right and there are no errors; warnings do
    not make a frame invalid. 2005 factor codes are mapped to 2017 codes in ``values`` and
    ``flags``; ``original_codes`` keeps the code as received.
    """

    model_config = ConfigDict(frozen=False, extra="forbid")

    ok: bool
    crc_ok: bool
    length_ok: bool
    version: Version | None = Field(
        default=None, description="From the Flag version bits; None if unknown."
    )
    qn: str | None = None
    st: str | None = None
    cn: str | None = None
    pw: str | None = None
    mn: str | None = None
    flag: int | None = None
    ack_requested: bool = False
    split: bool = False
    pnum: int | None = None
    pno: int | None = None
    resend: bool = Field(default=False, description="HJ 212-2025 RF=1 re-sent packet.")
    data_time: datetime | None = None
    values: dict[str, dict[str, float]] = Field(default_factory=dict)
    flags: dict[str, str] = Field(default_factory=dict)
    cp: dict[str, str] = Field(
        default_factory=dict,
        description="Other CP fields verbatim (RtdInterval, HeartbeatTime, SB1-RS, -EFlag...).",
    )
    original_codes: dict[str, str] = Field(
        default_factory=dict, description="2017 code → 2005 code as received, where mapped."
    )
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    raw: str = ""

    @property
    def error_codes(self) -> list[str]:
        """Stable codes of the errors."""
        return [issue_code(e) for e in self.errors]

    @property
    def warning_codes(self) -> list[str]:
        """Stable codes of the warnings."""
        return [issue_code(w) for w in self.warnings]

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the first keys are the codec's published shape."""
        return {
            "ok": self.ok,
            "crc_ok": self.crc_ok,
            "length_ok": self.length_ok,
            "version": self.version,
            "qn": self.qn,
            "st": self.st,
            "cn": self.cn,
            "pw": self.pw,
            "mn": self.mn,
            "flag": self.flag,
            "data_time": self.data_time.isoformat() if self.data_time is not None else None,
            "values": {code: dict(v) for code, v in self.values.items()},
            "flags": dict(self.flags),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "ack_requested": self.ack_requested,
            "split": self.split,
            "pnum": self.pnum,
            "pno": self.pno,
            "resend": self.resend,
            "cp": dict(self.cp),
            "original_codes": dict(self.original_codes),
        }


# Every field is always set. One shared set is safe: pydantic only ever adds names to it
# (a no-op here) and ``model_copy`` copies it.
_FIELDS_SET: set[str] = set(DecodedFrame.model_fields)
_new = object.__new__
_set = object.__setattr__


def construct_decoded(fields: dict[str, Any]) -> DecodedFrame:
    """Build a :class:`DecodedFrame` from fields the decoder produced, without validation.

    The decoder is the only caller and sets every field with its declared type; skipping
    pydantic validation (and ``model_construct``, which is slower still) keeps decoding above
    50 000 frames/s. Anything from outside goes through ``DecodedFrame.model_validate``.
    """
    frame: DecodedFrame = _new(DecodedFrame)
    _set(frame, "__dict__", fields)
    _set(frame, "__pydantic_fields_set__", _FIELDS_SET)
    _set(frame, "__pydantic_extra__", None)
    _set(frame, "__pydantic_private__", None)
    return frame
