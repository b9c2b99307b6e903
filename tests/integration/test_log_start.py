"""`LogStarts` reads where a partition's log begins with its own client, on a real Tansu."""

from __future__ import annotations

import socket

import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.log_start import LogStarts
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.integration


async def test_the_log_start_of_a_partition_is_its_first_offset(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topics(kafka_bootstrap, [unique_topic], 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(5):  # five records in partition 1; partition 0 stays empty
            await producer.send_and_wait(unique_topic, b"%d" % n, partition=1)
    finally:
        await producer.stop()
    starts = LogStarts(kafka_bootstrap)
    try:
        # Nothing was ever deleted: both logs begin at offset 0, empty or not.
        assert await starts.start_of(TP(unique_topic, 1)) == 0
        assert await starts.start_of(TP(unique_topic, 0)) == 0
    finally:
        await starts.stop()


async def test_a_broker_that_does_not_answer_gives_none_in_time() -> None:
    """No broker: the guard must not wait for good, it gets None after the timeout."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    starts = LogStarts(f"127.0.0.1:{port}", timeout_s=2.0)
    try:
        assert await starts.start_of(TP("raw", 0)) is None
    finally:
        await starts.stop()
