"""The state tables' value codec: JSON written by pydantic's Rust serializer, read by the stdlib.

Faust's `json` codec writes with the standard library's pure-Python encoder. At national scale
that encoder was the worker's largest single cost (10.5 % of its samples at 400 frames/s):
every checkpoint writes the whole state of each changed stack, up to ~25 KB late in an hour.
pydantic's serializer writes the same JSON about four times faster (a 25 KB state: 66 µs
instead of 287 µs; in the worker its share fell to 5.7 %). `ser_json_inf_nan="constants"`
writes NaN and ±Infinity the way the standard library does (orjson would write null and change
a recovered state's sums), so a changelog written by either codec reads back the same, and
reading stays `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

from faust.serializers import codecs
from pydantic import ConfigDict, TypeAdapter

STATE_CODEC = "stackwatch-state-json"

_ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="constants"))


class StateJsonCodec(codecs.Codec):
    """Faust codec: pydantic JSON out (NaN/Infinity as constants), stdlib JSON in."""

    def _dumps(self, obj: Any) -> bytes:
        return _ANY_JSON.dump_json(obj)

    def _loads(self, s: bytes) -> Any:
        return json.loads(s)


codecs.register(STATE_CODEC, StateJsonCodec())

__all__ = ["STATE_CODEC", "StateJsonCodec"]
