"""The state tables' codec (streams/state_codec.py): same JSON meaning as Faust's `json` codec,
NaN and ±Infinity included, so changelogs written before and after the switch read back alike."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import faust
from faust.serializers import codecs

from stackwatch.processor import ProcessorConfig, StackProcessor
from stackwatch.registry import StackRegistry
from stackwatch.settings import Settings, TopicSettings
from streams.app import create_app
from streams.state_codec import STATE_CODEC, StateJsonCodec
from tests.unit.test_processor import LIMITS, T0, minute

CODEC = StateJsonCodec()
FAUST_JSON = codecs.get_codec("json")


def test_nan_and_infinities_are_written_as_json_constants() -> None:
    # The literals the standard library's json module writes and reads (not null, as orjson).
    value = {"sum": math.inf, "low": -math.inf, "gap": math.nan, "x": 0.1, "k": [1, None, "é"]}
    assert CODEC.dumps(value) == (
        b'{"sum":Infinity,"low":-Infinity,"gap":NaN,"x":0.1,"k":[1,null,"\xc3\xa9"]}'
    )
    back = CODEC.loads(CODEC.dumps(value))
    assert back["sum"] == math.inf and back["low"] == -math.inf and math.isnan(back["gap"])
    assert back["x"] == 0.1 and back["k"] == [1, None, "é"]


def test_records_of_faust_json_codec_read_back_alike_both_ways() -> None:
    # A worker upgraded over an old changelog reads it; a rolled-back worker reads the new one.
    value = {"stack": None, "floats": [5e-324, 1e16, 0.30000000000000004, -0.0, 1.7e308],
             "big": 123456789012345678901234567890, "inf": math.inf}
    assert CODEC.loads(FAUST_JSON.dumps(value)) == value
    assert FAUST_JSON.loads(CODEC.dumps(value)) == value
    # A deleted key: once the JSON text null, now a tombstone; the old records still read as
    # None.
    assert CODEC.dumps(None) is None
    assert CODEC.loads(FAUST_JSON.dumps(None)) is None


def test_a_processor_state_recovers_through_the_codec() -> None:
    # Three kiln minutes into the open hour, then the state as the changelog carries it.
    proc = StackProcessor("kiln-1", ProcessorConfig())
    for i in range(3):
        proc.on_reading(minute(T0 + timedelta(minutes=i), 20.0 + i), LIMITS)
    state = proc.to_state()
    recovered = StackProcessor.from_state(CODEC.loads(CODEC.dumps(state)), ProcessorConfig())
    assert recovered.to_state() == state


def test_the_worker_tables_and_their_changelogs_use_the_codec(tmp_path: Any) -> None:
    settings = Settings(topics=TopicSettings(partitions=1), kafka_bootstrap="127.0.0.1:9")
    wa = create_app(settings, broker="127.0.0.1:9", registry=StackRegistry(stacks=[]),
                    app_id="test-state-codec", data_dir=tmp_path)
    for table in (wa.table, wa.archive):
        assert isinstance(table, faust.Table)
        assert table.value_serializer == STATE_CODEC
        changelog = table.changelog_topic
        assert isinstance(changelog, faust.Topic)
        assert changelog.value_serializer == STATE_CODEC
        assert table.data.value_serializer == STATE_CODEC  # the store, built lazily
