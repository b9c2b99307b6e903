"""Values PostgreSQL accepts: NUL-free text and finite-number JSON for jsonb columns.

Topic payloads may carry what the database refuses outright (a NUL byte in text, NaN or
Infinity in jsonb); the sink rows keep such values visible instead of failing the batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["decode_text", "safe_json", "safe_opt_text", "safe_text"]


def safe_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL; keep it visible as the escape the gateway uses."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def safe_opt_text(value: str | None) -> str | None:
    """:func:`safe_text`, passing NULL through."""
    return None if value is None else safe_text(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # jsonb has no NaN/Infinity
    if isinstance(value, Mapping):
        return {safe_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def safe_json(value: Any) -> str:
    """JSON text for a jsonb column (NUL-free, finite numbers only)."""
    return json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False, sort_keys=True)


def decode_text(data: bytes | None) -> str:
    """A record's bytes as storable text (undecodable bytes escaped; None → empty)."""
    if data is None:
        return ""
    return safe_text(data.decode("utf-8", errors="backslashreplace"))
