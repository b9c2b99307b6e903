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

from commands import options
from stackwatch.settings import get_settings

app = typer.Typer(help="Stream worker: raw frames → readings → aggregates and alerts.")
console = Console(stderr=True)
log = logging.getLogger("stackwatch.worker")


@app.command()
def run(
    bootstrap: options.BootstrapOption = None,
    web_port: Annotated[int | None, typer.Option(help="Faust web port.")] = None,
    metrics_port: options.MetricsPortOption = None,
    app_id: Annotated[
        str, typer.Option(help="Faust app id = consumer group and changelog topic prefix.")
    ] = "stackwatch-worker",
    registry_file: Annotated[
        Path | None, typer.Option("--registry", help="YAML stack registry.")
    ] = None,
    data_dir: options.FaustDataDirOption = None,
    log_level: options.LogLevelOption = "info",
) -> None:
    """Run the stream worker until SIGTERM/SIGINT (graceful: offsets and changelog flushed)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from commands.gateway import load_registry
    from embedded import ServiceError, resolve_kafka_bootstrap
    from streams.app import create_app

    settings = options.with_overrides(
        get_settings(),
        bootstrap=bootstrap,
        metrics_port=metrics_port,
        registry_file=registry_file,
        web_port=web_port,
    )
    try:
        registry = load_registry(settings.gateway.registry_file)
        broker = resolve_kafka_bootstrap(settings)
    except (OSError, ValidationError, yaml.YAMLError, ServiceError) as exc:
        raise options.fail(exc, console, soft_wrap=False) from exc
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
    worker = options.faust_worker(
        worker_app.app, log_level=log_level, log_format=settings.log_format
    )
    worker.execute_from_commandline()

