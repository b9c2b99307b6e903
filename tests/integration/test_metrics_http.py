"""Sink metrics read back over HTTP from the real `/metrics` endpoint.

Each test builds its own `CollectorRegistry`, writes known batches through the real writer into
a fresh PostgreSQL 18 database, then scrapes `sinks.metrics_http.MetricsServer` with httpx and
parses the Prometheus text format. Expected values are hand-computed in the comments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from embedded.ports import free_port
from sinks.db import connect
from sinks.delivery import ResilientWriter
from sinks.metrics import SinkMetrics
from sinks.metrics_http import MetricsServer
from sinks.records import SinkKind, SourceRecord
from sinks.schema import migrate
from stackwatch.backoff import BackoffPolicy
from stackwatch.models import AggregateRecord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def hour(start: datetime, mean: float, revision: int = 0) -> SourceRecord:
    record = AggregateRecord(
        stack_id="S1",
        factor="a21026",
        period="hour",
        period_start=start,
        period_end=start + H,
        mean=mean,
        valid=True,
        flag="N",
        valid_count=60,
        total_count=60,
        revision=revision,
    )
    return SourceRecord(value=record.model_dump_json().encode())


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=5.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
async def migrated(pg_database: str) -> AsyncIterator[str]:
    with connect(pg_database, autocommit=True) as conn:
        migrate(conn, "plain")
    yield pg_database


async def test_rows_written_and_batches_read_back_over_http(migrated: str) -> None:
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)
    writer = ResilientWriter(dsn=migrated, metrics=metrics)
    try:
        await writer.write(SinkKind.HOUR, [hour(T0, 30.0), hour(T0 + H, 31.0)])  # 2 inserts
        await writer.write(SinkKind.HOUR, [hour(T0, 36.0, revision=1)])  # 1 update
        await writer.write(SinkKind.HOUR, [hour(T0, 30.0)])  # stale revision: 0 rows
        await writer.write(SinkKind.HOUR, [SourceRecord(value=b"not json")])  # 1 dead letter
    finally:
        await writer.close()
    async with MetricsServer(registry) as server:
        assert server.host == "127.0.0.1"
        samples = await scrape(server.url)
    hours = (("table", "hour_aggregates"),)
    # rows written: 2 + 1 + 0 + 0 = 3 hour rows; the unparseable record is 1 dead letter.
    assert samples[("stackwatch_sink_rows_written_total", hours)] == 3
    assert samples[("stackwatch_sink_rows_written_total", (("table", "dead_letters"),))] == 1
    assert samples[("stackwatch_sink_rows_rejected_total", hours)] == 1
    # 4 batches of 2 + 1 + 1 + 1 = 5 records.
    assert samples[("stackwatch_sink_batch_records_count", hours)] == 4
    assert samples[("stackwatch_sink_batch_records_sum", hours)] == 5
    assert samples[("stackwatch_sink_write_seconds_count", hours)] == 4
    assert samples[("stackwatch_sink_db_up", ())] == 1
    # A parse failure is not a database error.
    assert (
        "stackwatch_sink_db_errors_total",
        (("kind", "data"), ("table", "hour_aggregates")),
    ) not in samples


async def test_database_outage_is_counted_and_recovered(migrated: str) -> None:
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)
    dead_port = free_port()  # nothing listens here: connection refused
    sleeps: list[float] = []
    db_up_while_down: list[float] = []
    writer: ResilientWriter

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        db_up_while_down.append(registry.get_sample_value("stackwatch_sink_db_up") or 0.0)
        if len(sleeps) == 3:
            writer.dsn = migrated  # the database "comes back" after the third failure

    writer = ResilientWriter(
        dsn=f"postgresql://postgres@127.0.0.1:{dead_port}/stackwatch",
        metrics=metrics,
        policy=BackoffPolicy(initial_s=0.5, multiplier=2.0, max_s=30.0, jitter=0.2),
        sleep=fake_sleep,
        rand=lambda: 0.5,  # jitter factor 1 − 0.2 + 2·0.2·0.5 = 1.0
    )
    try:
        result = await writer.write(SinkKind.HOUR, [hour(T0, 30.0)])
    finally:
        await writer.close()
    assert result.rows_written == {"hour_aggregates": 1}
    assert sleeps == [0.5, 1.0, 2.0]  # 0.5 × 2⁰, 0.5 × 2¹, 0.5 × 2²
    assert db_up_while_down == [0.0, 0.0, 0.0]
    async with MetricsServer(registry, port=free_port()) as server:
        samples = await scrape(server.url)
    key = (("kind", "connection"), ("table", "hour_aggregates"))
    assert samples[("stackwatch_sink_db_errors_total", key)] == 3
    assert samples[("stackwatch_sink_db_up", ())] == 1
    assert samples[("stackwatch_sink_rows_written_total", (("table", "hour_aggregates"),))] == 1


async def test_server_serves_only_its_own_registry() -> None:
    mine, other = CollectorRegistry(), CollectorRegistry()
    Counter("stackwatch_test_mine", "in my registry", registry=mine).inc(7)
    Counter("stackwatch_test_other", "in another registry", registry=other).inc()
    async with MetricsServer(mine) as server:
        samples = await scrape(server.url)
        async with httpx.AsyncClient() as client:
            missing = await client.get(server.url.replace("/metrics", "/nope"), timeout=5.0)
    assert samples[("stackwatch_test_mine_total", ())] == 7
    assert not any(name.startswith("stackwatch_test_other") for name, _ in samples)
    assert missing.status_code == 404
