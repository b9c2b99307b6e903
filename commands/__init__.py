"""The `stackwatch` command line.

Each command group lives in its own module under `commands/` and is registered here.
"""

from __future__ import annotations

import typer

from commands.alerts import app as alerts_app
from commands.bench import app as bench_app
from commands.db import app as db_app
from commands.demo import app as demo_app
from commands.gateway import app as gateway_app
from commands.history import app as history_app
from commands.hj212 import app as hj212_app
from commands.limits import app as limits_app
from commands.registry import app as registry_app
from commands.report import app as report_app
from commands.services import app as services_app
from commands.simulate import app as simulate_app
from commands.sinks import app as sinks_app
from commands.worker import app as worker_app
from stackwatch.logging import configure_logging
from stackwatch.settings import get_settings

app = typer.Typer(
    name="stackwatch",
    help="Streaming CEMS pipeline: HJ 212 ingest, HJ 75 averaging, ultra-low limits, alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Configure logging from settings before any command runs."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


# Command groups: one line each (keep alphabetical).
app.add_typer(alerts_app, name="alerts")
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")
app.add_typer(demo_app)  # no name: adds the top-level `demo` command
app.add_typer(gateway_app, name="gateway")
app.add_typer(history_app, name="history")
app.add_typer(hj212_app, name="hj212")
app.add_typer(limits_app, name="limits")
app.add_typer(registry_app, name="registry")
app.add_typer(report_app, name="report")
app.add_typer(services_app, name="services")
app.add_typer(simulate_app)  # no name: adds the top-level `simulate` and `replay` commands
app.add_typer(sinks_app, name="sinks")
app.add_typer(worker_app, name="worker")


def main() -> None:
    """Console-script entry point."""
    app()
