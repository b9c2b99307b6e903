"""Build HJ 212 frames: data uploads (2011/2051/2061/2031), the 9014 data answer, raw encode.

Segment ≤ 1024 characters and CP field (``CP=&&…&&``, its name included as for every field
in Table 3) ≤ 950 characters (HJ 212-2017 Table 2/3); larger uploads are split into packets
carrying PNUM/PNO with the Flag D bit, each a complete frame with its own CRC (§6.3.1, App.
C). All packets of one split upload share one QN so the receiver can reassemble them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from stackwatch.beijing_time import CST
from stackwatch.hj212.codes import CODE_2017_TO_2005
from stackwatch.hj212.crc import crc16_hex
from stackwatch.hj212.encryption import encrypt_segment
from stackwatch.hj212.framing import MAX_SEGMENT
from stackwatch.hj212.model import DecodedFrame
from stackwatch.hj212.segment import MAX_CP

__all__ = [
    "FrameSpec",
    "build_answer",
    "build_data_ack",
    "build_frames",
    "build_history_request",
    "encode_segment",
    "encrypted_frame",
    "flag_value",
    "format_datatime",
    "format_number",
    "frame_segment",
    "make_qn",
]

_VERSION_BITS = {"2005": 0, "2017": 1, "2025": 2}
_RESERVED = frozenset(";,=&")


def make_qn(now: datetime) -> str:
    """QN ``YYYYMMDDhhmmsszzz`` in China Standard Time (HJ 212-2017 Table 3)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    local = now.astimezone(CST)
    return f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}"


def format_datatime(dt: datetime) -> str:
    """``DataTime`` ``YYYYMMDDhhmmss`` in +08:00 (HJ 212-2017 Table 4)."""
    if dt.tzinfo is None:
        raise ValueError("data_time must be an aware datetime")
    return f"{dt.astimezone(CST):%Y%m%d%H%M%S}"


def format_number(value: float) -> str:
    """Shortest decimal text that reads back as the same float, never in exponent form."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"value {value!r} is not a number")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"value {value!r} is not finite")
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def flag_value(version: str = "2017", *, ack: bool = False, split: bool = False) -> int:
    """Flag = version bits V5..V0, D, A (HJ 212-2017 Table 3; 2025 uses version 2)."""
    try:
        bits = _VERSION_BITS[version]
    except KeyError:
        raise ValueError(f"version must be one of {sorted(_VERSION_BITS)}") from None
    return (bits << 2) | (2 if split else 0) | (1 if ack else 0)


def _check_text(what: str, text: str) -> str:
    if not text or _RESERVED.intersection(text) or "\r" in text or "\n" in text:
        raise ValueError(f"{what} {text!r} is empty or contains ; , = & or a line break")
    return text


def frame_segment(segment: str) -> str:
    """Wrap a data segment: ``##`` + length (UTF-8 bytes) + segment + CRC + CRLF."""
    data = segment.encode("utf-8")
    if len(data) > 9999:
        raise ValueError("data segment longer than 9999 bytes cannot be framed")
    return f"##{len(data):04d}{segment}{crc16_hex(data)}\r\n"


def _factor_groups(
    values: Mapping[str, Mapping[str, float]], flags: Mapping[str, str] | None,
    *, codes_2005: bool = False,
) -> list[str]:
    if codes_2005:  # HJ/T 212-2005 loggers write the 2005 codes (HJ 212-2017 App. B.2)
        values = {CODE_2017_TO_2005.get(c, c): v for c, v in values.items()}
        flags = {CODE_2017_TO_2005.get(c, c): f for c, f in (flags or {}).items()}
    groups: list[str] = []
    flags = flags or {}
    for code, per_code in values.items():
        _check_text("factor code", code)
        items = [
            f"{code}-{_check_text('suffix', suffix)}={format_number(v)}"
            for suffix, v in per_code.items()
        ]
        if code in flags:
            items.append(f"{code}-Flag={_check_text('flag', flags[code])}")
        if items:
            groups.append(",".join(items))
    for code, flag in flags.items():
        if code not in values:
            groups.append(f"{_check_text('factor code', code)}-Flag={_check_text('flag', flag)}")
    return groups


def _header(qn: str | None, st: str, cn: str, pw: str, mn: str, flag: int | None,
            pnum: int | None = None, pno: int | None = None, *, resend: bool = False) -> str:
    parts = [] if qn is None else [f"QN={_check_text('QN', qn)}"]
    parts += [f"ST={_check_text('ST', st)}", f"CN={_check_text('CN', cn)}",
              f"PW={_check_text('PW', pw)}", f"MN={_check_text('MN', mn)}"]
    if flag is not None:
        parts.append(f"Flag={flag}")
    if pnum is not None and pno is not None:
        parts += [f"PNUM={pnum}", f"PNO={pno}"]
    if resend:
        parts.append("RF=1")  # HJ 212-2025: a re-sent (补传) packet
    return ";".join(parts) + ";"


def encrypted_frame(segment: str, key: bytes) -> str:
    """An HJ 212-2025 frame whose data area is SM4-encrypted: the length field and the CRC
    are those of the plaintext segment (`stackwatch.hj212.encryption`)."""
    data = segment.encode("utf-8")
    if len(data) > 9999:
        raise ValueError("data segment longer than 9999 bytes cannot be framed")
    return f"##{len(data):04d}{encrypt_segment(segment, key)}{crc16_hex(data)}\r\n"


def _fits(header: str, cp_items: Sequence[str]) -> bool:
    cp = "CP=&&" + ";".join(cp_items) + "&&"
    return len(cp) <= MAX_CP and len((header + cp).encode("utf-8")) <= MAX_SEGMENT


def build_frames(
    cn: str,
    mn: str,
    pw: str,
    data_time: datetime,
    values: Mapping[str, Mapping[str, float]],
    *,
    flags: Mapping[str, str] | None = None,
    st: str = "31",
    qn: str | None = None,
    ack: bool = False,
    version: str = "2017",
    extra_cp: Mapping[str, str] | None = None,
    now: datetime | None = None,
    resend: bool = False,
    sm4_key: bytes | None = None,
    field_2005: bool = False,
) -> list[str]:
    """Data upload frames (2011 real-time, 2051 minute, 2061 hour, 2031 day; any CN works).

    ``values`` is ``{code: {suffix: number}}`` (e.g. ``{"a21026": {"Avg": 12.3}}``),
    ``flags`` ``{code: "N"}``. QN defaults to ``now`` (+08:00). Returns one frame, or the
    packets of a split upload when one frame would exceed the Table 2/3 size limits.
    ``resend`` marks a re-sent packet (HJ 212-2025 ``RF=1``); ``sm4_key`` encrypts the data
    area (HJ 212-2025, `encrypted_frame`). ``field_2005`` writes the HJ/T 212-2005 dialect of
    real provincial loggers: no QN, no Flag (so no answer can be asked for), 2005 codes.
    Raises ValueError for values that cannot be encoded (naive datetimes, NaN, separators).
    """
    dialect_2005 = field_2005

    def wrap(segment: str) -> str:
        return encrypted_frame(segment, sm4_key) if sm4_key else frame_segment(segment)

    if len(cn) != 4 or not cn.isdigit():
        raise ValueError(f"CN {cn!r} is not a 4-digit command code")
    if dialect_2005:
        qn, ack = None, False
    elif qn is None:
        qn = make_qn(now if now is not None else datetime.now(CST))
    head = [f"DataTime={format_datatime(data_time)}"]
    head += [f"{_check_text('CP key', k)}={_check_text('CP value', v)}"
             for k, v in (extra_cp or {}).items()]
    groups = _factor_groups(values, flags, codes_2005=dialect_2005)
    flag = None if dialect_2005 else flag_value(version, ack=ack)
    single = _header(qn, st, cn, pw, mn, flag, resend=resend)
    if _fits(single, head + groups):
        return [wrap(single + "CP=&&" + ";".join(head + groups) + "&&")]
    # Split: pack whole factor groups greedily, sized against a worst-case split header.
    worst = _header(qn, st, cn, pw, mn, flag_value(version, ack=ack, split=True), 9999, 9999,
                    resend=resend)
    chunks: list[list[str]] = []
    current: list[str] = []
    for group in groups:
        if _fits(worst, [*head, *current, group]):
            current.append(group)
            continue
        if not current:
            raise ValueError(f"factor group {group[:40]!r}… does not fit in one packet")
        chunks.append(current)
        current = [group]
        if not _fits(worst, head + current):
            raise ValueError(f"factor group {group[:40]!r}… does not fit in one packet")
    if current or not chunks:
        chunks.append(current)
    if len(chunks) > 9999:
        raise ValueError("upload needs more than 9999 packets")
    flag = flag_value(version, ack=ack, split=True)
    return [
        wrap(
            _header(qn, st, cn, pw, mn, flag, len(chunks), i, resend=resend)
            + "CP=&&" + ";".join(head + chunk) + "&&"
        )
        for i, chunk in enumerate(chunks, start=1)
    ]


def build_data_ack(request: DecodedFrame, *, now: datetime | None = None) -> str | None:
    """9014 data answer (HJ 212-2017 §6.6, App. C part 2) when the upload asked for one.

    Only for frames whose length and CRC are right and whose Flag.A = 1 (never ack a frame
    that failed its CRC, HJ 212-2017 App. C; docs/hj212.md#answers-and-requests); the answer
    echoes the request's QN. A request without QN (2005 dialect) gets a QN made from ``now`` so the
    logger still sees an answer.
    """
    if not (request.ack_requested and request.crc_ok and request.length_ok):
        return None
    if not request.mn:
        return None
    qn = request.qn or make_qn(now if now is not None else datetime.now(CST))
    flag = flag_value(request.version or "2017")
    pw = request.pw or ""
    segment = f"QN={qn};ST=91;CN=9014;PW={pw};MN={request.mn};Flag={flag};CP=&&&&"
    return frame_segment(segment)


HISTORY_CNS = frozenset({"2051", "2061", "2031"})
"""Uploads a platform may ask a logger for again, with BeginTime/EndTime (HJ 212-2017 §6.6)."""


def build_history_request(
    cn: str,
    mn: str,
    pw: str,
    begin: datetime,
    end: datetime,
    *,
    st: str = "31",
    version: str = "2017",
    now: datetime | None = None,
) -> str:
    """A platform's request for a logger's minute (2051), hour (2061) or day (2031) data of
    [begin, end] (HJ 212-2017 App. C part 2: answered 9011, the uploads, then 9012)."""
    if cn not in HISTORY_CNS:
        raise ValueError(f"CN {cn} is not a history upload (one of {sorted(HISTORY_CNS)})")
    if end < begin:
        raise ValueError("EndTime is before BeginTime")
    qn = make_qn(now if now is not None else datetime.now(CST))
    header = _header(qn, st, cn, pw, mn, flag_value(version, ack=True))
    cp = f"BeginTime={format_datatime(begin)};EndTime={format_datatime(end)}"
    return frame_segment(header + "CP=&&" + cp + "&&")


def build_answer(
    request: DecodedFrame, cn: Literal["9011", "9012"], value: int = 1
) -> str:
    """The logger's answer to a platform request: 9011 QnRtn (1 = will execute) or 9012
    ExeRtn (1 = done), echoing the request's QN, in the request's protocol version."""
    if not request.qn or not request.mn:
        raise ValueError("a request without QN or MN cannot be answered")
    field = "QnRtn" if cn == "9011" else "ExeRtn"
    flag = flag_value(request.version or "2017")
    segment = (f"QN={request.qn};ST=91;CN={cn};PW={request.pw or ''};MN={request.mn};"
               f"Flag={flag};CP=&&{field}={value}&&")
    return frame_segment(segment)


class FrameSpec(BaseModel):
    """Input of :func:`encode_segment`: the ``DecodedFrame.to_json_dict()`` shape."""

    model_config = ConfigDict(extra="ignore")

    qn: str | None = None
    st: str
    cn: str
    pw: str
    mn: str
    flag: int | None = Field(default=None, ge=0, le=255)
    pnum: int | None = Field(default=None, ge=1, le=9999)
    pno: int | None = Field(default=None, ge=1, le=9999)
    data_time: AwareDatetime | None = None
    values: dict[str, dict[str, float]] = Field(default_factory=dict)
    flags: dict[str, str] = Field(default_factory=dict)
    cp: dict[str, str] = Field(default_factory=dict)
    version: Literal["2005", "2017", "2025"] | None = None

    @field_validator("values")
    @classmethod
    def _finite(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for code, per_code in v.items():
            for suffix, number in per_code.items():
                if not math.isfinite(number):
                    raise ValueError(f"{code}-{suffix} is not finite")
        return v


def encode_segment(fields: Mapping[str, Any] | FrameSpec) -> str:
    """Data segment text from the JSON shape (the reverse of ``to_json_dict``).

    Raises ``pydantic.ValidationError``/``ValueError`` with the reason on bad input.
    """
    spec = fields if isinstance(fields, FrameSpec) else FrameSpec.model_validate(fields)
    header = _header(spec.qn, spec.st, spec.cn, spec.pw, spec.mn, spec.flag, spec.pnum,
                     spec.pno)
    items: list[str] = []
    if spec.data_time is not None:
        items.append(f"DataTime={format_datatime(spec.data_time)}")
    items += [f"{_check_text('CP key', k)}={_check_text('CP value', v)}"
              for k, v in spec.cp.items()]
    items += _factor_groups(spec.values, spec.flags)
    return header + "CP=&&" + ";".join(items) + "&&"
