"""The `stackwatch` command line.

Each command group lives in its own module under `stackwatch/cli/` and is registered here.
"""

from __future__ import annotations

import typer

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


def main() -> None:
    """Console-script entry point."""
    app()
