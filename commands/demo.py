"""`stackwatch demo`: the whole pipeline on this machine with the embedded services."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stackwatch.settings import get_settings

app = typer.Typer(help="Run the full pipeline locally with simulated plants.")
err = Console(stderr=True)


def _seconds(text: str) -> float:
    """'90', '90s', '2m', '1h' → seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    factor = units.get(text[-1:])
    number = text[:-1] if factor is not None else text
    try:
        value = float(number) * (factor or 1.0)
    except ValueError:
        raise typer.BadParameter(f"not a duration: {text!r} (e.g. 90s, 2m)") from None
    if value <= 0:
        raise typer.BadParameter("duration must be positive")
    return value


@app.command("demo")
def demo(
    duration: Annotated[
        str | None, typer.Option(help="Stop after this wall time (e.g. 90s, 5m); default: Ctrl-C.")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Simulated seconds per wall second (scenario default 60).")
    ] = None,
    scenario: Annotated[str, typer.Option(help="demo | national | PATH")] = "demo",
    summary_json: Annotated[
        Path | None, typer.Option(help="Write the run's summary (JSON) to this file.")
    ] = None,
) -> None:
    """Start Tansu + PostgreSQL 18, migrate, run gateway, worker, sinks and simulated plants."""
    from commands.supervisor import run_demo

    settings = get_settings()
    seconds = _seconds(duration) if duration is not None else None
    try:
        summary = asyncio.run(
            run_demo(settings, scenario=scenario, duration_s=seconds, speed=speed, console=err)
        )
    except KeyboardInterrupt:
        err.print("stopped: every process has been shut down")
        return
    err.print(
        f"done in {summary.duration_s:.0f}s: {summary.frames_sent} frames, "
        f"hours per stack {summary.hours_per_stack}, alarms {summary.alarms_raised}, "
        f"offline {summary.offline_raised}"
    )
    if summary_json is not None:
        summary_json.write_text(summary.model_dump_json(indent=2))
    failed = {k: v for k, v in summary.children_exit_codes.items() if v not in (0, None, -15)}
    if failed:
        err.print(f"[red]pipeline processes failed: {failed}[/]")
        raise typer.Exit(1)
