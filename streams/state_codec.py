"""The state tables' value codec: JSON written by pydantic's Rust serializer, read by the stdlib.

Faust's `json` codec writes with the standard library's pure-Python encoder. At national scale
that encoder was the worker's largest single cost (10.5 % of its samples at 400 frames/s):
every checkpoint writes the whole state of each changed stack, up to ~25 KB late in an hour.
pydantic's serializer writes the same JSON about four times faster (a 25 KB state: 66 µs
instead of 287 µs; in the worker its share fell to 5.7 %). `ser_json_inf_nan="constants"`
writes NaN and ±Infinity the way the standard library does (orjson would write null and change
a recovered state's sums), so a changelog written by either codec reads back the same, and
reading stays `json.loads`.

A deleted key (an archived window dropped) is written as a real Kafka tombstone, a record with
no value, not as the JSON text `null`: log compaction then removes the key from the changelog,
and Faust's recovery deletes it from the store, where a `null` value would stay forever.
Changelogs written before read back alike (`null` is read as None, which no reader keeps).
"""

from __future__ import annotations

import json
from typing import Any

from faust.serializers import codecs
from pydantic import ConfigDict, TypeAdapter

STATE_CODEC = "stackwatch-state-json"

_ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="constants"))


class StateJsonCodec(codecs.Codec):
    """Faust codec: pydantic JSON out (NaN/Infinity as constants), stdlib JSON in; None out as
    a tombstone (no value)."""

    # Faust types the result as bytes, but hands it to the producer as the record's value as
    # is: None there is a tombstone.
    def _dumps(self, obj: Any) -> bytes | None:  # type: ignore[override]
        if obj is None:
            return None
        return _ANY_JSON.dump_json(obj)

    def _loads(self, s: bytes) -> Any:
        return json.loads(s)


codecs.register(STATE_CODEC, StateJsonCodec())

__all__ = ["STATE_CODEC", "StateJsonCodec"]
