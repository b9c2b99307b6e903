"""The embedded servers, exercised through real clients over loopback.

Tansu via aiokafka (produce, group consume, commit, resume), PostgreSQL 18 via psycopg 3,
PGlite-TimescaleDB via psycopg (hypertable + time_bucket), and the `stackwatch services`
CLI leaving no process and no bound port behind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from commands import app
from embedded import running_services, service_status, start_services, stop_services
from embedded.ports import port_accepts

pytestmark = pytest.mark.integration

# Tansu makes a group join wait half the session timeout and lets a departed member's session
# run out before the next join completes (README "Services", quirk b): short timeouts.
GROUP_TIMEOUTS = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
    )


async def test_group_consumer_resumes_from_committed_offset(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    topic = f"{unique_topic}.readings"
    group = f"{unique_topic}.group"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        offsets = [
            (await producer.send_and_wait(topic, f"r{i}".encode(), key=b"stack-1")).offset
            for i in range(5)
        ]
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4]  # five single-record sends to an empty partition

    first = _consumer(kafka_bootstrap, topic, group)
    await first.start()
    try:
        seen: list[bytes] = []
        while len(seen) < 3:
            batch = await first.getmany(timeout_ms=2000, max_records=3 - len(seen))
            seen += [record.value for records in batch.values() for record in records]
        await first.commit()
        tp = TopicPartition(topic, 0)
        assert await first.committed(tp) == 3  # next offset to read after r0, r1, r2
    finally:
        await first.stop()
    assert seen == [b"r0", b"r1", b"r2"]

    second = _consumer(kafka_bootstrap, topic, group)
    await second.start()
    try:
        rest: list[bytes] = []
        for _ in range(30):  # bounded: the group join itself takes a few seconds on Tansu
            batch = await second.getmany(timeout_ms=1000)
            rest += [record.value for records in batch.values() for record in records]
            if len(rest) >= 2:
                break
    finally:
        await second.stop()
    assert rest == [b"r3", b"r4"]  # resumed at the committed offset 3, nothing re-read


def test_postgres_is_18_and_runs_sql(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()
        assert version is not None
        assert str(version[0]).startswith("PostgreSQL 18.")
        conn.execute("CREATE TABLE hourly (stack text, hour timestamptz, so2 numeric)")
        conn.execute(
            "INSERT INTO hourly VALUES (%s, %s, %s), (%s, %s, %s), (%s, %s, %s)",
            (
                "S1",
                datetime(2026, 11, 1, 0, tzinfo=UTC),
                "12.5",
                "S1",
                datetime(2026, 11, 1, 1, tzinfo=UTC),
                "30.1",
                "S2",
                datetime(2026, 11, 1, 0, tzinfo=UTC),
                "7.0",
            ),
        )
        rows = conn.execute(
            "SELECT stack, sum(so2), count(*) FROM hourly GROUP BY stack ORDER BY stack"
        ).fetchall()
    # S1: 12.5 + 30.1 = 42.6 over 2 rows; S2: 7.0 over 1 row.
    assert [(s, str(total), n) for s, total, n in rows] == [("S1", "42.6", 2), ("S2", "7.0", 1)]


def test_postgres_listens_on_loopback_only(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories')"
        ).fetchone()
    assert row == ("127.0.0.1", "")


def test_timescale_hypertable_time_bucket(timescale_dsn: str) -> None:
    with psycopg.connect(timescale_dsn, prepare_threshold=None, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS minute_so2")
        conn.execute(
            "CREATE TABLE minute_so2 (ts timestamptz NOT NULL, stack text NOT NULL, so2 double "
            "precision NOT NULL)"
        )
        conn.execute("SELECT create_hypertable('minute_so2', 'ts')")
        hypertables = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'minute_so2'"
        ).fetchall()
        assert hypertables == [("minute_so2",)]
        t = "2026-11-01T00:{:02d}:00+00:00"
        data = [
            (t.format(0), "S1", 10.0),
            (t.format(5), "S1", 20.0),
            (t.format(14), "S1", 30.0),
            (t.format(15), "S1", 40.0),
            (t.format(29), "S1", 50.0),
            (t.format(30), "S1", 7.0),
            (t.format(3), "S2", 99.0),
        ]
        conn.cursor().executemany("INSERT INTO minute_so2 VALUES (%s, %s, %s)", data)
        rows = conn.execute(
            "SELECT time_bucket('15 minutes', ts) AS bucket, avg(so2), count(*)"
            " FROM minute_so2 WHERE stack = 'S1' GROUP BY bucket ORDER BY bucket"
        ).fetchall()
    # 00:00 bucket: 00:00, 00:05, 00:14 → (10 + 20 + 30) / 3 = 20.0
    # 00:15 bucket: 00:15, 00:29      → (40 + 50) / 2 = 45.0
    # 00:30 bucket: 00:30             → 7.0
    assert [(b.astimezone(UTC), a, n) for b, a, n in rows] == [
        (datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 20.0, 3),
        (datetime(2026, 11, 1, 0, 15, tzinfo=UTC), 45.0, 2),
        (datetime(2026, 11, 1, 0, 30, tzinfo=UTC), 7.0, 1),
    ]


def test_timescale_sessions_are_serial_and_clean(timescale_dsn: str) -> None:
    # A session that disconnects inside a transaction is rolled back before the next one is
    # attached, and reconnecting right after a close works (no "too many connections").
    conn = psycopg.connect(timescale_dsn, prepare_threshold=None)
    conn.execute("CREATE TABLE left_open (a int)")  # psycopg opened a transaction: not committed
    conn.close()
    for _ in range(5):
        with psycopg.connect(timescale_dsn, prepare_threshold=None, autocommit=True) as again:
            row = again.execute("SELECT to_regclass('left_open') IS NULL").fetchone()
            assert row == (True,)


def test_cli_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = str(tmp_path / "sw")
    up = runner.invoke(app, ["services", "up", "--data-dir", data_dir])
    assert up.exit_code == 0, up.output
    state = json.loads((tmp_path / "sw" / "services.json").read_text())
    recorded = {name: (svc["pid"], svc["port"]) for name, svc in state["services"].items()}
    assert set(recorded) == {"tansu", "postgres"}
    for pid, port in recorded.values():
        assert psutil.pid_exists(pid)
        assert port_accepts("127.0.0.1", port)

    status = runner.invoke(app, ["services", "status", "--data-dir", data_dir])
    assert status.exit_code == 0, status.output
    assert status.output.count("healthy") == 2

    down = runner.invoke(app, ["services", "down", "--data-dir", data_dir])
    assert down.exit_code == 0, down.output
    for pid, port in recorded.values():
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive
        assert not port_accepts("127.0.0.1", port)
    after = runner.invoke(app, ["services", "status", "--data-dir", data_dir])
    assert "no services recorded" in after.output


def test_running_services_stops_only_what_it_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "sw"
    try:
        before = start_services(data_dir, kafka=True, postgres=False)
        with running_services(data_dir, kafka=True, postgres=True, pg_fsync=False) as inside:
            assert inside.kafka_bootstrap == before.kafka_bootstrap  # reused, not restarted
            assert inside.postgres_dsn is not None
            with psycopg.connect(inside.postgres_dsn) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("stackwatch",)
        assert [s.name for s in service_status(data_dir)] == ["tansu"]
    finally:
        stop_services(data_dir)
    assert service_status(data_dir) == []
