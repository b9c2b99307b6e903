"""What the commands share: typer option aliases, the error exit, settings overrides.

One definition each, so every command spells `--bootstrap`, `--dsn`, `--metrics-port`, … with
the same help and resolves them into the settings the same way. Only `typer`, `rich` and the
settings are imported here, so importing it costs a command nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from stackwatch.settings import Settings

if TYPE_CHECKING:
    import faust

STDOUT = Console()

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka host:port (default: settings, then embedded Tansu).",
        show_default=False,
    ),
]
DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN (default: settings, then the embedded server).",
        show_default=False,
    ),
]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Prometheus /metrics port (0 = no endpoint).")
]
FaustDataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Faust data directory.")
]
LogLevelOption = Annotated[str, typer.Option("--log-level", help="Faust worker log level.")]


def fail(message: object, console: Console = STDOUT, *, soft_wrap: bool = True) -> typer.Exit:
    """Print `error: message` (whole on one line unless `soft_wrap=False`); the exit (code 1)
    for the caller to raise."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=soft_wrap)
    return typer.Exit(code=1)


def with_overrides(
    base: Settings,
    *,
    bootstrap: str | None = None,
    metrics_port: int | None = None,
    registry_file: Path | None = None,
    web_port: int | None = None,
) -> Settings:
    """`base` with the fields the command line gave (None or empty: keep the setting)."""
    overrides: dict[str, object] = {}
    if web_port is not None:
        overrides["web_port"] = web_port
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if bootstrap:
        overrides["kafka_bootstrap"] = bootstrap
    if registry_file is not None:
        overrides["gateway"] = base.gateway.model_copy(update={"registry_file": registry_file})
    return base.model_copy(update=overrides)


def faust_worker(app: faust.App, *, log_level: str, log_format: str) -> faust.Worker:
    """A Faust worker for a service: stackwatch's log format and level, no terminal spinner.

    Faust's spinner raises the root logger to DEBUG whenever the level asked for is WARNING or
    above (to spin on every record); every Faust and aiokafka send then built a debug record
    nobody printed (measured: ~5 % of the worker's samples at 300 frames/s, in the bench,
    which runs it at WARNING)."""
    import faust  # lazily: most commands never load Faust

    worker = faust.Worker(
        app, loglevel=log_level, logging_config=_faust_logging_config(log_format, log_level)
    )
    worker.spinner = None
    return worker


def _faust_logging_config(fmt: str, level: str) -> dict[str, object]:
    """Keep stackwatch's formatter (with the `extra` fields) when the Faust worker sets up
    logging; its default formatter drops them (attempt, error, retry delay, a stalled consumer's
    state, …)."""
    formatter = "JsonFormatter" if fmt == "json" else "ConsoleFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stackwatch": {"()": f"stackwatch.logging.{formatter}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "stackwatch",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }
