"""Durability settings reach every producer and topic: replicas, min ISR, acks, idempotence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import faust
import pytest
from faust.transport import by_url
from pydantic import ValidationError

from stackwatch.settings import KafkaSettings, Settings
from streams.faust_config import broker_url, create_faust_app, faust_app_kwargs
from streams.kafka_transport import FETCH_MAX_WAIT_MS, IdempotentTransport, PromptTransport


def test_min_insync_cannot_exceed_the_replicas() -> None:
    with pytest.raises(ValidationError, match="no write could succeed"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    assert KafkaSettings(replication_factor=3, min_insync_replicas=2).topic_config() == {
        "min.insync.replicas": "2"
    }


def test_idempotence_follows_the_profile_unless_set() -> None:
    auto = KafkaSettings()
    assert auto.idempotence("kafka") is True
    assert auto.idempotence("tansu") is False  # Tansu refuses InitProducerId
    assert KafkaSettings(idempotent_producers=False).idempotence("kafka") is False
    assert KafkaSettings(idempotent_producers=True).producer_options("tansu") == {
        "acks": "all", "enable_idempotence": True, "compression_type": "zstd",
    }


def test_producers_compress_with_zstd_unless_told_otherwise(tmp_path: Path) -> None:
    assert KafkaSettings().producer_options("kafka")["compression_type"] == "zstd"
    assert KafkaSettings(compression="none").producer_options("kafka")["compression_type"] is None
    kwargs = faust_app_kwargs(Settings(), broker="k1:9092", app_id="w", data_dir=tmp_path)
    assert kwargs["producer_compression_type"] == "zstd"
    plain = Settings(kafka=KafkaSettings(compression="none"))
    kwargs = faust_app_kwargs(plain, broker="k1:9092", app_id="w", data_dir=tmp_path)
    assert kwargs["producer_compression_type"] is None
    with pytest.raises(ValidationError):
        KafkaSettings(compression="brotli")


def test_environment_sets_the_cluster_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKWATCH_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("STACKWATCH_KAFKA__MIN_INSYNC_REPLICAS", "2")
    kafka = Settings().kafka
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)


def test_broker_url_picks_the_idempotent_transport() -> None:
    plain = broker_url("k1:9092,k2:9092")
    assert plain == "kafka-stackwatch://k1:9092;k2:9092"
    assert by_url(plain.split(";")[0]) is PromptTransport
    url = broker_url("k1:9092,k2:9092", idempotent=True)
    assert url == "kafka-idempotent://k1:9092;k2:9092"
    assert by_url(url.split(";")[0]) is IdempotentTransport


async def test_a_kafka_profile_worker_produces_idempotently_with_replicated_topics(
    tmp_path: Path,
) -> None:
    settings = Settings(broker_profile="kafka",
                        kafka=KafkaSettings(replication_factor=3, min_insync_replicas=2))
    app = faust.App(**faust_app_kwargs(settings, broker="k1:9092", app_id="t", data_dir=tmp_path))
    assert app.conf.topic_replication_factor == 3
    producer = cast(Any, app.producer)._new_producer()  # an AIOKafkaProducer, not connected
    try:
        assert producer._txn_manager is not None  # aiokafka keeps one only when idempotent
        assert producer.client._client_id  # built from the app's settings
    finally:
        await producer.client.close()


async def test_a_tansu_profile_worker_is_not_idempotent(tmp_path: Path) -> None:
    settings = Settings(broker_profile="tansu")
    app = faust.App(**faust_app_kwargs(settings, broker="127.0.0.1:1", app_id="t",
                                       data_dir=tmp_path))
    producer = cast(Any, app.producer)._new_producer()
    try:
        assert producer._txn_manager is None
        assert producer._compression_type == "zstd"  # kafka.compression reaches the client
    finally:
        await producer.client.close()


@pytest.mark.parametrize("profile", ["tansu", "kafka"])
async def test_worker_consumers_do_not_wait_long_on_an_empty_fetch(
    profile: str, tmp_path: Path
) -> None:
    # Faust itself asks for 1,500 ms, which Tansu holds even while other partitions have data
    settings = Settings(broker_profile=profile)
    app = faust.App(**faust_app_kwargs(settings, broker="127.0.0.1:1", app_id="t",
                                       data_dir=tmp_path))
    thread = cast(Any, app.consumer)._thread
    consumer = thread._create_worker_consumer(app.transport)  # an AIOKafkaConsumer, not started
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
    finally:
        await consumer.stop()


async def test_faust_apps_batch_their_fetches_and_sends_as_configured(tmp_path: Path) -> None:
    # Tansu lists every batch of a partition on each fetch: fewer fetches and batches
    settings = Settings(kafka=KafkaSettings(fetch_min_bytes=4096, linger_ms=7))
    app = create_faust_app(settings, broker="127.0.0.1:1", app_id="t", data_dir=tmp_path)
    consumer = cast(Any, app.consumer)._thread._create_worker_consumer(app.transport)
    producer = cast(Any, app.producer)._new_producer()
    try:
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (4096, 100)
        assert producer._message_accumulator._linger_time == pytest.approx(0.007)
    finally:
        await consumer.stop()
        await producer.client.close()


async def test_a_plain_faust_app_fetches_from_the_first_byte(tmp_path: Path) -> None:
    app = faust.App(**faust_app_kwargs(Settings(), broker="127.0.0.1:1", app_id="t",
                                       data_dir=tmp_path))
    consumer = cast(Any, app.consumer)._thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_min_bytes == 1
    finally:
        await consumer.stop()
