"""`seek_to_committed_or_reset` moves a group's partitions back to where it resumes, on a real
Tansu, including partitions nothing was committed on (aiokafka's own seek leaves those alone).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka_transport import seek_to_committed_or_reset
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.integration

RECORDS = 10


async def _consume(consumer: AIOKafkaConsumer, tp: TopicPartition, count: int) -> list[int]:
    offsets: list[int] = []
    async with asyncio.timeout(30):
        while len(offsets) < count:
            batch = await consumer.getmany(tp, timeout_ms=500)
            offsets += [record.offset for record in batch.get(tp, [])]
    return offsets


async def test_fetched_but_uncommitted_and_committed_partitions_are_read_again(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """Ten records in each of two partitions of a fresh group. Both are read to the end;
    offset 4 is committed on partition 1 only. After the seek, partition 0 (nothing
    committed) is read again from 0, as a fresh member would, and partition 1 from 4.
    aiokafka's `seek_to_committed` alone would leave partition 0 at 10: its records, if the
    reader had dropped them, would be lost."""
    await create_topics(kafka_bootstrap, [unique_topic], 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(RECORDS):
                await producer.send_and_wait(unique_topic, b"%d" % n, partition=partition)
    finally:
        await producer.stop()
    fresh, committed = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=f"{unique_topic}-g",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([fresh, committed])
        assert await _consume(consumer, fresh, RECORDS) == list(range(RECORDS))
        assert await _consume(consumer, committed, RECORDS) == list(range(RECORDS))
        await consumer.commit({committed: 4})
        assert await consumer.position(fresh) == RECORDS

        found = await seek_to_committed_or_reset(consumer, reset="earliest", skip=lambda _: False)

        assert found[committed] == 4
        assert found[fresh] is None
        assert await consumer.position(fresh) == 0
        assert await consumer.position(committed) == 4
        assert await _consume(consumer, fresh, RECORDS) == list(range(RECORDS))
        assert await _consume(consumer, committed, RECORDS - 4) == list(range(4, RECORDS))
    finally:
        await consumer.stop()


async def test_skipped_partitions_stay_where_they_are(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """A partition `skip` names (a table's changelog) is not moved: recovery places it."""
    await create_topics(kafka_bootstrap, [unique_topic], 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(unique_topic, b"%d" % n, partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(unique_topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=f"{unique_topic}-g",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        assert await _consume(consumer, tp, 3) == [0, 1, 2]
        await seek_to_committed_or_reset(consumer, reset="earliest", skip=lambda _: True)
        assert await consumer.position(tp) == 3
    finally:
        await consumer.stop()
