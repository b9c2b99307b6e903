"""The worker's state tables write a deleted key as a real Kafka tombstone (no value).

A `null` JSON value would survive log compaction for ever and come back from every recovery
as a key with value None; a tombstone is removed by compaction and deleted by recovery
(streams/state_codec.py). Checked on the records the embedded broker hands back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stackwatch.registry import StackRegistry
from stackwatch.settings import Settings, TopicSettings
from streams.app import create_app
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.integration


async def test_a_deleted_archive_key_is_a_tombstone(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    settings = Settings(topics=TopicSettings(partitions=1), kafka_bootstrap=kafka_bootstrap)
    wa = create_app(settings, broker=kafka_bootstrap, registry=StackRegistry(stacks=[]),
                    app_id=unique_topic.replace(".", "-"), data_dir=tmp_path)
    changelog = wa.archive.changelog_topic.get_topic_name()
    await create_topics(kafka_bootstrap, [changelog], partitions=1)
    window = {"start": "2026-11-01T08:00:00+08:00", "items": [], "sum": float("inf")}
    await wa.app.producer.start()
    try:
        await wa.archive.send_changelog(0, "kiln-1|hour|08", window)
        await wa.archive.send_changelog(0, "kiln-1|hour|08", None)
        await wa.app.producer.flush()
    finally:
        await wa.app.producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(changelog, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while len(records) < 2:
            batch = await consumer.getmany(tp, timeout_ms=5000)
            assert batch, f"only {len(records)} changelog records came back"
            records += batch[tp]
    finally:
        await consumer.stop()
    assert [json.loads(r.key) for r in records] == ["kiln-1|hour|08"] * 2
    assert records[0].value is not None
    assert json.loads(records[0].value)["sum"] == float("inf")
    assert records[1].value is None  # a tombstone, not b"null"
