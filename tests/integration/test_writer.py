"""The storage writer on the real servers: embedded PostgreSQL 18 and Tansu.

Part 1 drives `sinks.batching.write_batch` in-process against a freshly migrated database: exact
rows per mapping, redelivery without duplicates, revision upserts that never regress, alert
state that never rolls back, bad records dead-lettered without blocking the batch.

Part 2 runs the real `stackwatch sinks run` worker as a subprocess: known records produced to
unique topics arrive as exact rows; producing them again adds nothing; and with a private
PostgreSQL stopped for 30 s mid-run (records keep coming), then restarted on the same port and
data directory, every record is stored exactly once and the worker catches up.

Expected values are written out by hand next to the data, never read back from the code.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from embedded import start_postgres, stop_postgres
from embedded.ports import free_port, stable_port
from embedded.process import terminate
from sinks.batching import write_batch
from sinks.db import connect, connect_async
from sinks.records import SinkKind, SourceRecord
from sinks.registry_sync import sync_registry
from sinks.schema import migrate
from sinks.targets import TARGETS
from stackwatch.compliance import Severity
from stackwatch.models import (
    AggregateRecord,
    AlertEvent,
    AlertState,
    DeadLetter,
    EventKind,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
    Verdict,
)
from stackwatch.registry import StackInfo, StackRegistry
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


# ----------------------------------------------------------------------------- records


def raw(i: int, *, verdict: Verdict = Verdict.ACCEPTED) -> RawFrame:
    return RawFrame(
        text=f"##0100QN=20261102080000{i:03d};ST=22;CN=2011;PW=123456;MN=MN0001;CP=&&&&ABCD\r\n",
        received_at=T0 + timedelta(seconds=i),
        peer="127.0.0.1:50000",
        mn="MN0001" if verdict is Verdict.ACCEPTED else None,
        cn="2011" if verdict is Verdict.ACCEPTED else None,
        verdict=verdict,
        reasons=[] if verdict is Verdict.ACCEPTED else ["crc mismatch"],
    )


def reading(minute: int, so2: float, nox: float) -> Reading:
    return Reading(
        stack_id="S1",
        mn="MN0001",
        cn="2051",
        kind=ReadingKind.MINUTE,
        sector="power",
        process="coal_boiler",
        data_time=T0 + timedelta(minutes=minute),
        received_at=T0 + timedelta(minutes=minute, seconds=30),
        values={
            "a21026": FactorReading(value=so2, flag="N", min=so2 - 1, max=so2 + 1, logger_zs=so2),
            "a21002": FactorReading(value=nox, flag="N"),
        },
    )


def hour(
    start: datetime, mean: float, *, revision: int = 0, factor: str = "a21026"
) -> AggregateRecord:
    return AggregateRecord(
        stack_id="S1",
        factor=factor,
        period="hour",
        period_start=start,
        period_end=start + H,
        mean=mean,
        zs_mean=mean,
        min=mean - 2,
        max=mean + 2,
        valid=True,
        flag="N",
        valid_count=60,
        total_count=60,
        mass_kg=0.25,
        ref_o2=6.0,
        limit_mg_m3=35.0,
        source="platform",
        revision=revision,
    )


def alert(seq: int, kind: EventKind, *, acked: bool = False, count: int = 1) -> AlertEvent:
    return AlertEvent(
        alert_id="11111111-2222-3333-4444-555555555555",
        seq=seq,
        kind=kind,
        at=T0 + seq * H,
        stack_id="S1",
        factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE,
        severity=Severity.ALARM,
        state=AlertState.ACTIVE,
        title_zh="小时均值超标",
        title_en="hourly mean exceedance",
        first_seen=T0 + H,
        last_seen=T0 + seq * H,
        count=count,
        peak_value=41.5,
        value=41.5,
        limit=35.0,
        ref_o2=6.0,
        evidence={"hour_mean": 41.5},
        acknowledged=acked,
        ack_by="duty officer" if acked else None,
        ack_reason="plant called, SCR ammonia adjusted" if acked else None,
        ack_at=T0 + seq * H if acked else None,
    )


def dead(i: int) -> DeadLetter:
    return DeadLetter(
        stage="decode",
        reason="crc mismatch",
        payload=f"##bad frame {i}",
        key="MN0001",
        occurred_at=T0 + timedelta(seconds=i),
        details={"peer": "127.0.0.1:50000"},
    )


def src(model: Any, offset: int = 0) -> SourceRecord:
    return SourceRecord(value=model.model_dump_json().encode(), offset=offset)


# ----------------------------------------------------------------------------- part 1


@pytest.fixture
async def db(pg_database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    with connect(pg_database, autocommit=True) as conn:
        migrate(conn, "plain")
    aconn = await connect_async(pg_database)
    try:
        yield aconn
    finally:
        await aconn.close()


async def rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql)
    result = await cur.fetchall()
    await conn.rollback()
    return result


async def test_raw_frames_and_redelivery(db: psycopg.AsyncConnection[Any]) -> None:
    batch = [src(raw(1)), src(raw(2, verdict=Verdict.REJECTED))]
    first = await write_batch(db, SinkKind.RAW, batch)
    again = await write_batch(db, SinkKind.RAW, batch)
    assert first.rows_written == {"raw_frames": 2}
    assert again.rows_written == {"raw_frames": 0}  # same (time, peer, text): no new row
    got = await rows(
        db, "SELECT received_at, mn, verdict, reasons FROM raw_frames ORDER BY received_at"
    )
    assert got == [
        (T0 + timedelta(seconds=1), "MN0001", "accepted", []),
        (T0 + timedelta(seconds=2), None, "rejected", ["crc mismatch"]),
    ]


async def test_readings_long_rows_one_per_factor(db: psycopg.AsyncConnection[Any]) -> None:
    event = reading(0, 1, 1).model_copy(
        update={"cn": "8013", "kind": ReadingKind.EVENT, "data_time": None, "values": {}}
    )
    batch = [src(reading(0, 12.5, 40.0)), src(reading(1, 13.0, 41.0)), src(event)]
    result = await write_batch(db, SinkKind.READINGS, batch)
    # 2 readings × 2 factors = 4 rows; the heartbeat (no DataTime) maps to no row.
    assert result.rows_written == {"readings": 4}
    assert result.skipped == 1
    await write_batch(db, SinkKind.READINGS, batch[:2])  # redelivery
    got = await rows(
        db,
        "SELECT factor, cn, data_time, value, min_value, max_value, zs_value, flag "
        "FROM readings ORDER BY data_time, factor",
    )
    m1 = T0 + timedelta(minutes=1)
    assert got == [
        ("a21002", "2051", T0, 40.0, None, None, None, "N"),
        ("a21026", "2051", T0, 12.5, 11.5, 13.5, 12.5, "N"),
        ("a21002", "2051", m1, 41.0, None, None, None, "N"),
        ("a21026", "2051", m1, 13.0, 12.0, 14.0, 13.0, "N"),
    ]


async def test_hour_revision_replaces_lower_never_reverse(
    db: psycopg.AsyncConnection[Any],
) -> None:
    r0, r1 = hour(T0, 30.0, revision=0), hour(T0, 36.0, revision=1)
    assert (await write_batch(db, SinkKind.HOUR, [src(r0)])).rows_written == {"hour_aggregates": 1}
    assert (await write_batch(db, SinkKind.HOUR, [src(r1)])).rows_written == {"hour_aggregates": 1}
    # Replaying revision 0 after revision 1 changes nothing.
    assert (await write_batch(db, SinkKind.HOUR, [src(r0)])).rows_written == {"hour_aggregates": 0}
    # Both revisions in ONE batch, lower last: the higher one still wins.
    other = T0 + H
    await write_batch(
        db, SinkKind.HOUR, [src(hour(other, 50.0, revision=2)), src(hour(other, 20.0))]
    )
    got = await rows(
        db, "SELECT period_start, mean, revision, limit_mg_m3 FROM hour_aggregates ORDER BY 1"
    )
    assert got == [(T0, 36.0, 1, 35.0), (other, 50.0, 2, 35.0)]


async def test_alert_state_follows_newest_event_only(db: psycopg.AsyncConnection[Any]) -> None:
    raised, acked = alert(1, EventKind.RAISE), alert(2, EventKind.ACK, acked=True)
    first = await write_batch(db, SinkKind.ALERTS, [src(raised), src(acked)])
    assert first.rows_written == {"alerts": 1, "alert_events": 2}
    # Redelivery of the raise (older than the stored ack) neither adds events nor rolls the
    # alert back to "active".
    again = await write_batch(db, SinkKind.ALERTS, [src(raised)])
    assert again.rows_written == {"alerts": 0, "alert_events": 0}
    got = await rows(db, "SELECT state, acked_by, last_seen, count FROM alerts")
    assert got == [("acknowledged", "duty officer", T0 + 2 * H, 1)]
    cleared = alert(3, EventKind.CLEAR, acked=True, count=2).model_copy(
        update={"state": AlertState.CLEARED, "cleared_at": T0 + 3 * H}
    )
    await write_batch(db, SinkKind.ALERTS, [src(cleared)])
    got = await rows(db, "SELECT state, cleared_at, count FROM alerts")
    assert got == [("cleared", T0 + 3 * H, 2)]
    events = await rows(db, "SELECT seq, event FROM alert_events ORDER BY seq")
    assert events == [(1, "raise"), (2, "ack"), (3, "clear")]


async def test_bad_records_are_dead_lettered_and_the_rest_written(
    db: psycopg.AsyncConnection[Any],
) -> None:
    # valid_count 70 > total_count 60 violates a CHECK: only the database can say so.
    impossible = hour(T0 + H, 10.0).model_copy(update={"valid_count": 70})
    stamp = T0 + 5 * H  # broker timestamps: they make the sink's dead letters replay-stable
    batch = [
        src(hour(T0, 30.0)),
        SourceRecord(value=b"{not json", topic="t.hour", partition=0, offset=7, timestamp=stamp),
        SourceRecord(value=impossible.model_dump_json().encode(), offset=8, timestamp=stamp),
        src(hour(T0 + 2 * H, 31.0)),
    ]
    result = await write_batch(db, SinkKind.HOUR, batch)
    assert result.rows_written == {"hour_aggregates": 2, "dead_letters": 2}
    got = await rows(db, "SELECT period_start FROM hour_aggregates ORDER BY 1")
    assert got == [(T0,), (T0 + 2 * H,)]
    letters = await rows(
        db, "SELECT stage, reason, details->>'table' FROM dead_letters ORDER BY reason"
    )
    assert len(letters) == 2
    assert letters[0][0] == letters[1][0] == "sink"
    assert letters[0][1].startswith("database refused the row")
    assert "check" in letters[0][1].lower()
    assert letters[1][1].startswith("invalid AggregateRecord")
    assert letters[0][2] == letters[1][2] == "hour_aggregates"
    # Redelivery of the whole batch: nothing new, not even a second pair of dead letters.
    again = await write_batch(db, SinkKind.HOUR, batch)
    assert again.rows_written == {"hour_aggregates": 0, "dead_letters": 0}
    assert len(again.rejected) == 2


async def test_dead_letters_topic_and_nul_bytes(db: psycopg.AsyncConnection[Any]) -> None:
    nul = dead(3).model_copy(update={"payload": "##abc\x00def"})
    batch = [src(dead(1)), src(dead(2)), src(nul)]
    assert (await write_batch(db, SinkKind.DEADLETTER, batch)).rows_written == {"dead_letters": 3}
    assert (await write_batch(db, SinkKind.DEADLETTER, batch)).rows_written == {"dead_letters": 0}
    got = await rows(db, "SELECT payload FROM dead_letters ORDER BY occurred_at")
    # PostgreSQL text cannot hold NUL: it is kept visible as the escape "\x00".
    assert got == [("##bad frame 1",), ("##bad frame 2",), ("##abc\\x00def",)]


async def test_staging_columns_have_the_tables_types(db: psycopg.AsyncConnection[Any]) -> None:
    """The staging tables declare their columns (no SELECT on the real table needed to make
    them): each staged column has exactly the type of the column it is moved into."""
    type_sql = (
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"
    )
    for target in TARGETS.values():
        await db.execute(target.create_stage)
        table_types: dict[str, str] = {}
        for table, _move in reversed(target.moves):  # alerts: its own column types win
            table_types |= dict(await (await db.execute(type_sql, (table,))).fetchall())
        staged = dict(await (await db.execute(type_sql, (target.stage,))).fetchall())
        assert list(staged) == list(target.columns), target.name
        assert staged == {c: table_types[c] for c in target.columns}, target.name
    await db.rollback()


async def test_registry_sync_upserts_and_reports_conflicts(
    db: psycopg.AsyncConnection[Any],
) -> None:
    def stack(stack_id: str, mn: str, plant: str) -> StackInfo:
        return StackInfo(
            stack_id=stack_id, mn=mn, plant=plant, sector="power", process="coal_boiler"
        )

    first = await sync_registry(
        db, StackRegistry(stacks=[stack("S1", "MN1", "A"), stack("S2", "MN2", "B")])
    )
    assert (first.upserted, first.unchanged, first.rejected) == (2, 0, {})
    # S1 changes plant, S2 is unchanged, S3 claims MN2 which S2 still holds in the table.
    second = await sync_registry(
        db,
        StackRegistry(
            stacks=[stack("S1", "MN1", "A2"), stack("S2", "MN2", "B"), stack("S3", "MN3", "C")]
        ),
    )
    assert (second.upserted, second.unchanged) == (2, 1)
    third = await sync_registry(db, StackRegistry(stacks=[stack("S4", "MN2", "D")]))
    assert list(third.rejected) == ["S4"]
    assert "mn" in third.rejected["S4"]
    got = await rows(db, "SELECT stack_id, mn, plant FROM stacks ORDER BY stack_id")
    assert got == [("S1", "MN1", "A2"), ("S2", "MN2", "B"), ("S3", "MN3", "C")]


# ----------------------------------------------------------------------------- part 2

KINDS = ("raw", "readings", "minute", "hour", "day", "alerts", "deadletter")


class SinkWorker:
    """`stackwatch sinks run` in a subprocess, killed by PID whatever happens."""

    def __init__(self, env: dict[str, str], log_file: Path, app_id: str) -> None:
        self.log_file = log_file
        with log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from commands import main; main()",
                    "sinks",
                    "run",
                    "--app-id",
                    app_id,
                    "--batch-size",
                    "50",
                    "--batch-within",
                    "0.2",
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc.pid, grace=5.0)
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]


@pytest.fixture
def workers() -> Iterator[list[SinkWorker]]:
    started: list[SinkWorker] = []
    yield started
    for worker in started:
        worker.kill()


async def make_topics(bootstrap: str, prefix: str, partitions: int) -> dict[str, str]:
    names = {k: f"{prefix}.{k}" for k in KINDS}
    await create_topics(bootstrap, names.values(), partitions)
    return names


def worker_env(
    bootstrap: str, dsn: str, topics: dict[str, str], tmp: Path, partitions: int
) -> dict[str, str]:
    registry = tmp / "registry.yaml"
    registry.write_text(
        "stacks:\n"
        "  - {stack_id: S1, mn: MN0001, password: '123456', name: 1# boiler stack,"
        " plant: Demo Power, city: Tangshan, sector: power, process: coal_boiler,"
        " lat: 39.6, lon: 118.2}\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "STACKWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "STACKWATCH_DATABASE_URL": dsn,
        "STACKWATCH_DATA_DIR": str(tmp / "data"),
        "STACKWATCH_BROKER_PROFILE": "tansu",
        "STACKWATCH_METRICS_PORT": "0",
        "STACKWATCH_GATEWAY__REGISTRY_FILE": str(registry),
        "STACKWATCH_TOPICS__PARTITIONS": str(partitions),
        "STACKWATCH_LOG_FORMAT": "json",
    }
    env.pop("STACKWATCH_WEB_PORT", None)
    for kind, name in topics.items():
        env[f"STACKWATCH_TOPICS__{kind.upper()}"] = name
    return env


async def produce(bootstrap: str, topic: str, models: list[Any], key: str = "S1") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=16384)
    await producer.start()
    try:
        for model in models:
            await producer.send_and_wait(topic, model.model_dump_json().encode(), key=key.encode())
    finally:
        await producer.stop()


async def committed_offset(bootstrap: str, group: str, topic: str) -> int | None:
    """The consumer group's committed offset of partition 0 of `topic` (None = none).

    Read with OffsetFetch through a consumer that never joins the group (manual assignment).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        offset = await consumer.committed(tp)
    finally:
        await consumer.stop()
    return None if offset is None else int(offset)


def fetch(dsn: str, sql: str) -> tuple[Any, ...] | None:
    try:
        with connect(dsn, autocommit=True) as conn:
            return conn.execute(sql).fetchone()
    except psycopg.Error:
        return None


def count_rows(dsn: str, sql: str) -> Any:
    row = fetch(dsn, sql)
    return row[0] if row else None


def wait_until(worker: SinkWorker, dsn: str, sql: str, expected: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline and worker.proc.poll() is None:
        got = count_rows(dsn, sql)
        if got == expected:
            return got
        time.sleep(0.3)
    return got


SUMMARY = (
    "SELECT (SELECT count(*) FROM raw_frames) || '/' || (SELECT count(*) FROM readings)"
    " || '/' || (SELECT count(*) FROM hour_aggregates) || '/' || (SELECT count(*) FROM alerts)"
    " || '/' || (SELECT count(*) FROM alert_events) || '/' || (SELECT count(*) FROM dead_letters)"
)


async def test_worker_writes_exact_rows_and_ignores_redelivery(
    kafka_bootstrap: str,
    pg_database: str,
    unique_topic: str,
    tmp_path: Path,
    workers: list[SinkWorker],
) -> None:
    topics = await make_topics(kafka_bootstrap, unique_topic, partitions=2)
    env = worker_env(kafka_bootstrap, pg_database, topics, tmp_path, 2)
    metrics_port = free_port()
    env["STACKWATCH_METRICS_PORT"] = str(metrics_port)
    frames = [raw(i) for i in range(1, 6)]
    readings = [reading(m, 10.0 + m, 30.0 + m) for m in range(3)]
    hours = [hour(T0, 30.0), hour(T0 + H, 32.0), hour(T0, 36.0, revision=1)]
    alerts = [alert(1, EventKind.RAISE), alert(2, EventKind.ACK, acked=True)]
    letters = [dead(1), dead(2)]
    await produce(kafka_bootstrap, topics["raw"], frames, key="MN0001")
    await produce(kafka_bootstrap, topics["readings"], readings)
    await produce(kafka_bootstrap, topics["hour"], hours)
    await produce(kafka_bootstrap, topics["alerts"], alerts)
    await produce(kafka_bootstrap, topics["deadletter"], letters)

    worker = SinkWorker(env, tmp_path / "worker.log", unique_topic.replace(".", "-"))
    workers.append(worker)
    # 5 frames / 3 readings × 2 factors = 6 / 2 hours (T0 at revision 1) / 1 alert /
    # 2 alert events / 2 dead letters.
    expected = "5/6/2/1/2/2"
    got = await asyncio.to_thread(wait_until, worker, pg_database, SUMMARY, expected)
    assert got == expected, worker.tail()
    hours_got = count_rows(
        pg_database,
        "SELECT string_agg(mean || '@' || revision, ',' ORDER BY period_start) "
        "FROM hour_aggregates",
    )
    assert hours_got == "36@1,32@0"
    assert count_rows(pg_database, "SELECT state FROM alerts") == "acknowledged"
    # The registry file was synced into `stacks` at start.
    stack = count_rows(
        pg_database, "SELECT mn || '|' || plant || '|' || city || '|' || lat FROM stacks"
    )
    assert stack == "MN0001|Demo Power|Tangshan|39.6"

    # Redelivery: the same records again, each topic followed by one NEW marker record with
    # the same key (same partition, so it is consumed after the duplicates). When every
    # marker is stored, every duplicate has been processed.
    await produce(kafka_bootstrap, topics["raw"], [*frames, raw(99)], key="MN0001")
    await produce(kafka_bootstrap, topics["readings"], [*readings, reading(10, 20.0, 50.0)])
    # revision 0 of T0 again, after revision 1; marker: a new hour T0 + 2 h.
    await produce(kafka_bootstrap, topics["hour"], [hours[0], hour(T0 + 2 * H, 40.0)])
    # the raise again (older than the stored ack); marker: update seq 3, still acknowledged.
    marker = alert(3, EventKind.UPDATE, acked=True, count=2)
    await produce(kafka_bootstrap, topics["alerts"], [alerts[0], marker])
    await produce(kafka_bootstrap, topics["deadletter"], [*letters, dead(3)])
    # 5 + 1 frames / 6 + 2 reading rows / 2 + 1 hours / 1 alert / 2 + 1 events / 2 + 1 letters
    expected = "6/8/3/1/3/3"
    got = await asyncio.to_thread(wait_until, worker, pg_database, SUMMARY, expected)
    assert got == expected, worker.tail()
    assert (
        count_rows(
            pg_database,
            "SELECT string_agg(mean || '@' || revision, ',' ORDER BY period_start) "
            "FROM hour_aggregates",
        )
        == "36@1,32@0,40@0"
    )
    assert fetch(pg_database, "SELECT state, count, last_seen FROM alerts") == (
        "acknowledged",
        2,
        T0 + 3 * H,
    )
    # The worker's own /metrics endpoint: 5 frames + 1 marker inserted, duplicates not counted;
    # readings 6 + 2 rows.
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
    assert 'stackwatch_sink_rows_written_total{table="raw_frames"} 6.0' in page
    assert 'stackwatch_sink_rows_written_total{table="readings"} 8.0' in page
    # Consumer lag (timer every 5 s): once reported for the raw topic, it is 0 everywhere.
    lag_lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
        lag_lines = [
            ln for ln in page.splitlines() if ln.startswith("stackwatch_sink_consumer_lag{")
        ]
        if any(topics["raw"] in ln for ln in lag_lines):
            break
        await asyncio.sleep(0.5)
    assert any(topics["raw"] in ln for ln in lag_lines), page
    assert all(ln.endswith(" 0.0") for ln in lag_lines), lag_lines
    assert worker.stop() == 0


async def test_database_down_30s_loses_nothing_duplicates_nothing(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, workers: list[SinkWorker]
) -> None:
    # A private PostgreSQL, so stopping it disturbs no other test.
    pg_dir = tmp_path / "pg"
    port = stable_port()
    record = start_postgres(pg_dir, port=port, fsync=False)
    dsn = record.url
    try:
        topics = await make_topics(kafka_bootstrap, unique_topic, partitions=1)
        env = worker_env(kafka_bootstrap, dsn, topics, tmp_path, 1)
        worker = SinkWorker(env, tmp_path / "worker.log", unique_topic.replace(".", "-"))
        workers.append(worker)

        # Phase 1: 20 frames while the database is up.
        await produce(kafka_bootstrap, topics["raw"], [raw(i) for i in range(20)], key="MN0001")
        got = await asyncio.to_thread(
            wait_until, worker, dsn, "SELECT count(*) FROM raw_frames", 20
        )
        assert got == 20, worker.tail()

        # Phase 2: stop the database; keep producing for 30 s (frames 20..49, one per second).
        stop_postgres(record, pg_dir)
        for i in range(20, 50):
            await produce(kafka_bootstrap, topics["raw"], [raw(i)], key="MN0001")
            await asyncio.sleep(1.0)
        assert worker.proc.poll() is None, worker.tail()
        # Nothing of the outage was acknowledged: the group's committed offset is still 20
        # (frames 0..19 were stored; Faust commits acked offsets every ~3 s).
        group = unique_topic.replace(".", "-")
        assert await committed_offset(kafka_bootstrap, group, topics["raw"]) == 20

        # Phase 3: restart on the same port and data directory; the worker catches up.
        record = start_postgres(pg_dir, port=port, fsync=False)
        await produce(kafka_bootstrap, topics["raw"], [raw(i) for i in range(50, 60)], key="MN0001")
        got = await asyncio.to_thread(
            wait_until, worker, dsn, "SELECT count(*) FROM raw_frames", 60, 120.0
        )
        assert got == 60, worker.tail()
        # Exactly frames 0..59, each once (received_at = T0 + i s is unique per frame).
        span = fetch(
            dsn,
            "SELECT count(DISTINCT received_at), min(received_at), max(received_at) "
            "FROM raw_frames",
        )
        assert span == (60, T0, T0 + timedelta(seconds=59))
        # Offsets advance to the end once the rows are committed.
        deadline = time.monotonic() + 30
        offset = None
        while time.monotonic() < deadline:
            offset = await committed_offset(kafka_bootstrap, group, topics["raw"])
            if offset == 60:
                break
            await asyncio.sleep(0.5)
        assert offset == 60
        # The outage was seen and ridden out by backoff, not by luck.
        assert "database write failed; retrying" in worker.log_file.read_text(), worker.tail()
        assert worker.stop() == 0
    finally:
        stop_postgres(record, pg_dir)
