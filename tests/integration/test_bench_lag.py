"""The pipeline benchmark's consumer lag on Tansu, whose end offsets count batches."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.pipeline_watch import GroupLag

pytestmark = pytest.mark.integration


async def test_lag_counts_every_record_of_a_batched_log(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=100)
    await producer.start()
    try:
        # 25 records, batched: 13 to partition 0 and 12 to partition 1.
        futures = [await producer.send(unique_topic, b"v", partition=i % 2) for i in range(25)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    lag = GroupLag(kafka_bootstrap, f"{unique_topic}-group", [unique_topic], 2)
    await lag.start()
    try:
        # Nothing committed: the lag is every record (Tansu alone would report 1 per batch).
        assert await lag.lag() == 25
    finally:
        await lag.stop()
