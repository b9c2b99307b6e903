"""`stackwatch db migrate|status|retention|logins`: the database schema (README "Storage")
and the login users of its roles.

The target database is, in order: `--dsn`; with `--timescale` STACKWATCH_TIMESCALE_URL or the
embedded PGlite-TimescaleDB; otherwise STACKWATCH_DATABASE_URL or the embedded PostgreSQL 18
started by `stackwatch services up`. `sinks` (psycopg) is imported inside the commands, so the
other commands never load a database driver.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from commands.options import fail
from stackwatch.settings import get_settings

app = typer.Typer(help="Database schema: migrations, status, retention (TimescaleDB), logins.")
console = Console()

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL/TimescaleDB DSN (default: settings, then the embedded server).",
        show_default=False,
    ),
]
TimescaleOption = Annotated[
    bool,
    typer.Option(
        "--timescale",
        help="Target STACKWATCH_TIMESCALE_URL or the embedded PGlite-TimescaleDB.",
    ),
]


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def resolve_dsn(dsn: str | None, timescale: bool) -> str:
    """DSN of the target database, or a clear error (see the module docstring for the order)."""
    from embedded import ServiceError, resolve_database_url, resolve_timescale_url

    if dsn:
        return dsn
    settings = get_settings()
    try:
        return resolve_timescale_url(settings) if timescale else resolve_database_url(settings)
    except (ServiceError, OSError) as exc:
        raise fail(str(exc)) from None


def _connect(dsn: str | None, timescale: bool) -> Any:
    import psycopg

    from sinks.db import DsnError, connect, redact_dsn

    target = resolve_dsn(dsn, timescale)
    try:
        return connect(target, autocommit=True)  # PGlite is detected after connecting
    except (psycopg.Error, DsnError) as exc:
        raise fail(f"cannot connect to {redact_dsn(target)}: {str(exc).strip()}") from None


@app.command()
def migrate(
    dsn: DsnOption = None,
    timescale: TimescaleOption = False,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="auto (TimescaleDB when the extension is there), plain or timescale.",
        ),
    ] = "auto",
    logins: Annotated[
        bool,
        typer.Option(
            "--logins",
            help="Then create/update the login users of settings `db` (see `stackwatch db "
            "logins`): one one-shot step for compose.",
        ),
    ] = False,
) -> None:
    """Apply pending migrations (idempotent; safe from several processes at once)."""
    from sinks import schema

    if mode not in ("auto", "plain", "timescale"):
        raise fail(f"--mode must be auto, plain or timescale, not {mode!r}")
    requested: schema.RequestedMode = "auto"
    if mode == "plain":
        requested = "plain"
    elif mode == "timescale":
        requested = "timescale"
    with _connect(dsn, timescale) as conn:
        try:
            result = schema.migrate(conn, requested)
        except schema.SchemaError as exc:
            raise fail(str(exc)) from None
    applied = ", ".join(f"{v:04d}" for v in result.applied) or "none (up to date)"
    version = f" (timescaledb {result.timescaledb_version})" if result.timescaledb_version else ""
    _say(f"mode: {result.mode.value}{version}")
    _say(f"applied: {applied}")
    if logins:
        _set_logins(dsn, timescale)


def _set_logins(dsn: str | None, timescale: bool) -> None:
    from dataclasses import replace

    import psycopg

    from sinks.roles import Login, LoginError, ensure_logins

    cfg = get_settings().db
    wanted = [
        login
        for login, password in (
            (Login(cfg.writer_user, "", "stackwatch_writer"), cfg.writer_password),
            (Login(cfg.reader_user, "", "stackwatch_reader"), cfg.reader_password),
        )
        if password is not None
        for login in [replace(login, password=password.get_secret_value())]
    ]
    if not wanted:
        raise fail(
            "no login to set: give STACKWATCH_DB__WRITER_PASSWORD and/or "
            "STACKWATCH_DB__READER_PASSWORD"
        )
    with _connect(dsn, timescale) as conn:
        try:
            done = ensure_logins(conn, wanted)
        except (LoginError, psycopg.Error) as exc:
            raise fail(f"logins: {str(exc).strip()}") from None
    for login in wanted:
        if login.user in done:
            _say(f"login {login.user}: member of {login.group}")


@app.command()
def logins(dsn: DsnOption = None, timescale: TimescaleOption = False) -> None:
    """Create or update the login users of the group roles (migration 0011) from settings:
    STACKWATCH_DB__WRITER_USER/_PASSWORD (sinks, dispatcher, ack API) and
    STACKWATCH_DB__READER_USER/_PASSWORD (Grafana). Run as a role that may create roles;
    re-run to change a password. A login without a password setting is left alone."""
    _set_logins(dsn, timescale)


@app.command()
def status(dsn: DsnOption = None, timescale: TimescaleOption = False) -> None:
    """Show the schema mode and applied / pending / edited migrations."""
    from sinks import schema

    with _connect(dsn, timescale) as conn:
        try:
            st = schema.status(conn)
        except schema.SchemaError as exc:
            raise fail(str(exc)) from None
    ts = st.timescaledb_version or ("available" if st.timescaledb_available else "not available")
    _say(f"mode: {st.mode.value if st.mode else 'not migrated'}   timescaledb: {ts}")
    table = Table("version", "name", "mode", "applied at", "state")
    for a in st.applied:
        state = "EDITED since applied" if a.version in st.modified else "applied"
        table.add_row(f"{a.version:04d}", a.name, a.mode.value, a.applied_at.isoformat(), state)
    for version in st.pending:
        table.add_row(f"{version:04d}", "", "", "", "pending")
    console.print(table)
    if st.pending:
        raise typer.Exit(code=2)  # scripts can tell "needs migrate" from "up to date"


@app.command()
def retention(
    table: Annotated[str, typer.Argument(help="raw_frames, readings or *_aggregates.")],
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="Drop chunks older than this.")
    ] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Remove the policy.")] = False,
    dsn: DsnOption = None,
    timescale: TimescaleOption = False,
) -> None:
    """Replace a hypertable's retention policy (TimescaleDB mode only).

    The defaults (raw frames 180 days, readings and minutes 730 days, hours and days kept) are
    not legal minimums; check the record-keeping rule that applies to the deployment.
    """
    from sinks import schema

    if (days is None) == (not forever):
        raise fail("give exactly one of --days N or --forever")
    keep = None if forever else timedelta(days=days or 0)
    with _connect(dsn, timescale) as conn:
        try:
            schema.set_retention(conn, table, keep)
        except schema.SchemaError as exc:
            raise fail(str(exc)) from None
    _say(f"{table}: " + ("kept forever" if keep is None else f"chunks dropped after {days} days"))
