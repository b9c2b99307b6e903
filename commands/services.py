"""`stackwatch services up|status|down`: the embedded Tansu, PostgreSQL 18 and PGlite.

The servers keep running after `up` returns; other stackwatch commands find them through
the state file in the data directory (Settings.data_dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from embedded import ServiceError, service_status, start_services, stop_services
from stackwatch.settings import get_settings

app = typer.Typer(help="Embedded servers: Tansu (Kafka), PostgreSQL 18, PGlite-TimescaleDB.")
console = Console()


def _say(text: str) -> None:
    """Print a line whole (no wrapping, no highlighting) so URLs can be copied."""
    console.print(text, highlight=False, soft_wrap=True)


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (default: STACKWATCH_DATA_DIR or .stackwatch)."
    ),
]


def _data_dir(data_dir: Path | None) -> Path:
    return (data_dir or get_settings().data_dir).expanduser().resolve()


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(code=1)


@app.command()
def up(
    data_dir: DataDirOption = None,
    kafka: Annotated[bool, typer.Option("--kafka/--no-kafka", help="Start Tansu.")] = True,
    postgres: Annotated[
        bool, typer.Option("--postgres/--no-postgres", help="Start PostgreSQL 18.")
    ] = True,
    timescale: Annotated[
        bool, typer.Option("--timescale", help="Also start PGlite-TimescaleDB (node).")
    ] = False,
) -> None:
    """Start the servers on 127.0.0.1 (free ports) and record them in the data directory."""
    path = _data_dir(data_dir)
    try:
        endpoints = start_services(path, kafka=kafka, postgres=postgres, timescale=timescale)
    except (ServiceError, OSError) as exc:
        raise _fail(exc) from exc
    if endpoints.kafka_bootstrap:
        _say(f"kafka bootstrap  {endpoints.kafka_bootstrap}")
    if endpoints.postgres_dsn:
        _say(f"postgres         {endpoints.postgres_dsn}")
    if endpoints.timescale_dsn:
        _say(f"timescale        {endpoints.timescale_dsn}  (psycopg: prepare_threshold=None)")
    _say(f"state            {path / 'services.json'}")


@app.command()
def status(data_dir: DataDirOption = None) -> None:
    """Show each recorded server's address, PID and health; exit 1 if any is unhealthy."""
    path = _data_dir(data_dir)
    try:
        rows = service_status(path)
    except (ServiceError, OSError) as exc:
        raise _fail(exc) from exc
    if not rows:
        console.print(f"no services recorded in {path}", highlight=False)
        return
    table = Table(title=f"stackwatch services ({path})", caption=f"logs: {path / 'logs'}")
    for column in ("service", "address", "pid", "health", "url"):
        table.add_column(column, overflow="fold")
    for row in rows:
        health = (
            "[green]healthy[/green]"
            if row.healthy
            else ("[yellow]unhealthy[/yellow]" if row.running else "[red]not running[/red]")
        )
        table.add_row(row.name, row.address, str(row.pid), health, row.url)
    console.print(table)
    if not all(row.healthy for row in rows):
        raise typer.Exit(code=1)


@app.command()
def down(data_dir: DataDirOption = None) -> None:
    """Stop every recorded server by PID and wait until its port is released."""
    path = _data_dir(data_dir)
    try:
        stopped = stop_services(path)
    except (ServiceError, OSError) as exc:
        raise _fail(exc) from exc
    console.print(
        f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", highlight=False
    )
