"""`stackwatch sinks run`: the storage writer (topics → PostgreSQL/TimescaleDB) and its metrics.

The sinks' Faust app is `streams/sink_app.py`, its writers live in `sinks/` (psycopg); they are
imported only when the command runs, so the other commands never load a Kafka or database client.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from commands import options
from stackwatch.settings import get_settings

app = typer.Typer(help="Storage writer: every topic into the database, idempotently.")
console = Console(stderr=True)
log = logging.getLogger("stackwatch.sinks")


@app.command()
def run(
    bootstrap: options.BootstrapOption = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL DSN (default: STACKWATCH_DATABASE_URL / embedded PG)."),
    ] = None,
    metrics_port: options.MetricsPortOption = None,
    app_id: Annotated[
        str, typer.Option(help="Faust app id = consumer group of the writer.")
    ] = "stackwatch-sinks",
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Max records per database transaction.")
    ] = 500,
    batch_within: Annotated[
        float, typer.Option(min=0.01, help="Max seconds to wait to fill a batch.")
    ] = 1.0,
    migrate: Annotated[
        bool, typer.Option(help="Apply schema migrations at start (idempotent, locked).")
    ] = True,
    registry_file: Annotated[
        Path | None, typer.Option("--registry", help="YAML stack registry to sync into `stacks`.")
    ] = None,
    data_dir: options.FaustDataDirOption = None,
    log_level: options.LogLevelOption = "info",
) -> None:
    """Run the writer until SIGTERM/SIGINT. Offsets are committed only after the database
    commit; while the database is down the writer backs off and consumes nothing."""

    from commands.gateway import load_registry
    from embedded import ServiceError, resolve_database_url, resolve_kafka_bootstrap
    from sinks.db import DsnError, redact_dsn
    from streams.sink_app import create_sink_app

    settings = options.with_overrides(
        get_settings(), bootstrap=bootstrap, metrics_port=metrics_port, registry_file=registry_file
    )
    try:
        registry = load_registry(settings.gateway.registry_file)
        broker = resolve_kafka_bootstrap(settings)
        dsn = database_url or resolve_database_url(settings)
        shown_dsn = redact_dsn(dsn)
    except (OSError, ValidationError, yaml.YAMLError, ServiceError, DsnError) as exc:
        raise options.fail(exc, console, soft_wrap=False) from exc
    sink = create_sink_app(
        settings,
        broker=broker,
        dsn=dsn,
        registry=registry,
        app_id=app_id,
        data_dir=data_dir,
        batch_size=batch_size,
        batch_within_s=batch_within,
        migrate=migrate,
    )
    log.info(
        "sinks starting",
        extra={
            "broker": broker,
            "database": shown_dsn,
            "app_id": app_id,
            "batch_size": batch_size,
            "metrics_port": settings.metrics_port,
        },
    )
    worker = options.faust_worker(sink.app, log_level=log_level, log_format=settings.log_format)
    worker.execute_from_commandline()

