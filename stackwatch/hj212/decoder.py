"""``decode_frame``: one HJ 212 frame (2005 / 2017 / 2025) → :class:`DecodedFrame`, never raises.

Framing verdict (length, CRC; HJ 212-2017 §6.3.1 and App. A) plus the data segment (Table 3,
§6.3.3). A frame with a bad CRC is still parsed best-effort so the raw layer can show its MN
and CN, but it is never ``ok`` (§6.3.1: "if the CRC is wrong, execution ends").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stackwatch.hj212.framing import MAX_SEGMENT, judge_record
from stackwatch.hj212.model import DecodedFrame, FrameResult, construct_decoded, issue
from stackwatch.hj212.segment import new_fields, parse_segment

__all__ = ["decode_frame", "reassemble"]

_UNPARSEABLE = frozenset({"garbage", "bad_length_field", "truncated"})
#: What masking a password changes: the data segment's length and so its CRC.
_MASKING_CHANGES = frozenset({"length_mismatch", "bad_crc"})


def _to_record(frame: bytes | str) -> bytes:
    data = frame.encode("utf-8", errors="replace") if isinstance(frame, str) else bytes(frame)
    data = data.strip(b" \t\r\n")
    while data.endswith(b"\\r\\n"):  # CRLF written out as text
        data = data[:-4].rstrip(b" \t")
    return data


def _decode(frame: bytes | str | FrameResult, max_segment: int, verified: bool) -> DecodedFrame:
    if isinstance(frame, FrameResult):
        result = frame
    else:
        record = _to_record(frame)
        result = judge_record(record, max_segment)
        if verified and result.reason in _MASKING_CHANGES:
            result = FrameResult(record, True, None, None, True, True, False)
    raw = result.raw
    out = new_fields()
    errors: list[str] = out["errors"]
    warnings: list[str] = out["warnings"]
    out["crc_ok"] = result.crc_ok
    out["length_ok"] = result.length_ok
    if result.reason is not None:
        errors.append(issue(result.reason, result.detail))
    if result.length_in_chars:
        warnings.append(issue("length_in_characters"))
    if raw.isascii():
        out["raw"] = text = raw.decode("latin-1")
        if result.reason not in _UNPARSEABLE and len(raw) >= 10:
            crc_text = text[-4:]
            if crc_text != crc_text.upper():
                warnings.append(issue("lowercase_crc"))
            parse_segment(text[6:-4], out)
    else:
        out["raw"] = raw.decode("utf-8", errors="replace")
        if result.reason not in _UNPARSEABLE and len(raw) >= 10:
            seg = raw[6:-4]
            try:
                seg_text = seg.decode("utf-8")
            except UnicodeDecodeError:
                try:
                    seg_text = seg.decode("gb18030")
                    warnings.append(issue("non_utf8_decoded_gb18030"))
                except UnicodeDecodeError:
                    seg_text = seg.decode("utf-8", errors="replace")
                    errors.append(issue("bad_encoding"))
            parse_segment(seg_text, out)
    out["ok"] = result.ok and not errors
    return construct_decoded(out)


def decode_frame(
    frame: bytes | str | FrameResult, *, max_segment: int = MAX_SEGMENT, verified: bool = False
) -> DecodedFrame:
    """Decode one frame (``##…CRC``, with or without CRLF) or a :class:`FrameResult`.

    Passing the framer's ``FrameResult`` reuses its length/CRC verdict instead of checking
    twice. ``verified=True`` is for a frame whose password was masked after the gateway had
    accepted it (`stackwatch.hj212.redact`): its length and CRC were judged on the original,
    so a length or CRC that no longer match are not errors. Never raises: every problem is in
    ``errors``/``warnings``.
    """
    try:
        return _decode(frame, max_segment, verified)
    except Exception as exc:  # the contract is "never raises"; report instead
        fields: dict[str, Any] = new_fields()
        fields["errors"].append(issue("decoder_error", f"{type(exc).__name__}: {exc}"))
        raw = frame.raw if isinstance(frame, FrameResult) else frame
        fields["raw"] = (
            raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")
        )
        return construct_decoded(fields)


def reassemble(parts: Sequence[DecodedFrame]) -> DecodedFrame | None:
    """Merge the packets of one split upload (Flag D bit, PNUM/PNO; HJ 212-2017 Table 3).

    All parts must be ok, share QN/MN/CN and PNUM, and cover PNO 1..PNUM exactly once.
    Returns None until that holds. Values/flags/CP fields are merged in PNO order.
    """
    if not parts or not all(p.ok and p.split for p in parts):
        return None
    first = parts[0]
    pnum = first.pnum
    if pnum is None or len(parts) != pnum:
        return None
    if any((p.qn, p.mn, p.cn, p.pnum) != (first.qn, first.mn, first.cn, pnum) for p in parts):
        return None
    ordered = sorted(parts, key=lambda p: p.pno or 0)
    if [p.pno for p in ordered] != list(range(1, pnum + 1)):
        return None
    values: dict[str, dict[str, float]] = {}
    flags: dict[str, str] = {}
    cp: dict[str, str] = {}
    original: dict[str, str] = {}
    warnings: list[str] = []
    for part in ordered:
        for code, per_code in part.values.items():
            values.setdefault(code, {}).update(per_code)
        flags.update(part.flags)
        cp.update(part.cp)
        original.update(part.original_codes)
        warnings.extend(part.warnings)
    return first.model_copy(
        update={
            "values": values, "flags": flags, "cp": cp, "original_codes": original,
            "warnings": warnings, "pno": None, "raw": "".join(p.raw for p in ordered),
        }
    )
