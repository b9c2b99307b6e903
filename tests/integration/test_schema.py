"""The whole schema on embedded PostgreSQL 18 (plain mode): migrations, natural keys, views.

Each test gets a fresh empty database (`pg_database`). Expected numbers are hand-computed in
the comments next to the data, never read back from the code under test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from sinks.db import build_conninfo, connect, connect_async, redact_dsn, server_info_async
from sinks.schema import Mode, SchemaError, migrate, set_retention, split_sql, status

pytestmark = pytest.mark.integration

H = timedelta(hours=1)
# Beijing time is UTC+8 (no DST): the Beijing day 2026-11-02 runs 2026-11-01T16:00Z → +24 h.
DAY_A = datetime(2026, 11, 1, 16, tzinfo=UTC)  # Beijing 2026-11-02 00:00
DAY_B = datetime(2026, 11, 2, 16, tzinfo=UTC)  # Beijing 2026-11-03 00:00
NOV = datetime(2026, 10, 31, 16, tzinfo=UTC)  # Beijing 2026-11-01 00:00
DEC = datetime(2026, 11, 30, 16, tzinfo=UTC)  # Beijing 2026-12-01 00:00 (UTC: still November)

HOUR_COLUMNS = (
    "stack_id, factor, period_start, mean, zs_mean, valid_count, total_count, flag, valid,"
    " invalid_reason, mass_kg, limit_mg_m3"
)


def _hour(
    start: datetime,
    *,
    mean: float | None,
    zs: float | None,
    valid: bool = True,
    limit: float | None = 35.0,
    mass: float = 0.5,
) -> tuple[Any, ...]:
    return (
        "S1",
        "a21026",
        start,
        mean,
        zs,
        60 if valid else 30,
        60,
        "N" if valid else "D",
        valid,
        None if valid else "fewer than 45 valid minutes (HJ 75)",
        mass,
        limit,
    )


def compliance_hours() -> list[tuple[Any, ...]]:
    """SO2 hours of one stack, limit 35 mg/m³ (ultra-low, hourly), chosen so that:

    Beijing day A (24 rows, all mass 0.5 kg):
      h0–h16  valid, zs 20.0                → 17 compliant
      h17     valid, zs 35.0 (= limit)      → compliant (≤)           → 18 compliant
      h18     valid, zs 35.5                → exceed
      h19     valid, mean 30 but zs 40      → exceed (the O2-converted value is judged)
      h20–h23 invalid, value 100            → not valid, not judged
      ⇒ hours 24, valid 20, judged 20, compliant 18, 90 %, mass 24 × 0.5 = 12.0
        mean (17×20 + 35 + 35.5 + 40)/20 = 450.5/20 = 22.525, max 40.0
    Beijing day B (11 rows, mass 0.25 kg):
      h0–h8   valid, mean 10, no zs (measured basis) → 9 compliant
      h9      valid, mean 36, no zs             → exceed
      h10     valid, mean 5, no limit           → valid, not judged
      ⇒ hours 11, valid 11, judged 10, compliant 9, 90 %, mass 11 × 0.25 = 2.75
        mean (9×10 + 36 + 5)/11 = 131/11, max 36.0
    Beijing month November = A + B: hours 35, valid 31, judged 30, compliant 27 → 90 %,
      mass 14.75, max 40.0.
    One more valid compliant hour at 2026-11-30T16:00Z = Beijing 2026-12-01 00:00 belongs to
      the Beijing December (a UTC bucketing would put it in November and break 27/30).
    """
    rows = [_hour(DAY_A + i * H, mean=20.0, zs=20.0) for i in range(17)]
    rows.append(_hour(DAY_A + 17 * H, mean=30.0, zs=35.0))
    rows.append(_hour(DAY_A + 18 * H, mean=30.0, zs=35.5))
    rows.append(_hour(DAY_A + 19 * H, mean=30.0, zs=40.0))
    rows += [_hour(DAY_A + i * H, mean=100.0, zs=100.0, valid=False) for i in range(20, 24)]
    rows += [_hour(DAY_B + i * H, mean=10.0, zs=None, mass=0.25) for i in range(9)]
    rows.append(_hour(DAY_B + 9 * H, mean=36.0, zs=None, mass=0.25))
    rows.append(_hour(DAY_B + 10 * H, mean=5.0, zs=None, limit=None, mass=0.25))
    rows.append(_hour(DEC, mean=12.0, zs=12.0))
    return rows


def insert_hours(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Plain INSERTs (no COPY, so the same helper serves PGlite)."""
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO hour_aggregates ({HOUR_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


COMPLIANCE_SELECT = (
    "SELECT stack_id, factor, period_start, hours_total, valid_hours, judged_hours,"
    " compliant_hours, compliance_pct, mean_value, max_value, mass_kg FROM {view}"
    " ORDER BY stack_id, factor, period_start"
)


@pytest.fixture
def conn(pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(pg_database, autocommit=True) as c:
        yield c


@pytest.fixture
def migrated(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    migrate(conn)
    return conn


def test_migrate_plain_mode_records_versions_and_is_idempotent(
    conn: psycopg.Connection[Any],
) -> None:
    first = migrate(conn)
    # PostgreSQL 18 here has no timescaledb: plain mode, 0001 core + 0003 views + 0005 real
    # loggers + 0006 limit verdicts + 0008 used ack links + 0009 frame digests + 0010
    # notification outbox + 0011 roles (0002, 0004 and 0007 exist only for TimescaleDB).
    assert first.mode is Mode.PLAIN
    assert first.applied == [1, 3, 5, 6, 8, 9, 10, 11]
    assert first.timescaledb_version is None

    second = migrate(conn)
    assert second.applied == []
    assert second.already_applied == [1, 3, 5, 6, 8, 9, 10, 11]

    rows = conn.execute("SELECT version, name, mode FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [
        (1, "core", "plain"),
        (3, "compliance", "plain"),
        (5, "real_loggers", "plain"),
        (6, "limit_verdicts", "plain"),
        (8, "ack_links", "plain"),
        (9, "frame_digest", "plain"),
        (10, "notification_outbox", "plain"),
        (11, "roles", "plain"),
    ]

    st = status(conn)
    assert st.mode is Mode.PLAIN
    assert [a.version for a in st.applied] == [1, 3, 5, 6, 8, 9, 10, 11]
    assert st.pending == []
    assert st.modified == []


def test_status_of_a_fresh_database_lists_everything_pending(
    conn: psycopg.Connection[Any],
) -> None:
    st = status(conn)
    assert st.mode is None
    assert st.applied == []
    assert st.pending == [1, 3, 5, 6, 8, 9, 10, 11]
    assert not st.timescaledb_available


def test_every_table_and_view_exists(migrated: psycopg.Connection[Any]) -> None:
    tables = {
        r[0]
        for r in migrated.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    }
    assert tables == {
        "schema_migrations",
        "stacks",
        "raw_frames",
        "readings",
        "minute_aggregates",
        "hour_aggregates",
        "day_aggregates",
        "alerts",
        "alert_events",
        "notifications",
        "dead_letters",
        "limit_verdicts",
        "ack_link_uses",
        "notification_outbox",
        "notify_state",
    }
    views = {
        r[0]
        for r in migrated.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = current_schema()"
        )
    }
    assert views == {
        "compliance_daily",
        "compliance_monthly",
        "conformity_monthly",
        "capture_rate",
        "emission_totals_monthly",
        "raw_frame_verdicts",  # 0011: raw_frames without the frame text, for the reader
    }


def test_explicit_timescale_request_fails_without_the_extension(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(SchemaError, match="no timescaledb extension"):
        migrate(conn, mode="timescale")
    assert status(conn).applied == []


def test_recorded_mode_is_kept(migrated: psycopg.Connection[Any]) -> None:
    with pytest.raises(SchemaError, match="migrated in plain mode"):
        migrate(migrated, mode="timescale")
    assert migrate(migrated, mode="plain").applied == []


def test_retention_is_refused_in_plain_mode(migrated: psycopg.Connection[Any]) -> None:
    with pytest.raises(SchemaError, match="only in timescale mode"):
        set_retention(migrated, "raw_frames", timedelta(days=30))
    with pytest.raises(SchemaError, match="no retention for 'alerts'"):
        set_retention(migrated, "alerts", timedelta(days=30))


def test_failed_migration_leaves_nothing_behind(
    conn: psycopg.Connection[Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sinks.schema as schema

    plain = tmp_path / "migrations"
    plain.mkdir()
    (plain / "0001_ok.sql").write_text("CREATE TABLE t_ok (x int);")
    (plain / "0002_bad.sql").write_text(
        "CREATE TABLE t_half (x int);\n-- the error names the statement, not this comment\n"
        "SELECT no_such_fn();"
    )
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", plain)
    monkeypatch.setattr(schema, "TIMESCALE_DIR", tmp_path / "none")

    with pytest.raises(SchemaError, match=r"0002_bad failed at `SELECT no_such_fn\(\)`"):
        migrate(conn)
    # 0001 committed and recorded; 0002 rolled back entirely (its first table too).
    assert conn.execute("SELECT array_agg(version) FROM schema_migrations").fetchone() == ([1],)
    assert conn.execute("SELECT to_regclass('t_half')").fetchone() == (None,)
    assert conn.execute("SELECT to_regclass('t_ok')").fetchone() == ("t_ok",)


def test_raw_frames_replay_is_a_no_op(migrated: psycopg.Connection[Any]) -> None:
    at = datetime(2026, 11, 2, 1, 0, 5, tzinfo=UTC)
    frame = "##0087QN=20160801090000001;ST=91;CN=9014;PW=123456;MN=X;Flag=4;CP=&&&&FF01\r\n"
    insert = (
        "INSERT INTO raw_frames (received_at, peer, mn, cn, verdict, reasons, text)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    )
    row: tuple[Any, ...] = (at, "10.0.0.7:40000", "X", "9014", "accepted", [], frame)
    assert migrated.execute(insert, row).rowcount == 1
    assert migrated.execute(insert, row).rowcount == 0  # replay of the same frame
    # A different frame at the same instant from the same peer is a new row.
    other = (at, "10.0.0.7:40000", None, None, "rejected", ["bad CRC"], frame + "x")
    assert migrated.execute(insert, other).rowcount == 1
    count = migrated.execute("SELECT count(*) FROM raw_frames").fetchone()
    assert count == (2,)


def test_raw_frames_reject_an_unknown_verdict(migrated: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        migrated.execute(
            "INSERT INTO raw_frames (received_at, peer, verdict, text)"
            " VALUES (now(), 'p', 'x', 't')"
        )


def test_readings_natural_key(migrated: psycopg.Connection[Any]) -> None:
    t = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    insert = (
        "INSERT INTO readings (stack_id, factor, cn, data_time, value, flag, mn, received_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    )
    assert migrated.execute(insert, ("S1", "a21026", "2011", t, 20.1, "N", "M1", t)).rowcount == 1
    assert migrated.execute(insert, ("S1", "a21026", "2011", t, 99.0, "N", "M1", t)).rowcount == 0
    # same instant, other CN (a minute record) and other factor are distinct rows
    assert migrated.execute(insert, ("S1", "a21026", "2051", t, 20.0, "N", "M1", t)).rowcount == 1
    assert migrated.execute(insert, ("S1", "a21002", "2011", t, 40.0, "N", "M1", t)).rowcount == 1
    rows = migrated.execute("SELECT factor, cn, value FROM readings ORDER BY factor, cn").fetchall()
    assert rows == [("a21002", "2011", 40.0), ("a21026", "2011", 20.1), ("a21026", "2051", 20.0)]


def test_aggregate_upsert_never_regresses_a_revision(migrated: psycopg.Connection[Any]) -> None:
    upsert = f"""
        INSERT INTO hour_aggregates ({HOUR_COLUMNS}, revision)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (stack_id, factor, period_start) DO UPDATE
        SET mean = excluded.mean, zs_mean = excluded.zs_mean, revision = excluded.revision
        WHERE excluded.revision > hour_aggregates.revision
    """
    first = (*_hour(DAY_A, mean=10.0, zs=11.0), 0)
    late = (*_hour(DAY_A, mean=12.0, zs=13.0), 1)  # late minutes recomputed the hour
    assert migrated.execute(upsert, first).rowcount == 1
    assert migrated.execute(upsert, late).rowcount == 1
    assert migrated.execute(upsert, first).rowcount == 0  # replay of revision 0: ignored
    row = migrated.execute("SELECT mean, zs_mean, revision FROM hour_aggregates").fetchone()
    assert row == (12.0, 13.0, 1)


def test_aggregate_constraints(migrated: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):  # invalid without a reason
        migrated.execute(
            "INSERT INTO minute_aggregates (stack_id, factor, period_start, valid_count,"
            " total_count, valid) VALUES ('S1', 'a21026', now(), 3, 12, false)"
        )
    with pytest.raises(psycopg.errors.CheckViolation):  # more valid than total values
        migrated.execute(
            "INSERT INTO day_aggregates (stack_id, factor, period_start, mean, valid_count,"
            " total_count, valid) VALUES ('S1', 'a21026', now(), 1, 25, 24, true)"
        )
    with pytest.raises(psycopg.errors.CheckViolation):  # unknown source
        migrated.execute(
            "INSERT INTO hour_aggregates (stack_id, factor, period_start, mean, valid_count,"
            " total_count, valid, source) VALUES ('S1', 'a21026', now(), 1, 50, 60, true, 'x')"
        )


def test_alert_history_and_notifications_are_idempotent(
    migrated: psycopg.Connection[Any],
) -> None:
    t = datetime(2026, 11, 2, 3, tzinfo=UTC)
    migrated.execute(
        "INSERT INTO alerts (alert_id, stack_id, factor, rule, severity, state, first_seen,"
        " last_seen, peak_value, limit_value, ref_o2, evidence)"
        " VALUES ('A1', 'S1', 'a21026', 'over_limit', 'alarm', 'active', %s, %s, 40.0, 35.0,"
        ' 6.0, \'{"hour": "2026-11-02T03:00Z"}\')',
        (t, t),
    )
    event = (
        "INSERT INTO alert_events (alert_id, seq, event, at, payload)"
        " VALUES ('A1', %s, %s, %s, '{}') ON CONFLICT DO NOTHING"
    )
    assert migrated.execute(event, (0, "raise", t)).rowcount == 1
    assert migrated.execute(event, (0, "raise", t)).rowcount == 0
    assert migrated.execute(event, (1, "ack", t + H)).rowcount == 1
    with pytest.raises(psycopg.errors.CheckViolation):
        migrated.execute(event, (2, "explode", t + H))

    note = (
        "INSERT INTO notifications (alert_id, event_seq, channel, recipient, status, attempts)"
        " VALUES ('A1', 0, 'email', 'ops@example.org', %s, %s)"
        " ON CONFLICT (alert_id, event_seq, channel, recipient) DO UPDATE"
        " SET status = excluded.status, attempts = excluded.attempts"
    )
    migrated.execute(note, ("failed", 1))
    migrated.execute(note, ("sent", 2))  # the retry updates the same delivery row
    assert migrated.execute("SELECT status, attempts FROM notifications").fetchall() == [
        ("sent", 2)
    ]
    # a cleared alert must say when it cleared
    with pytest.raises(psycopg.errors.CheckViolation):
        migrated.execute("UPDATE alerts SET state = 'cleared' WHERE alert_id = 'A1'")


def test_dead_letters_replay_is_a_no_op(migrated: psycopg.Connection[Any]) -> None:
    insert = (
        "INSERT INTO dead_letters (stage, reason, payload, key, occurred_at, details)"
        " VALUES ('decode', 'CRC mismatch', %s, 'MN1', %s, '{}') ON CONFLICT DO NOTHING"
    )
    t = datetime(2026, 11, 2, 3, tzinfo=UTC)
    assert migrated.execute(insert, ("##0001x", t)).rowcount == 1
    assert migrated.execute(insert, ("##0001x", t)).rowcount == 0
    assert migrated.execute(insert, ("##0001y", t)).rowcount == 1


def test_stacks_registry_constraints(migrated: psycopg.Connection[Any]) -> None:
    insert = (
        "INSERT INTO stacks (stack_id, mn, name, plant, sector, process, rtd_interval_s)"
        " VALUES (%s, %s, 'Kiln 1', 'Plant', 'cement', 'kiln_tail', %s)"
    )
    migrated.execute(insert, ("S1", "MN0001", 30))
    # updated_at is the database's job: an update moves it past a back-dated value
    migrated.execute("UPDATE stacks SET updated_at = '2020-01-01T00:00Z' WHERE stack_id = 'S1'")
    assert migrated.execute(
        "SELECT updated_at > '2025-01-01T00:00Z' FROM stacks WHERE stack_id = 'S1'"
    ).fetchone() == (True,)
    with pytest.raises(psycopg.errors.UniqueViolation):  # one logger, one stack
        migrated.execute(insert, ("S2", "MN0001", 30))
    with pytest.raises(psycopg.errors.CheckViolation):  # HJ 212 RtdInterval is 30–3600 s
        migrated.execute(insert, ("S3", "MN0003", 10))


def test_compliance_daily_is_hand_computed(migrated: psycopg.Connection[Any]) -> None:
    insert_hours(migrated, compliance_hours())
    rows = migrated.execute(COMPLIANCE_SELECT.format(view="compliance_daily")).fetchall()
    assert len(rows) == 3
    day_a, day_b, dec1 = rows
    assert day_a[:8] == ("S1", "a21026", DAY_A, 24, 20, 20, 18, Decimal(90))
    assert day_a[8] == pytest.approx(22.525)  # 450.5 / 20
    assert day_a[9:] == (40.0, 12.0)
    assert day_b[:8] == ("S1", "a21026", DAY_B, 11, 11, 10, 9, Decimal(90))
    assert day_b[8] == pytest.approx(131 / 11)
    assert day_b[9:] == (36.0, 2.75)
    assert dec1[:8] == ("S1", "a21026", DEC, 1, 1, 1, 1, Decimal(100))


def test_compliance_monthly_is_hand_computed(migrated: psycopg.Connection[Any]) -> None:
    insert_hours(migrated, compliance_hours())
    rows = migrated.execute(COMPLIANCE_SELECT.format(view="compliance_monthly")).fetchall()
    assert len(rows) == 2
    nov, dec = rows
    # 30 judged hours of which 27 ≤ limit → 90 %; 35 rows, 31 valid; 12.0 + 2.75 kg
    assert nov[:8] == ("S1", "a21026", NOV, 35, 31, 30, 27, Decimal(90))
    assert nov[9:] == (40.0, 14.75)
    assert dec[:8] == ("S1", "a21026", DEC, 1, 1, 1, 1, Decimal(100))


def test_compliance_without_any_limit_has_no_rate(migrated: psycopg.Connection[Any]) -> None:
    insert_hours(migrated, [_hour(DAY_A, mean=5.0, zs=None, limit=None)])
    row = migrated.execute(
        "SELECT valid_hours, judged_hours, compliance_pct FROM compliance_daily"
    ).fetchone()
    assert row == (1, 0, None)  # nothing judged: no rate rather than a fake 0 % or 100 %


def _verdicts(stack: str, program: str, kind: str, statuses: list[str]) -> list[tuple[Any, ...]]:
    """One limit_verdicts row per hour from Beijing 2026-11-02 00:00, one status each."""
    return [
        (stack, "a21026", "hour", DAY_A + i * H, program, kind, status, 35.0, "test")
        for i, status in enumerate(statuses)
    ]


def test_conformity_monthly_applies_the_95_percent_rule(migrated: psycopg.Connection[Any]) -> None:
    # S1 ultra-low: 30 compliant + 8 warning + 2 exceedance = 40 judged, 38 within → 95.0 %:
    #   meets (20 × 38 = 760 ≥ 19 × 40 = 760). 3 invalid and 1 stopped hour are not judged.
    # S2 ultra-low: 37 compliant + 3 exceedance → 37/40 = 92.5 %: fails.
    # S1 standard (GB row) on the same hours: 40 compliant → 100 %, a separate program row.
    # One more S1 exceedance at Beijing 2026-12-01 00:00 belongs to December.
    s1 = ["compliant"] * 30 + ["warning"] * 8 + ["exceedance"] * 2 + ["invalid"] * 3 + ["stopped"]
    s2 = ["compliant"] * 37 + ["exceedance"] * 3
    rows = _verdicts("S1", "ULE", "ultra_low", s1)
    rows += _verdicts("S2", "ULE", "ultra_low", s2)
    rows += _verdicts("S1", "GB", "standard", ["compliant"] * 40)
    rows.append(("S1", "a21026", "hour", DEC, "ULE", "ultra_low", "exceedance", 35.0, "test"))
    migrated.cursor().executemany(
        "INSERT INTO limit_verdicts (stack_id, factor, period, period_start, program, kind,"
        " status, limit_mg_m3, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
    got = migrated.execute(
        "SELECT stack_id, program, period_start, judged_hours, compliant_hours,"
        " exceedance_hours, invalid_hours, stopped_hours, conformity_pct, meets_95"
        " FROM conformity_monthly ORDER BY stack_id, program, period_start"
    ).fetchall()
    assert got == [
        ("S1", "GB", NOV, 40, 40, 0, 0, 0, Decimal(100), True),
        ("S1", "ULE", NOV, 40, 38, 2, 3, 1, Decimal(95), True),
        ("S1", "ULE", DEC, 1, 0, 1, 0, 0, Decimal(0), False),
        ("S2", "ULE", NOV, 40, 37, 3, 0, 0, Decimal("92.5"), False),
    ]


def test_conformity_monthly_on_a_hand_built_month(migrated: psycopg.Connection[Any]) -> None:
    """The product's monthly 95 % rule (环大气〔2019〕35号) over a whole Beijing month.

    April 2026 in Beijing time = 2026-03-31T16:00Z + 720 hours (30 days × 24 h).
    * M1: 684 hours within (600 compliant, 84 预警) and 36 above: 684/720 = 95.00 % exactly
      → meets (20 × 684 = 13 680 ≥ 19 × 720 = 13 680).
    * M2: one hour fewer within, 683/720 = 94.861 % → fails (13 660 < 13 680).
    * M3: 20 stopped and 10 invalid hours, 656 within and 34 above: 690 judged, 656/690 =
      95.07 % → meets (13 120 ≥ 13 110); counting the 30 excluded hours as judged would give
      656/720 = 91.11 % and fail.
      Its extra exceedance at 2026-03-31T15:00Z (Beijing 23:00 on 31 March) is March's.
    """
    april = datetime(2026, 3, 31, 16, tzinfo=UTC)
    march = datetime(2026, 2, 28, 16, tzinfo=UTC)  # Beijing 2026-03-01 00:00

    def month(stack: str, statuses: list[str]) -> list[tuple[Any, ...]]:
        assert len(statuses) == 720
        return [
            (stack, "a21026", "hour", april + i * H, "NATL-2024-ULE", "ultra_low", status,
             35.0, "hand-built month")
            for i, status in enumerate(statuses)
        ]

    rows = month("M1", ["compliant"] * 600 + ["warning"] * 84 + ["exceedance"] * 36)
    rows += month("M2", ["compliant"] * 683 + ["exceedance"] * 37)
    rows += month(
        "M3", ["stopped"] * 20 + ["invalid"] * 10 + ["compliant"] * 656 + ["exceedance"] * 34
    )
    rows.append(("M3", "a21026", "hour", april - H, "NATL-2024-ULE", "ultra_low",
                 "exceedance", 35.0, "hand-built month"))
    migrated.cursor().executemany(
        "INSERT INTO limit_verdicts (stack_id, factor, period, period_start, program, kind,"
        " status, limit_mg_m3, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
    got = migrated.execute(
        "SELECT stack_id, period_start, judged_hours, compliant_hours, exceedance_hours,"
        " invalid_hours, stopped_hours, conformity_pct, meets_95"
        " FROM conformity_monthly ORDER BY stack_id, period_start"
    ).fetchall()
    assert [(*r[:7], r[8]) for r in got] == [
        ("M1", april, 720, 684, 36, 0, 0, True),
        ("M2", april, 720, 683, 37, 0, 0, False),
        ("M3", march, 1, 0, 1, 0, 0, False),
        ("M3", april, 690, 656, 34, 10, 20, True),
    ]
    pct = [float(r[7]) for r in got]
    assert pct == pytest.approx([95.0, 100 * 683 / 720, 0.0, 100 * 656 / 690])
    assert round(pct[1], 3) == 94.861 and round(pct[3], 2) == 95.07


def test_capture_rate_and_monthly_totals_are_hand_computed(
    migrated: psycopg.Connection[Any],
) -> None:
    # A stack whose first hour is Beijing 2025-11-30 00:00 (= 2025-11-29T16:00Z): November
    # 2025 counts 24 hours for it. 18 valid hours (mass 0.5 kg each), 1 invalid, 2 stopped,
    # 3 hours with no row at all (missing). Running hours 24 − 2 = 22; α = 18/22 = 81.82 %.
    first = datetime(2025, 11, 29, 16, tzinfo=UTC)
    columns = (
        "stack_id, factor, period_start, mean, valid_count, total_count, flag, valid,"
        " invalid_reason, mass_kg, stopped, mass_valid"
    )
    rows: list[tuple[Any, ...]] = [
        ("S9", "a21026", first + i * H, 20.0, 60, 60, "N", True, None, 0.5, False, True)
        for i in range(18)
    ]
    rows.append(("S9", "a21026", first + 18 * H, None, 10, 60, "D", False, "30 min", None,
                 False, None))
    rows += [
        ("S9", "a21026", first + i * H, None, 0, 60, "N", False, "stopped", None, True, None)
        for i in (19, 20)
    ]
    placeholders = ", ".join(["%s"] * 12)
    migrated.cursor().executemany(
        f"INSERT INTO hour_aggregates ({columns}) VALUES ({placeholders})", rows
    )
    # The day has 18 valid hours (< 20): its total is not a valid daily total.
    migrated.execute(
        f"INSERT INTO day_aggregates ({columns}) VALUES ({placeholders})",
        ("S9", "a21026", first, None, 18, 24, "N", False, "18 valid hours", 9.0, False, False),
    )
    capture = migrated.execute(
        "SELECT period_start, valid_hours, stopped_hours, period_hours, running_hours,"
        " round(capture_pct, 2) FROM capture_rate WHERE granularity = 'month'"
    ).fetchall()
    nov_2025 = datetime(2025, 10, 31, 16, tzinfo=UTC)
    assert capture == [(nov_2025, 18, 2, 24, 22, Decimal("81.82"))]
    totals = migrated.execute(
        "SELECT period_start, mass_kg, hours_with_mass, days_closed, days_valid"
        " FROM emission_totals_monthly"
    ).fetchall()
    assert totals == [(nov_2025, 9.0, 18, 1, 0)]


def test_split_sql_respects_quotes_comments_and_dollar_bodies() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x text DEFAULT 'it''s; fine');
        /* block; /* nested; */ still comment */
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
        SELECT ";" AS "semi;colon"
    """
    assert split_sql(script) == [
        "-- a comment; with a semicolon\n        CREATE TABLE a (x text DEFAULT 'it''s; fine')",
        "/* block; /* nested; */ still comment */\n"
        "        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$",
        'SELECT ";" AS "semi;colon"',
    ]
    assert split_sql("-- only a comment;\n  ;  ") == []


async def test_async_connect_to_postgres(pg_database: str) -> None:
    conn = await connect_async(pg_database)
    try:
        # the detection query's transaction was closed: the caller starts clean
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        info = await server_info_async(conn)
        assert info.server_version >= 180000  # the embedded PostgreSQL 18
        assert not info.is_pglite and info.supports_copy
        assert info.timescaledb_version is None
        assert conn.prepare_threshold == 5  # prepared statements stay on for real servers
    finally:
        await conn.close()


def test_conninfo_helpers() -> None:
    info = build_conninfo("postgresql://u:secret@127.0.0.1:5432/db")
    assert "sslmode=disable" in info  # loopback: no SSL handshake
    assert "connect_timeout=10" in info
    remote = build_conninfo("postgresql://u@db.example.org/db?sslmode=require")
    assert "sslmode=require" in remote
    assert "sslmode=disable" in build_conninfo("host=db.example.org sslmode=require", pglite=True)
    assert "secret" not in redact_dsn("postgresql://u:secret@127.0.0.1/db")
    assert "password=***" in redact_dsn("postgresql://u:secret@127.0.0.1/db")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI installs a stderr log handler bound to CliRunner's stream; remove it after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_cli_migrate_and_status(pg_database: str) -> None:
    from typer.testing import CliRunner

    from commands import app

    runner = CliRunner()
    pending = runner.invoke(app, ["db", "status", "--dsn", pg_database])
    assert pending.exit_code == 2, pending.output  # pending migrations: exit 2
    assert "not migrated" in pending.output

    first = runner.invoke(app, ["db", "migrate", "--dsn", pg_database])
    assert first.exit_code == 0, first.output
    assert "mode: plain" in first.output
    assert "applied: 0001, 0003" in first.output
    second = runner.invoke(app, ["db", "migrate", "--dsn", pg_database])
    assert "applied: none (up to date)" in second.output

    done = runner.invoke(app, ["db", "status", "--dsn", pg_database])
    assert done.exit_code == 0, done.output

    refused = runner.invoke(
        app, ["db", "retention", "raw_frames", "--days", "30", "--dsn", pg_database]
    )
    assert refused.exit_code == 1
    assert "only in timescale mode" in refused.output

    unreachable = runner.invoke(
        app, ["db", "migrate", "--dsn", "postgresql://u:topsecret@127.0.0.1:1/x"]
    )
    assert unreachable.exit_code == 1
    assert "cannot connect" in unreachable.output
    assert "topsecret" not in unreachable.output  # the password never reaches the terminal
