"""Apply the SQL migrations in order, once, in plain-PostgreSQL or TimescaleDB mode.

Layout (README "Storage"):

* `sinks/migrations/NNNN_name.sql` — applied in both modes;
* `sinks/timescale/NNNN_name.sql` — TimescaleDB mode only. A Timescale file with the same
  version as a plain one *replaces* it (0003: plain views → continuous aggregates of the same
  names); a version that exists only there is skipped in plain mode.
* `NNNN_name.sql.j2` in either directory — a Jinja template rendered to the migration's SQL
  (its macros come from `sinks/sql_macros/`), so SQL both modes share is written once. The
  checksum is the rendered text's: rendering an applied migration must give the text that was
  applied, byte for byte (tests/unit/test_migration_templates.py).
* `EARLIER_CHECKSUMS` — an applied migration whose later edit changed comments only (the
  references to notes outside the repository became docs/ anchors) also matches the checksum
  of its earlier text, so databases migrated before the edit are not reported as modified.

Each applied version is recorded in `schema_migrations` in the same transaction as its DDL, so a
crash leaves either the whole migration or none of it. Files starting with the line
`-- stackwatch:no-transaction` (continuous aggregates cannot be created inside a transaction)
run statement by statement in autocommit and must be idempotent (IF NOT EXISTS). A session
advisory lock serialises concurrent runners (several workers starting at once).

Mode is decided once, on the first migration, and recorded with every version: a database
built plain stays plain even if TimescaleDB is installed later (converting is a deliberate
manual job, `create_hypertable(..., migrate_data => true)`), and vice versa.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import jinja2
import psycopg
import sqlparse
from pydantic import BaseModel

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Checksums of earlier texts of applied migrations whose edits changed comment lines only,
#: by path under sinks/. tests/unit/test_migration_templates.py rebuilds each earlier text from
#: today's file and its old comment lines, and checks that it hashes to the value here.
EARLIER_CHECKSUMS: dict[str, frozenset[str]] = {
    "migrations/0001_core.sql": frozenset(
        {"8af03e46489d8e660f92fe6faf0f47cf1b2347867cd427c4669399382a902944"}
    ),
    "migrations/0003_compliance.sql.j2": frozenset(
        {"5ff7d36da4787f1cab1783327f6d67d111676f9b1558657a4dc90d498e23ebd1"}
    ),
    "migrations/0006_limit_verdicts.sql": frozenset(
        {"155d8733dc61a27cc232a1f694255a935b9121eae3459f3be2bcf4f1c3dedb78"}
    ),
}
TIMESCALE_DIR = Path(__file__).parent / "timescale"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),  # {% from "sql_macros/…" %}
    autoescape=False,  # SQL, not HTML
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
NO_TRANSACTION_MARKER = "-- stackwatch:no-transaction"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql(\.j2)?$")
_LOCK_KEY = 0x5354_4B57  # "STKW": advisory lock id of the schema runner

RequestedMode = Literal["auto", "plain", "timescale"]

#: Hypertables that may carry a retention policy (README "Storage", retention defaults).
RETENTION_TABLES = (
    "raw_frames",
    "readings",
    "minute_aggregates",
    "hour_aggregates",
    "day_aggregates",
)


class Mode(StrEnum):
    """How the schema is built on this server."""

    PLAIN = "plain"
    TIMESCALE = "timescale"


class SchemaError(RuntimeError):
    """A migration could not be applied, or the request contradicts the database."""


@dataclass(frozen=True)
class Migration:
    """One SQL file resolved for a mode."""

    version: int
    name: str
    path: Path
    sql: str
    transactional: bool

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL text (a template's rendering): detects an applied migration
        edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def matches(self, applied_checksum: str) -> bool:
        """Whether a recorded checksum is this text's, or an earlier comment-only version's."""
        if applied_checksum == self.checksum:
            return True
        key = self.path.relative_to(self.path.parent.parent).as_posix()
        return applied_checksum in EARLIER_CHECKSUMS.get(key, frozenset())


class AppliedMigration(BaseModel):
    """A row of `schema_migrations`."""

    version: int
    name: str
    mode: Mode
    checksum: str
    applied_at: datetime


class MigrationResult(BaseModel):
    """What `migrate` did."""

    mode: Mode
    timescaledb_version: str | None
    applied: list[int]
    already_applied: list[int]


class SchemaStatus(BaseModel):
    """What `status` found; `mode` is None on a database never migrated."""

    mode: Mode | None
    timescaledb_available: bool
    timescaledb_version: str | None
    applied: list[AppliedMigration]
    pending: list[int]
    modified: list[int]


def _scan(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted([*directory.glob("*.sql"), *directory.glob("*.sql.j2")]):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise SchemaError(f"migration file name must be NNNN_name.sql[.j2]: {path}")
        version = int(match.group(1))
        if version in found:
            raise SchemaError(f"two migrations with version {version}: {found[version]}, {path}")
        found[version] = path
    return found


def discover(
    mode: Mode, migrations_dir: Path | None = None, timescale_dir: Path | None = None
) -> list[Migration]:
    """The ordered migrations that apply in `mode` (Timescale files replace same versions)."""
    chosen = _scan(migrations_dir or MIGRATIONS_DIR)
    if mode is Mode.TIMESCALE:
        chosen.update(_scan(timescale_dir or TIMESCALE_DIR))
    result = []
    for version in sorted(chosen):
        path = chosen[version]
        sql = render(path)
        match = _FILE_RE.match(path.name)
        assert match is not None
        result.append(
            Migration(
                version=version,
                name=match.group(2),
                path=path,
                sql=sql,
                transactional=not sql.startswith(NO_TRANSACTION_MARKER),
            )
        )
    return result


def render(path: Path) -> str:
    """A migration's SQL: the file's text, or a `.sql.j2` template rendered."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".j2":
        return text
    return _TEMPLATES.from_string(text).render()


def split_sql(text: str) -> list[str]:
    """A migration script's statements, one by one (so an error names the statement).

    sqlparse splits on top-level `;`, understanding '…' strings, "…" identifiers, $tag$
    bodies and -- and /* */ comments (nested too); comment-only fragments are dropped.
    """
    statements = (part.strip() for part in sqlparse.split(text, strip_semicolon=True))
    return [st for st in statements if sqlparse.format(st, strip_comments=True).strip(" ;\n")]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('plain', 'timescale')),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    # Look in the creation schema only: a schema_migrations elsewhere on the search_path
    # belongs to another schema's tables.
    exists = conn.execute(
        "SELECT to_regclass(format('%I.schema_migrations', current_schema())) IS NOT NULL"
    ).fetchone()
    if exists is None or not exists[0]:
        return []
    rows = conn.execute(
        "SELECT version, name, mode, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [
        AppliedMigration(version=v, name=nm, mode=Mode(md), checksum=cs, applied_at=at)
        for v, nm, md, cs, at in rows
    ]


def _timescale_state(conn: psycopg.Connection[Any]) -> tuple[bool, str | None]:
    """(available on the server, installed version in this database)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    assert row is not None
    return bool(row[0]), row[1]


def _recorded_mode(applied: list[AppliedMigration]) -> Mode | None:
    modes = {a.mode for a in applied}
    if len(modes) > 1:
        raise SchemaError(f"schema_migrations mixes modes {sorted(modes)}; repair by hand")
    return modes.pop() if modes else None


def choose_mode(conn: psycopg.Connection[Any], requested: RequestedMode = "auto") -> Mode:
    """Decide plain vs TimescaleDB mode (the one code path that does), creating the extension
    when it is available but not yet installed. Requires an autocommit connection.

    A database already migrated keeps its recorded mode; an explicit request that contradicts
    it is an error. `auto` picks Timescale when the extension is installed or can be created.
    """
    recorded = _recorded_mode(_applied(conn))
    available, installed = _timescale_state(conn)
    if recorded is not None:
        if requested != "auto" and requested != recorded.value:
            raise SchemaError(
                f"database was migrated in {recorded.value} mode; refusing {requested} mode"
            )
        if recorded is Mode.TIMESCALE and installed is None:
            raise SchemaError("database was migrated in timescale mode but the extension is gone")
        if recorded is Mode.PLAIN and installed is not None and requested == "auto":
            logger.warning(
                "timescaledb is installed but this database was built in plain mode; keeping it",
                extra={"mode": recorded.value},
            )
        mode = recorded
    elif requested == "plain":
        mode = Mode.PLAIN
    elif installed is not None:
        mode = Mode.TIMESCALE
    elif available:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            mode = Mode.TIMESCALE
        except psycopg.Error as exc:
            if requested == "timescale":
                raise SchemaError(f"cannot create extension timescaledb: {exc}") from exc
            logger.warning(
                "timescaledb is available but cannot be created; using plain mode",
                extra={"error": str(exc).strip()},
            )
            mode = Mode.PLAIN
    elif requested == "timescale":
        raise SchemaError("timescale mode requested but the server has no timescaledb extension")
    else:
        mode = Mode.PLAIN
    logger.info(
        "schema mode chosen",
        extra={
            "mode": mode.value,
            "requested": requested,
            "recorded": recorded.value if recorded else None,
            "available": available,
        },
    )
    return mode


def _run(conn: psycopg.Connection[Any], migration: Migration) -> None:
    for statement in split_sql(migration.sql):
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            code = [ln.strip() for ln in statement.splitlines() if ln.strip()]
            first_line = next((ln for ln in code if not ln.startswith("--")), code[0])[:120]
            raise SchemaError(
                f"migration {migration.version:04d}_{migration.name} failed at `{first_line}`: "
                f"{str(exc).strip()}"
            ) from exc


def migrate(conn: psycopg.Connection[Any], mode: RequestedMode = "auto") -> MigrationResult:
    """Bring the schema up to date; safe to run any number of times, from several processes.

    The connection is switched to autocommit for the duration (transactions are explicit per
    migration) and restored afterwards.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SchemaError("migrate() needs a connection outside a transaction")
    previous_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _migrate_locked(conn, mode)
        finally:
            # The lock is per session: a broken connection has released it already, and an
            # unlock error must not hide the migration error being raised.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        conn.autocommit = previous_autocommit


def _migrate_locked(conn: psycopg.Connection[Any], requested: RequestedMode) -> MigrationResult:
    chosen = choose_mode(conn, requested)
    conn.execute(_CREATE_TABLE)
    done = {a.version: a for a in _applied(conn)}
    applied: list[int] = []
    for migration in discover(chosen):
        previous = done.get(migration.version)
        if previous is not None:
            if not migration.matches(previous.checksum):
                logger.warning(
                    "applied migration file has changed since; not re-applied",
                    extra={"version": migration.version, "file": str(migration.path)},
                )
            continue
        record = (
            "INSERT INTO schema_migrations (version, name, mode, checksum) VALUES (%s, %s, %s, %s)"
        )
        params = (migration.version, migration.name, chosen.value, migration.checksum)
        if migration.transactional:
            with conn.transaction():
                _run(conn, migration)
                conn.execute(record, params)
        else:
            _run(conn, migration)
            conn.execute(record, params)
        applied.append(migration.version)
        logger.info(
            "migration applied",
            extra={"version": migration.version, "migration": migration.name, "mode": chosen.value},
        )
    _, ts_version = _timescale_state(conn)
    return MigrationResult(
        mode=chosen,
        timescaledb_version=ts_version if chosen is Mode.TIMESCALE else None,
        applied=applied,
        already_applied=sorted(done),
    )


def status(conn: psycopg.Connection[Any]) -> SchemaStatus:
    """Report applied / pending / edited migrations without changing anything."""
    applied = _applied(conn)
    recorded = _recorded_mode(applied)
    available, installed = _timescale_state(conn)
    expected_mode = recorded or (Mode.TIMESCALE if available else Mode.PLAIN)
    files = {m.version: m for m in discover(expected_mode)}
    done = {a.version for a in applied}
    return SchemaStatus(
        mode=recorded,
        timescaledb_available=available,
        timescaledb_version=installed,
        applied=applied,
        pending=sorted(set(files) - done),
        modified=sorted(
            a.version
            for a in applied
            if a.version in files and not files[a.version].matches(a.checksum)
        ),
    )


def set_retention(conn: psycopg.Connection[Any], table: str, keep: timedelta | None) -> None:
    """Replace the retention policy of one hypertable (`keep=None` removes it: keep forever).

    Retention periods are deployment policy, not constants: the legal minimum for original
    monitoring records is UNCONFIRMED (README "Storage"). TimescaleDB mode only.
    """
    if table not in RETENTION_TABLES:
        raise SchemaError(
            f"no retention for {table!r}; choose one of {', '.join(RETENTION_TABLES)}"
        )
    if keep is not None and keep <= timedelta(0):
        raise SchemaError("retention must be a positive duration")
    if _recorded_mode(_applied(conn)) is not Mode.TIMESCALE:
        raise SchemaError("retention policies exist only in timescale mode (plain mode keeps all)")
    with conn.transaction():
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
        if keep is not None:
            conn.execute("SELECT add_retention_policy(%s::regclass, %s::interval)", (table, keep))
    logger.info("retention policy set", extra={"table": table, "keep": str(keep)})
