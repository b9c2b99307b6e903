"""The TimescaleDB statements, proven on PGlite-TimescaleDB (one connection, no COPY, no
background workers: every policy job is run by hand with `CALL run_job(id)`).

The module works in its own schema (search_path = that schema, public) so it never sees or
leaves tables of other tests sharing the session's PGlite server, and drops it at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from sinks.db import connect, connect_async, server_info, server_info_async
from sinks.schema import MigrationResult, Mode, migrate, set_retention, status
from tests.integration.test_schema import (
    COMPLIANCE_SELECT,
    DEC,
    NOV,
    compliance_hours,
    insert_hours,
)

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def ts(timescale_dsn: str) -> Iterator[tuple[Conn, str, MigrationResult]]:
    """(connection, schema, result of the first migration) — the module's only connection."""
    schema = f"sw_test_{uuid.uuid4().hex[:10]}"
    with connect(timescale_dsn, autocommit=True, pglite=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}, public")
        try:
            yield conn, schema, migrate(conn)
        finally:
            # qualified: never touch another test's objects further down the search_path
            conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {schema}.compliance_monthly CASCADE")
            conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {schema}.compliance_daily CASCADE")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_async_connect_detects_pglite(timescale_dsn: str) -> None:
    # First in the module on purpose: PGlite takes one connection at a time, and the module's
    # `ts` fixture holds it from its first use on.
    conn = await connect_async(timescale_dsn, autocommit=True)  # no hint: detected
    try:
        info = await server_info_async(conn)
        assert info.is_pglite and not info.supports_copy
        assert conn.prepare_threshold is None  # PGlite has no server-side prepared statements
        cur = await conn.execute("SELECT %s::int + 1", (41,))
        assert await cur.fetchone() == (42,)
    finally:
        await conn.close()


def _job_id(conn: Conn, schema: str, proc: str, table: str) -> int:
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_schema = %s AND hypertable_name = %s",
        (proc, schema, table),
    ).fetchone()
    assert row is not None, f"no {proc} job for {schema}.{table}"
    return int(row[0])


def _chunks(conn: Conn, schema: str, table: str) -> list[tuple[datetime, bool]]:
    return [
        (start, compressed)
        for start, compressed in conn.execute(
            "SELECT range_start, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = %s AND hypertable_name = %s ORDER BY range_start",
            (schema, table),
        )
    ]


def test_server_is_pglite_with_timescale(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, _, _ = ts
    info = server_info(conn)
    assert info.is_pglite
    assert not info.supports_copy
    assert info.timescaledb_version is not None


def test_migration_chooses_timescale_and_is_idempotent(
    ts: tuple[Conn, str, MigrationResult],
) -> None:
    conn, _, first = ts
    assert first.mode is Mode.TIMESCALE
    # 0001 core, 0002 hypertables, 0003 caggs (replacing the plain views), 0004 retention,
    # 0005 real-logger columns, 0006 limit verdicts and their views, 0007 their hypertable,
    # 0008 used ack links, 0009 frame digests, 0010 notification outbox, 0011 roles
    assert first.applied == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    again = migrate(conn)
    assert again.applied == []
    assert again.already_applied == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    modes = conn.execute("SELECT DISTINCT mode FROM schema_migrations").fetchall()
    assert modes == [("timescale",)]
    st = status(conn)
    assert st.mode is Mode.TIMESCALE and st.pending == [] and st.modified == []


def test_hypertables_and_chunk_intervals(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    rows = conn.execute(
        "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = %s ORDER BY hypertable_name",
        (schema,),
    ).fetchall()
    assert rows == [
        ("day_aggregates", "period_start", timedelta(days=180)),
        ("hour_aggregates", "period_start", timedelta(days=7)),
        ("limit_verdicts", "period_start", timedelta(days=7)),
        ("minute_aggregates", "period_start", timedelta(hours=12)),
        ("raw_frames", "received_at", timedelta(hours=6)),
        ("readings", "data_time", timedelta(hours=6)),
    ]


def test_compression_settings(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    rows = conn.execute(
        "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index,"
        " orderby_asc FROM timescaledb_information.compression_settings"
        " WHERE hypertable_schema = %s AND hypertable_name IN ('readings', 'hour_aggregates')"
        " ORDER BY hypertable_name, segmentby_column_index NULLS LAST, orderby_column_index",
        (schema,),
    ).fetchall()
    assert rows == [
        ("hour_aggregates", "stack_id", 1, None, None),
        ("hour_aggregates", "factor", 2, None, None),
        ("hour_aggregates", "period_start", None, 1, False),
        ("readings", "stack_id", 1, None, None),
        ("readings", "factor", 2, None, None),
        ("readings", "cn", 3, None, None),
        ("readings", "data_time", None, 1, False),
    ]


READING_INSERT = (
    "INSERT INTO readings (stack_id, factor, cn, data_time, value, flag, mn, received_at)"
    " VALUES (%s, %s, '2011', %s, %s, 'N', 'MN1', %s) ON CONFLICT DO NOTHING"
)


def test_compress_chunk_keeps_rows_and_natural_key(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    t0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # one 6 h chunk: 00:00–06:00 UTC
    rows = [
        ("K1", factor, t0 + timedelta(seconds=30 * i), float(i), t0)
        for factor in ("a21026", "a21002")
        for i in range(10)
    ]
    with conn.cursor() as cur:
        cur.executemany(READING_INSERT, rows)
    chunk = conn.execute(
        "SELECT c FROM show_chunks('readings', older_than => %s::timestamptz) c",
        (t0 + timedelta(days=1),),
    ).fetchall()
    assert len(chunk) == 1
    conn.execute("SELECT compress_chunk(%s::regclass)", (chunk[0][0],))
    assert _chunks(conn, schema, "readings")[0] == (t0, True)
    # the data reads back unchanged: 2 factors × 10 rows, values 0..9 → sum 2 × 45 = 90
    total = conn.execute(
        "SELECT count(*), sum(value) FROM readings WHERE stack_id = 'K1'"
    ).fetchone()
    assert total == (20, 90.0)
    # the natural key still holds inside the compressed chunk: a replay inserts nothing
    replay = conn.execute(READING_INSERT, ("K1", "a21026", t0, 99.0, t0))
    assert replay.rowcount == 0
    assert conn.execute(
        "SELECT value FROM readings WHERE stack_id = 'K1' AND factor = 'a21026' AND data_time = %s",
        (t0,),
    ).fetchone() == (0.0,)


def test_compression_policy_job_runs(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    # Policies are relative to now(): a reading 10 days old is past "compress after 2 days".
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    conn.execute(READING_INSERT, ("K2", "a34013", old, 4.5, old))
    job = _job_id(conn, schema, "policy_compression", "readings")
    conn.execute("CALL run_job(%s)", (job,))
    compressed = conn.execute(
        "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = %s AND hypertable_name = 'readings'"
        " AND range_end <= now() - interval '2 days'",
        (schema,),
    ).fetchone()
    assert compressed == (True,)
    assert conn.execute("SELECT value FROM readings WHERE stack_id = 'K2'").fetchone() == (4.5,)


def _raw(conn: Conn, at: datetime, text: str) -> None:
    conn.execute(
        "INSERT INTO raw_frames (received_at, peer, verdict, text)"
        " VALUES (%s, 'p', 'accepted', %s)",
        (at, text),
    )


def test_retention_job_drops_only_old_raw_frames(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    now = datetime.now(UTC)
    _raw(conn, now - timedelta(days=400), "old")  # past the 180-day default
    _raw(conn, now - timedelta(days=40), "middle")
    _raw(conn, now - timedelta(days=1), "new")
    job = _job_id(conn, schema, "policy_retention", "raw_frames")
    conn.execute("CALL run_job(%s)", (job,))
    texts = [r[0] for r in conn.execute("SELECT text FROM raw_frames ORDER BY received_at")]
    assert texts == ["middle", "new"]

    # A deployment shortens raw retention to 30 days: the policy is replaced, and its job
    # now drops the 40-day-old frame too.
    # raw_frames compress too (generated frame_md5 in the key): the policy compresses the
    # 40-day-old chunk and a replay of that frame is still recognised as a duplicate.
    conn.execute("CALL run_job(%s)", (_job_id(conn, schema, "policy_compression", "raw_frames"),))
    compressed = [c for _, c in _chunks(conn, schema, "raw_frames")]
    assert compressed == [True, False]  # the 1-day-old chunk is younger than "2 days"
    replay = conn.execute(
        "INSERT INTO raw_frames (received_at, peer, verdict, text)"
        " SELECT received_at, peer, verdict, text FROM raw_frames WHERE text = 'middle'"
        " ON CONFLICT DO NOTHING"
    )
    assert replay.rowcount == 0

    set_retention(conn, "raw_frames", timedelta(days=30))
    job = _job_id(conn, schema, "policy_retention", "raw_frames")
    config = conn.execute(
        "SELECT config->>'drop_after' FROM timescaledb_information.jobs WHERE job_id = %s", (job,)
    ).fetchone()
    assert config == ("30 days",)
    conn.execute("CALL run_job(%s)", (job,))
    texts = [r[0] for r in conn.execute("SELECT text FROM raw_frames ORDER BY received_at")]
    assert texts == ["new"]

    set_retention(conn, "raw_frames", None)  # keep forever: no retention job left
    left = conn.execute(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        " AND hypertable_schema = %s AND hypertable_name = 'raw_frames'",
        (schema,),
    ).fetchone()
    assert left == (0,)


def _materialized_rows(conn: Conn, schema: str, view: str) -> int:
    row = conn.execute(
        "SELECT format('%%I.%%I', materialization_hypertable_schema,"
        " materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = %s AND view_name = %s",
        (schema, view),
    ).fetchone()
    assert row is not None
    count = conn.execute(f"SELECT count(*) FROM {row[0]}").fetchone()
    assert count is not None
    return int(count[0])


def test_continuous_aggregates_equal_the_plain_views(
    ts: tuple[Conn, str, MigrationResult], pg_database: str
) -> None:
    conn, schema, _ = ts
    hours = compliance_hours()
    insert_hours(conn, hours)

    # The refresh policies' jobs run (their window is relative to now(), so what they
    # materialise depends on the date; an explicit refresh then covers the test's months).
    for view in ("compliance_daily", "compliance_monthly"):
        conn.execute(
            "CALL run_job(%s)",
            (_job_id(conn, schema, "policy_refresh_continuous_aggregate", view),),
        )
    conn.execute(
        "CALL refresh_continuous_aggregate('compliance_daily', %s::timestamptz, %s::timestamptz)",
        (NOV, DEC + timedelta(days=31)),
    )
    conn.execute(
        "CALL refresh_continuous_aggregate('compliance_monthly', %s::timestamptz, %s::timestamptz)",
        (NOV - timedelta(days=31), DEC + timedelta(days=62)),
    )
    # 3 Beijing days and 2 Beijing months have hours (see compliance_hours)
    assert _materialized_rows(conn, schema, "compliance_daily") == 3
    assert _materialized_rows(conn, schema, "compliance_monthly") == 2

    ts_daily = conn.execute(COMPLIANCE_SELECT.format(view="compliance_daily")).fetchall()
    ts_monthly = conn.execute(COMPLIANCE_SELECT.format(view="compliance_monthly")).fetchall()
    # hand-computed: November = 30 judged hours, 27 ≤ limit → 90 %; 35 rows, 31 valid
    assert ts_monthly[0][:8] == ("S1", "a21026", NOV, 35, 31, 30, 27, Decimal(90))
    assert ts_monthly[0][9:] == (40.0, 14.75)

    # The same rows through the plain views on PostgreSQL 18 give identical numbers.
    with connect(pg_database, autocommit=True) as pg:
        assert migrate(pg).mode is Mode.PLAIN
        insert_hours(pg, hours)
        pg_daily = pg.execute(COMPLIANCE_SELECT.format(view="compliance_daily")).fetchall()
        pg_monthly = pg.execute(COMPLIANCE_SELECT.format(view="compliance_monthly")).fetchall()
    assert ts_daily == pg_daily
    assert ts_monthly == pg_monthly

    # A late hour inside an already materialised bucket is picked up by the next refresh
    # (the policy's job, every hour in production); real-time aggregation only covers the
    # buckets after the materialisation watermark.
    insert_hours(conn, [(*hours[-1][:2], DEC + timedelta(hours=1), *hours[-1][3:])])
    monthly_dec = (
        "SELECT judged_hours, compliant_hours FROM compliance_monthly WHERE period_start = %s"
    )
    assert conn.execute(monthly_dec, (DEC,)).fetchone() == (1, 1)
    conn.execute(
        "CALL refresh_continuous_aggregate('compliance_monthly', %s::timestamptz, %s::timestamptz)",
        (NOV - timedelta(days=31), DEC + timedelta(days=62)),
    )
    assert conn.execute(monthly_dec, (DEC,)).fetchone() == (2, 2)


def test_late_revision_updates_a_compressed_hour(ts: tuple[Conn, str, MigrationResult]) -> None:
    conn, schema, _ = ts
    t = datetime(2025, 6, 2, 3, tzinfo=UTC)
    insert_hours(conn, [("K3", "a21002", t, 40.0, 45.0, 60, 60, "N", True, None, 2.0, 50.0)])
    chunk = conn.execute(
        "SELECT c FROM show_chunks('hour_aggregates', older_than => %s::timestamptz) c",
        (t + timedelta(days=30),),
    ).fetchall()
    assert len(chunk) == 1
    conn.execute("SELECT compress_chunk(%s::regclass)", (chunk[0][0],))
    assert [c for start, c in _chunks(conn, schema, "hour_aggregates") if start <= t] == [True]
    # The aggregates writer's upsert (README "Storage") on a compressed chunk: a newer
    # revision replaces the values, a replay of an older revision changes nothing.
    upsert = (
        "INSERT INTO hour_aggregates (stack_id, factor, period_start, mean, zs_mean,"
        " valid_count, total_count, valid, revision) VALUES ('K3', 'a21002', %s, %s, %s, 60,"
        " 60, true, %s) ON CONFLICT (stack_id, factor, period_start) DO UPDATE"
        " SET mean = excluded.mean, zs_mean = excluded.zs_mean, revision = excluded.revision"
        " WHERE excluded.revision > hour_aggregates.revision"
    )
    assert conn.execute(upsert, (t, 41.0, 46.0, 1)).rowcount == 1
    assert conn.execute(upsert, (t, 40.0, 45.0, 0)).rowcount == 0
    row = conn.execute(
        "SELECT mean, zs_mean, revision FROM hour_aggregates WHERE stack_id = 'K3'"
    ).fetchone()
    assert row == (41.0, 46.0, 1)


def test_plain_mode_can_be_forced_on_a_timescale_server(
    ts: tuple[Conn, str, MigrationResult],
) -> None:
    conn, schema, _ = ts
    plain = f"{schema}_plain"
    conn.execute(f"CREATE SCHEMA {plain}")
    try:
        conn.execute(f"SET search_path TO {plain}, public")
        result = migrate(conn, mode="plain")
        assert (result.mode, result.applied) == (Mode.PLAIN, [1, 3, 5, 6, 8, 9, 10, 11])
        views = conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = %s ORDER BY 1",
            (plain,),
        ).fetchall()
        assert views == [
            ("capture_rate",),
            ("compliance_daily",),
            ("compliance_monthly",),
            ("conformity_monthly",),
            ("emission_totals_monthly",),
            ("raw_frame_verdicts",),
        ]
        hypertables = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = %s",
            (plain,),
        ).fetchone()
        assert hypertables == (0,)
    finally:
        conn.execute(f"SET search_path TO {schema}, public")
        conn.execute(f"DROP SCHEMA {plain} CASCADE")
