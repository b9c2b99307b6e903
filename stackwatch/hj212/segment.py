"""Parse the data segment: header fields (HJ 212-2017 Table 3) and the CP data area (§6.3.3).

Pure functions on ``str``; every problem becomes an error/warning string, nothing raises.
Keys are classified once and cached, which keeps the per-item cost to a dict lookup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Final, NamedTuple, cast

from stackwatch.beijing_time import CST
from stackwatch.hj212.codes import (
    NUMERIC_SUFFIXES,
    VALID_DATA_FLAGS,
    is_factor_code,
    normalise_code,
)
from stackwatch.hj212.model import Version, issue

__all__ = ["MAX_CP", "parse_datatime", "parse_number", "parse_segment"]

MAX_CP: Final = 950
"""Largest CP data area allowed by HJ 212-2017 Table 3."""

_VERSIONS: dict[int, Version] = {0: "2005", 1: "2017", 2: "2025"}
_NUM_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+", re.ASCII)

# Key kinds
_NUMERIC: Final = 0
_FLAG: Final = 1
_DATATIME: Final = 2
_OTHER: Final = 3
_BAD: Final = 4

_KeyInfo = tuple[int, str, str, str]  # kind, code (mapped) or key, suffix, original code/detail
_KEY_CACHE: dict[str, _KeyInfo] = {}
_KEY_CACHE_MAX: Final = 8192


def _classify_key(key: str) -> _KeyInfo:
    if not key or _KEY_RE.fullmatch(key) is None:
        return (_BAD, key, "", f"CP key {key!r} is empty or has illegal characters")
    if key == "DataTime":
        return (_DATATIME, key, "", key)
    code, dash, suffix = key.rpartition("-")
    if dash and (suffix in NUMERIC_SUFFIXES or suffix == "Flag"):
        if not is_factor_code(code):
            return (_BAD, key, "bad_factor_code",
                    f"{key!r}: {code!r} is neither a HJ 212-2017 nor a HJ/T 212-2005 code")
        return (_NUMERIC if suffix != "Flag" else _FLAG, normalise_code(code), suffix, code)
    if dash and is_factor_code(code):
        mapped = normalise_code(code)
        return (_OTHER, f"{mapped}-{suffix}", suffix, code)
    return (_OTHER, key, "", key)


def _key_info(key: str) -> _KeyInfo:
    info = _KEY_CACHE.get(key)
    if info is None:
        info = _classify_key(key)
        if len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[key] = info
    return info


def parse_number(text: str) -> float | None:
    """A measured value (N14.2 style, optionally signed/exponent); None if not a finite number.

    Stricter than ``float()``: no spaces, underscores, ``nan``/``inf`` or non-ASCII digits.
    """
    t = text.replace(".", "", 1)
    if t.isascii() and (t.isdigit() or (t[:1] == "-" and t[1:].isdigit())):
        value = float(text)
        return value if value - value == 0.0 else None
    if _NUM_RE.fullmatch(text) is None:
        return None
    value = float(text)
    if value - value != 0.0:  # overflow to inf
        return None
    return value


_DT_CACHE: dict[str, datetime] = {}
_DT_CACHE_MAX: Final = 4096


def parse_datatime(text: str) -> datetime | None:
    """``YYYYMMDDhhmmss`` (Table 4) or the 17-digit ``…zzz`` seen in 2005 traffic → +08:00.

    Many loggers report the same minute/hour start, so results are memoised (bounded).
    """
    cached = _DT_CACHE.get(text)
    if cached is not None:
        return cached
    value = _parse_datatime(text)
    if value is not None:
        if len(_DT_CACHE) >= _DT_CACHE_MAX:
            _DT_CACHE.clear()
        _DT_CACHE[text] = value
    return value


def _parse_datatime(text: str) -> datetime | None:
    n = len(text)
    if (n != 14 and n != 17) or not (text.isascii() and text.isdigit()):
        return None
    try:
        return datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]),
            int(text[8:10]), int(text[10:12]), int(text[12:14]),
            int(text[14:17]) * 1000 if n == 17 else 0,
            tzinfo=CST,
        )
    except ValueError:
        return None


def _parse_header(header: str, out: dict[str, Any], errors: list[str],
                  warnings: list[str]) -> None:
    seen: set[str] = set()
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            errors.append(issue("bad_field", f"header item {part!r} is not NAME=value"))
            continue
        if key in seen:
            warnings.append(issue("duplicate_key", f"header field {key} repeated"))
        seen.add(key)
        if key == "QN":
            if not (value.isascii() and value.isdigit()):
                errors.append(issue("bad_field", f"QN {value!r} is not digits"))
            elif len(value) != 17:
                warnings.append(issue("bad_qn", f"QN {value!r} is not 17 digits"))
            out["qn"] = value
        elif key == "ST":
            if len(value) != 2 or not (value.isascii() and value.isalnum()):
                # A warning only: real loggers send e.g. NUL bytes here in CRC-valid frames,
                # and the system code does not change how the data are read.
                warnings.append(issue("bad_field", f"ST {value!r} is not a 2-character code"))
            out["st"] = value
        elif key == "CN":
            if len(value) != 4 or not (value.isascii() and value.isdigit()):
                errors.append(issue("bad_field", f"CN {value!r} is not a 4-digit code"))
            out["cn"] = value
        elif key == "PW":
            out["pw"] = value
        elif key == "MN":
            if not value:
                errors.append(issue("bad_field", "MN is empty"))
            out["mn"] = value
        elif key == "Flag":
            if not (value.isascii() and value.isdigit()) or int(value) > 255:
                errors.append(issue("bad_flag", f"Flag {value!r} is not an integer 0..255"))
            else:
                out["flag"] = int(value)
        elif key == "PNUM" or key == "PNO":
            if not (value.isascii() and value.isdigit()) or len(value) > 4:
                errors.append(issue("bad_split", f"{key} {value!r} is not a packet number"))
            else:
                out[key.lower()] = int(value)
        elif key == "RF":
            if value == "1":
                out["resend"] = True
            else:
                warnings.append(issue("bad_field", f"RF={value!r} (only RF=1 is defined)"))
        else:
            warnings.append(issue("bad_field", f"unknown header field {key!r} ignored"))
    for key in ("st", "cn", "pw", "mn"):
        if out[key] is None:
            errors.append(issue("missing_field", f"{key.upper()} is missing"))


# The canonical header (Table 3 order, well-formed values) in one match; anything else goes
# through _parse_header, which defines the semantics (a property test checks they agree).
_HEADER_RE = re.compile(
    r"(?:QN=([0-9]{17});)?ST=([0-9A-Za-z]{2});CN=([0-9]{4});PW=([^;,=&]*);MN=([^;,=&]+);"
    r"(?:Flag=([0-9]{1,3});)?(?:PNUM=([0-9]{1,4});PNO=([0-9]{1,4});)?",
    re.ASCII,
)


def _parse_header_fast(segment: str, end: int, out: dict[str, Any], errors: list[str],
                       warnings: list[str]) -> None:
    """Header fields of ``segment[:end]`` (which ends with the ';' before ``CP=``)."""
    m = _HEADER_RE.fullmatch(segment, 0, end)
    if m is None or (m[6] is not None and int(m[6]) > 255):
        _parse_header(segment[: end - 1], out, errors, warnings)
        return
    qn, out["st"], out["cn"], out["pw"], out["mn"], flag, pnum, pno = m.groups()
    if qn is not None:
        out["qn"] = qn
    if flag is not None:
        out["flag"] = int(flag)
    if pnum is not None:
        out["pnum"] = int(pnum)
        out["pno"] = int(pno)


def _check_flag(out: dict[str, Any], errors: list[str]) -> None:
    flag: int | None = out["flag"]
    pnum: int | None = out["pnum"]
    pno: int | None = out["pno"]
    if flag is None:
        out["version"] = "2005"  # HJ 212-2017 Table 3; docs/hj212.md#flag: no Flag ⇒ 2005
        split = False
    else:
        version = _VERSIONS.get(flag >> 2)
        if version is None:
            errors.append(issue("unsupported_version",
                                f"Flag={flag}: version bits {flag >> 2} are not 0/1/2"))
        out["version"] = version
        out["ack_requested"] = bool(flag & 1)
        split = bool(flag & 2)
        out["split"] = split
    if split:
        if pnum is None or pno is None:
            errors.append(issue("bad_split", "Flag D bit set but PNUM/PNO missing"))
        elif not 1 <= pno <= pnum:
            errors.append(issue("bad_split", f"PNO={pno} not within 1..PNUM={pnum}"))
    elif pnum is not None or pno is not None:
        errors.append(issue("bad_split", "PNUM/PNO present but Flag D bit not set"))


def _parse_cp_reference(
    cp: str, out: dict[str, Any], errors: list[str], warnings: list[str]
) -> None:
    """Reference CP loop: defines the semantics (the fast path must agree with it)."""
    values: dict[str, dict[str, float]] = out["values"]
    flags: dict[str, str] = out["flags"]
    other: dict[str, str] = out["cp"]
    original: dict[str, str] = out["original_codes"]
    key_info = _key_info
    for group in cp.split(";"):
        for item in group.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                if item:
                    errors.append(issue("bad_item", f"CP item {item!r} is not key=value"))
                else:
                    warnings.append(issue("bad_separator", "empty CP item"))
                continue
            kind, code, suffix, orig = key_info(key)
            if kind == _NUMERIC:
                parsed = parse_number(value)
                if parsed is None:
                    errors.append(issue("non_numeric_value", f"{key}={value!r}"))
                    continue
                number = parsed
                per_code = values.get(code)
                if per_code is None:
                    per_code = values[code] = {}
                    if orig != code:
                        original[code] = orig
                elif suffix in per_code:
                    warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
                per_code[suffix] = number
            elif kind == _FLAG:
                if code in flags:
                    warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
                elif orig != code:
                    original[code] = orig
                if value not in VALID_DATA_FLAGS:
                    warnings.append(issue("unknown_data_flag", f"{key}={value!r}"))
                flags[code] = value
            elif kind == _DATATIME:
                if out["data_time"] is not None:
                    warnings.append(issue("duplicate_key", "DataTime repeated; last value kept"))
                dt = parse_datatime(value)
                if dt is None:
                    errors.append(issue("bad_datatime", f"DataTime={value!r}"))
                out["data_time"] = dt
            elif kind == _OTHER:
                if code in other:
                    warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
                other[code] = value
            else:
                errors.append(issue(suffix or "bad_key", orig))


# --- fast path ------------------------------------------------------------------------------
# Loggers repeat the same key layout every upload. The layout ("signature": the CP with the
# values removed) is turned once into a compiled regex whose groups are the values, with
# number/flag groups that only match what the reference loop accepts silently; each frame is
# then one ``fullmatch`` plus C-level conversions. Anything the plan does not match (bad keys,
# odd numbers, unknown flags, items without '=') goes to the reference loop above, which
# defines the semantics; a property test checks both paths agree.

_SIG_RE = re.compile(r"=[^;,]*")
_SEP_SPLIT_RE = re.compile(r"([;,])")
_NUM_GROUP = r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))"
_FLAG_GROUP = "([" + "".join(sorted(VALID_DATA_FLAGS)) + "])"
_TEXT_GROUP = "([^;,]*)"
_Getter = Callable[[Sequence[Any]], tuple[Any, ...]]


def _getter(indexes: Sequence[int]) -> _Getter | None:
    if not indexes:
        return None
    if len(indexes) == 1:
        i = indexes[0]
        return lambda seq: (seq[i],)
    return cast(_Getter, itemgetter(*indexes))


class _Plan(NamedTuple):
    pattern: re.Pattern[str] | None  # None: always use the reference loop
    nums: _Getter | None = None
    """Numeric values in code-grouped order."""
    suffixes: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    slices: tuple[slice, ...] = ()
    """Per code, its slice of the (suffix, value) pairs."""
    flag_vals: _Getter | None = None
    flag_codes: tuple[str, ...] = ()
    other_vals: _Getter | None = None
    other_keys: tuple[str, ...] = ()
    dt_index: int = -1
    original: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()


_SLOW_PLAN = _Plan(None)
_PLANS: dict[str, _Plan] = {}
_PLANS_MAX: Final = 512  # ~30 KiB each; further layouts use the reference loop (still correct)
# Compiling a plan costs ~5-10 ms, so a layout gets one only when it comes back: loggers repeat
# theirs every upload, while damaged frames (truncated, garbled keys) rarely repeat — without
# this, junk would spend the 512 plans and most of the CPU on compiles (the fuzz benchmark).
_SEEN: set[int] = set()
_SEEN_MAX: Final = 16384  # hashes of layouts seen once; cleared when full
_LAST_PLAN: dict[tuple[str | None, str | None], _Plan] = {}
_LAST_PLAN_MAX: Final = 65536


def _make_plan(signature: str) -> _Plan:
    parts = _SEP_SPLIT_RE.split(signature)
    keys = parts[0::2]
    seps = [*parts[1::2], ""]
    pattern: list[str] = []
    num_pos: dict[str, list[int]] = {}
    num_sfx: dict[str, list[str]] = {}
    flag_pos: list[int] = []
    flag_codes: list[str] = []
    other_pos: list[int] = []
    other_keys: list[str] = []
    seen_flags: set[str] = set()
    seen_other: set[str] = set()
    original: dict[str, str] = {}
    warnings: list[str] = []
    dt_index = -1
    for i, (key, sep) in enumerate(zip(keys, seps, strict=True)):
        kind, code, suffix, orig = _key_info(key)
        if kind == _NUMERIC:
            group = _NUM_GROUP
            if code not in num_pos:
                num_pos[code], num_sfx[code] = [], []
                if orig != code:
                    original[code] = orig
            elif suffix in num_sfx[code]:
                warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
            num_pos[code].append(i)
            num_sfx[code].append(suffix)
        elif kind == _FLAG:
            group = _FLAG_GROUP
            if code in seen_flags:
                warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
            elif orig != code:
                original[code] = orig
            seen_flags.add(code)
            flag_pos.append(i)
            flag_codes.append(code)
        elif kind == _DATATIME and dt_index < 0:
            group = _TEXT_GROUP
            dt_index = i
        elif kind == _OTHER:
            group = _TEXT_GROUP
            if code in seen_other:
                warnings.append(issue("duplicate_key", f"{key} repeated; last value kept"))
            seen_other.add(code)
            other_pos.append(i)
            other_keys.append(code)
        else:  # bad key or repeated DataTime: the reference loop reports it
            return _SLOW_PLAN
        pattern.append(re.escape(key) + "=" + group + re.escape(sep))
    positions: list[int] = []
    suffixes: list[str] = []
    slices: list[slice] = []
    for code, pos in num_pos.items():
        slices.append(slice(len(positions), len(positions) + len(pos)))
        positions.extend(pos)
        suffixes.extend(num_sfx[code])
    return _Plan(
        re.compile("".join(pattern), re.ASCII), _getter(positions), tuple(suffixes),
        tuple(num_pos), tuple(slices), _getter(flag_pos), tuple(flag_codes),
        _getter(other_pos), tuple(other_keys), dt_index, tuple(original.items()),
        tuple(warnings),
    )


def _parse_cp(cp: str, out: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    """CP data area → values/flags/DataTime/other fields (fast path, see above)."""
    # The same logger (MN, CN) almost always repeats its last layout: try that plan first;
    # a full match implies the same layout, because keys and separators are literal.
    source = (out["mn"], out["cn"])
    plan = _LAST_PLAN.get(source)
    match = None
    if plan is not None and plan.pattern is not None:
        match = plan.pattern.fullmatch(cp)
    if match is None or plan is None:
        if len(cp) > MAX_CP:  # refused anyway (cp_too_long); a plan would be a huge regex
            _parse_cp_reference(cp, out, errors, warnings)
            return
        signature = _SIG_RE.sub("", cp)
        plan = _PLANS.get(signature)
        if plan is None:
            seen = hash(signature)
            if len(_PLANS) >= _PLANS_MAX or seen not in _SEEN:
                if len(_SEEN) >= _SEEN_MAX:
                    _SEEN.clear()
                _SEEN.add(seen)
                _parse_cp_reference(cp, out, errors, warnings)
                return
            plan = _PLANS[signature] = _make_plan(signature)
        if len(_LAST_PLAN) < _LAST_PLAN_MAX or source in _LAST_PLAN:
            _LAST_PLAN[source] = plan
        match = plan.pattern.fullmatch(cp) if plan.pattern is not None else None
        if match is None:
            _parse_cp_reference(cp, out, errors, warnings)
            return
    (_, nums, suffixes, codes, slices, flag_vals, flag_codes, other_vals, other_keys, dt_index,
     original, plan_warnings) = plan  # one unpack instead of a dozen attribute loads
    vals = match.groups()
    if nums is not None:
        floats = list(map(float, nums(vals)))
        if not math.isfinite(sum(floats)):  # a huge number overflowed: let the loop report it
            _parse_cp_reference(cp, out, errors, warnings)
            return
        pairs = list(zip(suffixes, floats, strict=True))
        per_code: Iterator[dict[str, float]] = map(dict, map(pairs.__getitem__, slices))
        out["values"].update(zip(codes, per_code, strict=True))
    if flag_vals is not None:
        out["flags"].update(zip(flag_codes, flag_vals(vals), strict=True))
    if other_vals is not None:
        out["cp"].update(zip(other_keys, other_vals(vals), strict=True))
    if original:
        out["original_codes"].update(original)
    if plan_warnings:
        warnings.extend(plan_warnings)
    if dt_index >= 0:
        text = vals[dt_index]
        dt = parse_datatime(text)
        if dt is None:
            errors.append(issue("bad_datatime", f"DataTime={text!r}"))
        out["data_time"] = dt

def new_fields() -> dict[str, Any]:
    """Default field dict for a :class:`DecodedFrame` (same keys as the model)."""
    return {
        "ok": False, "crc_ok": False, "length_ok": False, "version": None,
        "qn": None, "st": None, "cn": None, "pw": None, "mn": None, "flag": None,
        "ack_requested": False, "split": False, "pnum": None, "pno": None, "resend": False,
        "data_time": None, "values": {}, "flags": {}, "cp": {}, "original_codes": {},
        "errors": [], "warnings": [], "raw": "",
    }


def parse_segment(segment: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse a data segment into DecodedFrame fields (errors/warnings appended in ``out``)."""
    if out is None:
        out = new_fields()
    errors: list[str] = out["errors"]
    warnings: list[str] = out["warnings"]
    i = segment.find("CP=&&")
    if i < 0:
        errors.append(issue("missing_cp"))
        _parse_header(segment.rstrip(";"), out, errors, warnings)
        _check_flag(out, errors)
        return out
    if i == 0:
        errors.append(issue("missing_field", "ST, CN, PW and MN are missing"))
    elif segment[i - 1] != ";":
        errors.append(issue("bad_separator", "missing ';' before CP"))
        _parse_header(segment[:i], out, errors, warnings)
    elif i == 1:
        _parse_header("", out, errors, warnings)
    else:
        _parse_header_fast(segment, i, out, errors, warnings)
    _check_flag(out, errors)
    body = segment[i + 5 :]
    if body.endswith("&&"):
        cp = body[:-2]
    else:
        errors.append(issue("missing_cp_terminator"))
        cp = body
    # Table 3 field lengths include the field name, so the limit covers "CP=&&" … "&&".
    if len(cp) + 7 > MAX_CP:
        errors.append(issue("cp_too_long",
                            f"CP field is {len(cp) + 7} characters (> {MAX_CP})"))
    if cp:
        _parse_cp(cp, out, errors, warnings)
        # Table 4: measured values are meaningless without the DataTime they belong to.
        if out["data_time"] is None and (out["values"] or out["flags"]) and not any(
            e.startswith("bad_datatime") for e in errors
        ):
            errors.append(issue("missing_field", "DataTime missing in a packet with values"))
    return out
