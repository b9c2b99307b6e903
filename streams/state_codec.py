"""The state tables' value codec: JSON written by pydantic-core, read by the standard library.

Faust's `json` codec writes with the standard library's pure-Python encoder. At national scale
that encoder was the worker's largest single cost (11 % of its samples at 400 frames/s): every
checkpoint writes the whole state of each changed stack. pydantic-core's Rust encoder writes the
same JSON about six times faster. `inf_nan_mode="constants"` writes NaN and ±Infinity the way
the standard library does (orjson would write null and change a recovered state's sums), so a
changelog written by either codec reads back the same, and reading stays `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from faust.serializers import codecs

STATE_CODEC = "stackwatch-state-json"


class StateJsonCodec(codecs.Codec):
    """Faust codec: pydantic-core JSON out (NaN/Infinity as constants), stdlib JSON in."""

    def _dumps(self, obj: Any) -> bytes:
        return pydantic_core.to_json(obj, inf_nan_mode="constants")

    def _loads(self, s: bytes) -> Any:
        return json.loads(s)


codecs.register(STATE_CODEC, StateJsonCodec())

__all__ = ["STATE_CODEC", "StateJsonCodec"]
