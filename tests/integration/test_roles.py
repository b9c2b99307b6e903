"""Least privilege on PostgreSQL 18 (migration 0011, `stackwatch db logins`).

The logins are made the way a deployment makes them (`stackwatch db migrate --logins` with
passwords in the environment) and the tests connect AS them: the reader cannot write nor see
frame text, dead-letter payloads or password hashes; the writer can run the statements the
sinks, the dispatcher and the ack page run, and nothing of DDL, DELETE or TRUNCATE.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinks.db import connect
from sinks.outbox import OutboxEntry, PgOutbox
from sinks.registry_sync import _UPSERT as REGISTRY_UPSERT
from sinks.roles import scram_sha256_verifier
from sinks.schema import migrate
from sinks.targets import TARGETS as WRITER_TARGETS

pytestmark = pytest.mark.integration

STACKWATCH = str(Path(sys.executable).with_name("stackwatch"))
TABLES = (
    "stacks", "raw_frames", "readings", "minute_aggregates", "hour_aggregates", "day_aggregates",
    "alerts", "alert_events", "notifications", "dead_letters", "limit_verdicts", "ack_link_uses",
)
VIEWS = ("compliance_daily", "compliance_monthly", "conformity_monthly", "capture_rate",
         "emission_totals_monthly", "raw_frame_verdicts")
#: A column of each table that a reader (or an append-only writer) must not update.
A_COLUMN = {t: "stack_id" for t in TABLES} | {
    "raw_frames": "mn", "notifications": "status", "dead_letters": "stage",
    "alert_events": "alert_id", "ack_link_uses": "alert_id",
}
T0 = datetime(2025, 6, 1, 8, tzinfo=UTC)


def as_user(dsn: str, user: str, password: str) -> str:
    params: dict[str, Any] = conninfo_to_dict(dsn)
    params.update(user=user, password=password)
    return make_conninfo("", **params)


@pytest.fixture
def logins(pg_database: str) -> Iterator[dict[str, str]]:
    """Migrated database with rows in it, and DSNs of a fresh writer and reader login."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "STACKWATCH_DB__WRITER_USER": f"t_writer_{tag}",
        "STACKWATCH_DB__WRITER_PASSWORD": f"w-{tag}",
        "STACKWATCH_DB__READER_USER": f"t_reader_{tag}",
        "STACKWATCH_DB__READER_PASSWORD": f"r-{tag}",
    }
    done = subprocess.run(
        [STACKWATCH, "db", "migrate", "--logins", "--dsn", pg_database],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"login t_writer_{tag}: member of stackwatch_writer" in done.stdout
    with connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stacks (stack_id, mn, password_sha256, name, plant, sector, process) "
            "VALUES ('s1', 'MN1', repeat('a', 64), 'kiln', 'plant', 'cement', 'kiln_tail')"
        )
        conn.execute(
            "INSERT INTO raw_frames (received_at, peer, mn, cn, verdict, text) "
            "VALUES (%s, '10.0.0.1:5000', 'MN1', '2011', 'accepted', '##secret frame')", (T0,)
        )
        conn.execute(
            "INSERT INTO dead_letters (stage, reason, payload, occurred_at) "
            "VALUES ('decode', 'crc_mismatch', 'secret payload', %s)", (T0,)
        )
    yield {
        "admin": pg_database,
        "writer": as_user(pg_database, f"t_writer_{tag}", f"w-{tag}"),
        "reader": as_user(pg_database, f"t_reader_{tag}", f"r-{tag}"),
        "writer_user": f"t_writer_{tag}",
        "reader_user": f"t_reader_{tag}",
    }
    with psycopg.connect(pg_database, autocommit=True) as conn:
        # Logins are cluster-wide; the database (and its grants) goes with the fixture.
        for user in (f"t_writer_{tag}", f"t_reader_{tag}"):
            conn.execute(f'DROP OWNED BY "{user}"')
            conn.execute(f'DROP ROLE "{user}"')


def refused(dsn: str, statement: str, params: Any = None) -> bool:
    """Whether the server refuses `statement` for lack of privilege (nothing is committed)."""
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute(statement, params)
        except errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
    return False


def test_groups_are_nologin_and_the_migration_is_idempotent(
    pg_database: str, logins: dict[str, str]
) -> None:
    with connect(pg_database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = ANY(%s)",
            (["stackwatch_owner", "stackwatch_writer", "stackwatch_reader"],),
        ).fetchall()  # (logins of other tests in this cluster may also start with stackwatch_)
        assert {r[0]: (r[1], r[2]) for r in rows} == {
            "stackwatch_owner": (False, False),
            "stackwatch_writer": (False, False),
            "stackwatch_reader": (False, False),
        }
        assert migrate(conn).applied == []  # a second run changes nothing
        members = dict(conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members am "
            "JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.roleid "
            "WHERE m.rolname = ANY(%s)", ([logins["writer_user"], logins["reader_user"]],),
        ).fetchall())
    assert members == {logins["writer_user"]: "stackwatch_writer",
                       logins["reader_user"]: "stackwatch_reader"}


def test_logins_can_log_in_with_scram(logins: dict[str, str]) -> None:
    with psycopg.connect(logins["reader"]) as conn:
        row = conn.execute("SELECT current_user, rolsuper FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
    assert row == (logins["reader_user"], False)
    with connect(logins["admin"]) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                              (logins["reader_user"],)).fetchone()
    assert stored is not None and stored[0].startswith("SCRAM-SHA-256$4096:")


def test_scram_verifier_is_what_postgres_computes(pg_database: str) -> None:
    """PostgreSQL 18 hashes 'pencil' itself; our verifier with its salt must be identical."""
    import base64

    role = f"t_scram_{uuid.uuid4().hex[:8]}"
    with connect(pg_database, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pencil'")
        try:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                               (role,)).fetchone()
        finally:
            conn.execute(f"DROP ROLE {role}")
    assert row is not None
    theirs: str = row[0]
    iterations, salt = theirs.split("$")[1].split(":")
    ours = scram_sha256_verifier("pencil", salt=base64.b64decode(salt),
                                 iterations=int(iterations))
    assert ours == theirs


@pytest.mark.parametrize("table", TABLES)
def test_reader_cannot_write(logins: dict[str, str], table: str) -> None:
    reader, column = logins["reader"], A_COLUMN[table]
    assert refused(reader, f"INSERT INTO {table} DEFAULT VALUES")
    assert refused(reader, f"UPDATE {table} SET {column} = {column}")
    assert refused(reader, f"DELETE FROM {table}")
    assert refused(reader, f"TRUNCATE {table}")


def test_reader_cannot_read_frame_text_payloads_or_password_hashes(
    logins: dict[str, str],
) -> None:
    reader = logins["reader"]
    assert refused(reader, "SELECT text FROM raw_frames")
    assert refused(reader, "SELECT * FROM raw_frames")
    assert refused(reader, "SELECT verdict FROM raw_frames")  # only through raw_frame_verdicts
    assert refused(reader, "SELECT payload FROM dead_letters")
    assert refused(reader, "SELECT password_sha256 FROM stacks")
    assert refused(reader, "SELECT version FROM schema_migrations")
    assert refused(reader, "CREATE TABLE reader_table (x int)")
    with psycopg.connect(reader) as conn:
        assert conn.execute(
            "SELECT mn, cn, verdict, reasons, frame_md5 IS NOT NULL FROM raw_frame_verdicts"
        ).fetchall() == [("MN1", "2011", "accepted", [], True)]
        assert conn.execute(
            "SELECT stage, reason, count(*) FROM dead_letters GROUP BY 1, 2"
        ).fetchall() == [("decode", "crc_mismatch", 1)]
        assert conn.execute("SELECT stack_id, plant FROM stacks").fetchall() == [("s1", "plant")]
        for view in VIEWS:
            conn.execute(f"SELECT * FROM {view}").fetchall()


def test_writer_runs_what_the_sinks_dispatcher_and_ack_page_run(
    logins: dict[str, str],
) -> None:
    """Every statement of the sink writer (each table's staging and upsert), the registry
    sync, the dispatcher's delivery log and escalation, and the ack page/API."""
    with psycopg.connect(logins["writer"]) as conn:
        for target in WRITER_TARGETS.values():
            conn.execute(target.create_stage)
            for _table, move in target.moves:
                conn.execute(move)
        conn.execute(REGISTRY_UPSERT, ("s2", "MN2", None, "n", "p", None, None, "cement",
                                       "kiln_tail", None, None, None, None, None))
        conn.execute(
            "INSERT INTO notifications (alert_id, event_seq, channel, recipient, status, "
            "attempts, error, sent_at) VALUES ('a1', 0, 'email', 'x@y', 'sent', 1, NULL, now()) "
            "ON CONFLICT (alert_id, event_seq, channel, recipient) DO UPDATE SET "
            "status = EXCLUDED.status, attempts = EXCLUDED.attempts, error = EXCLUDED.error, "
            "sent_at = EXCLUDED.sent_at"
        )
        conn.execute("UPDATE alerts SET escalation_level = 1, updated_at = now() "
                     "WHERE alert_id = ANY(%s) AND escalation_level < 1", (["a1"],))
        conn.execute(
            "SELECT a.state, a.acked_by, s.name, s.plant, s.city, (SELECT e.payload FROM "
            "alert_events e WHERE e.alert_id = a.alert_id ORDER BY e.seq DESC LIMIT 1) "
            "FROM alerts a LEFT JOIN stacks s ON s.stack_id = a.stack_id"
        )
        conn.execute("SELECT period_start, mean FROM hour_aggregates UNION ALL "
                     "SELECT period_start, mean FROM minute_aggregates")
        conn.execute(
            "INSERT INTO ack_link_uses (jti, alert_id, recipient, reason, issued_at) "
            "VALUES ('j1', 'a1', 'x@y', 'r', now()) ON CONFLICT (jti) DO NOTHING RETURNING jti"
        )
        conn.execute(
            "INSERT INTO dead_letters (stage, reason, payload, occurred_at) "
            "VALUES ('sink', 'r', 'p', now())"
        )  # identity column: no sequence privilege needed
        conn.commit()


def test_writer_cannot_ddl_delete_truncate_or_read_what_it_does_not_need(
    logins: dict[str, str],
) -> None:
    writer = logins["writer"]
    assert refused(writer, "CREATE TABLE writer_table (x int)")
    assert refused(writer, "DROP TABLE raw_frames")
    assert refused(writer, "ALTER TABLE readings ADD COLUMN x int")
    assert refused(writer, "CREATE INDEX ON readings (value)")
    assert refused(writer, "CREATE VIEW writer_view AS SELECT 1")
    for table in TABLES:
        assert refused(writer, f"DELETE FROM {table}")
        assert refused(writer, f"TRUNCATE {table}")
    for table in ("raw_frames", "readings", "dead_letters", "alert_events", "ack_link_uses"):
        column = A_COLUMN[table]
        assert refused(writer, f"UPDATE {table} SET {column} = {column}")  # append-only
    assert refused(writer, "SELECT version FROM schema_migrations")
    for view in VIEWS:
        assert refused(writer, f"SELECT * FROM {view}")


async def test_writer_runs_the_notification_outbox(logins: dict[str, str]) -> None:
    """The dispatcher's durable outbox (migration 0010) under the writer login: enqueue with
    the scheduler state, read what is due, record an attempt, expire."""
    outbox = PgOutbox(logins["writer"])
    entry = OutboxEntry(
        message_id="m1", destination="王工 <x@y>", recipient="王工", channel="email",
        channel_id="c1", kind="heartbeat", message={"k": "v"}, created_at=T0,
        expires_at=T0 + timedelta(hours=1),
    )
    try:
        await outbox.commit([entry, entry], {"repeat": {}})  # the same natural key twice
        (due,) = await outbox.due(T0)
        await outbox.finish(due.id, "pending", 1, "refused", T0, T0 + timedelta(seconds=10))
        assert await outbox.due(T0) == []  # not due before its next attempt
        assert [r.id for r in await outbox.expire(T0 + timedelta(hours=2))] == [due.id]
        assert await outbox.counts() == {"expired": 1}
        assert await outbox.load_state() == {"repeat": {}}
    finally:
        await outbox.close()
