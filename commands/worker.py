"""`stackwatch worker run`: the Faust stream worker (decode, process, alert commands, timer).

The worker lives in `streams/` (Faust); it is imported only when the command runs, so the
other commands never load a Kafka client. Configuration comes from settings
(`STACKWATCH_*`); the options below override the most common fields.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from stackwatch.settings import get_settings

app = typer.Typer(help="Stream worker: raw frames → readings → aggregates and alerts.")
console = Console(stderr=True)
log = logging.getLogger("stackwatch.worker")


@app.command()
def run(
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port (default: settings / embedded Tansu).")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="Faust web port.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port (0 = no endpoint).")
    ] = None,
    app_id: Annotated[
        str, typer.Option(help="Faust app id = consumer group and changelog topic prefix.")
    ] = "stackwatch-worker",
    registry_file: Annotated[
        Path | None, typer.Option("--registry", help="YAML stack registry.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Faust data directory.")] = None,
    log_level: Annotated[str, typer.Option(help="Faust worker log level.")] = "info",
) -> None:
    """Run the stream worker until SIGTERM/SIGINT (graceful: offsets and changelog flushed)."""
    import faust
    from prometheus_client import CollectorRegistry, start_http_server

    from commands.gateway import load_registry
    from embedded import ServiceError, resolve_kafka_bootstrap
    from streams.app import create_app

    base = get_settings()
    overrides: dict[str, object] = {}
    if web_port is not None:
        overrides["web_port"] = web_port
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if bootstrap:
        overrides["kafka_bootstrap"] = bootstrap
    if registry_file is not None:
        overrides["gateway"] = base.gateway.model_copy(update={"registry_file": registry_file})
    settings = base.model_copy(update=overrides)
    try:
        registry = load_registry(settings.gateway.registry_file)
        broker = resolve_kafka_bootstrap(settings)
    except (OSError, ValidationError, yaml.YAMLError, ServiceError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from exc
    metrics = CollectorRegistry()
    worker_app = create_app(
        settings,
        broker=broker,
        registry=registry,
        app_id=app_id,
        data_dir=data_dir,
        metrics_registry=metrics,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.web_host, registry=metrics)
    log.info(
        "worker starting",
        extra={
            "broker": broker,
            "app_id": app_id,
            "partitions": settings.topics.partitions,
            "metrics_port": settings.metrics_port,
            "web_port": settings.web_port,
        },
    )
    worker = faust.Worker(worker_app.app, loglevel=log_level)
    worker.execute_from_commandline()

