"""`stackwatch simulate` and `stackwatch replay`: feed the gateway like real data loggers do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from stackwatch.registry_hash import CAPTURE_SCRYPT_N
from stackwatch.settings import get_settings

app = typer.Typer(no_args_is_help=True)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def parse_gateway(value: str | None) -> tuple[str, int]:
    """'host:port' (or ':port', or None = settings) → (host, port)."""
    from simulators.client import parse_hostport

    settings = get_settings()
    if not value:
        return settings.gateway.host, settings.gateway.port
    return parse_hostport(value, default_host=settings.gateway.host)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
        TaskProgressColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=err, transient=False,
    )


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="demo | national | PATH")] = (
        "demo"),
    speed: Annotated[float | None, typer.Option(help="Simulated seconds per wall second.")] = (
        None),
    fast: Annotated[bool, typer.Option("--fast", help="No pacing (backfill).")] = False,
    duration: Annotated[str | None, typer.Option(
        help="Run time, e.g. 90s: wall time when paced, simulated span with --fast.")] = None,
    gateway: Annotated[str | None, typer.Option(help="host:port of the HJ 212 gateway.")] = None,
    write_registry: Annotated[Path | None, typer.Option(
        help="Write the scenario's stack registry (YAML) here, then run.")] = None,
    registry_only: Annotated[bool, typer.Option(
        "--registry-only", help="Only write the registry, do not run.")] = False,
    stacks: Annotated[int | None, typer.Option(help="Stack count of generated scenarios.")] = None,
    start: Annotated[str | None, typer.Option(help="Simulated start: ISO time or 'now'.")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Write frames to this file (one per line) instead of sending them.")] = None,
) -> None:
    """Run a scenario's simulated data loggers against the gateway (HJ 212 over TCP)."""
    from simulators.clock import SimClock
    from simulators.events import parse_duration
    from simulators.runner import FrameSink, MemorySink, TcpSink, run_simulators
    from simulators.scenario import ScenarioError, load_scenario, parse_scenario

    try:
        sc = load_scenario(scenario, count=stacks)
        if start is not None:
            data = sc.model_dump(mode="python")
            data["start"] = "now" if start == "now" else datetime.fromisoformat(start)
            sc = parse_scenario(data, source="--start")
        span = parse_duration(duration) if duration else None
        host, port = parse_gateway(gateway)
    except (ScenarioError, ValueError) as e:
        raise _fail(str(e)) from None
    if write_registry is not None:
        sc.registry().dump(write_registry)
        err.print(f"registry of {len(sc.all_stacks())} stacks written to {write_registry}")
        if registry_only:
            return
    pace: float | None = None if fast or sc.speed == "fast" else (
        speed if speed is not None else float(sc.speed))
    if pace is not None and pace <= 0:
        raise _fail("--speed must be > 0")
    origin = sc.resolved_start()
    # --duration is wall time when paced (90s at 60x = 90 simulated minutes), simulated with --fast.
    sim_span = (span if pace is None else span * pace) if span is not None else sc.duration
    if pace is None and sim_span is None:
        raise _fail("--fast needs --duration (simulated span) or a scenario duration")
    end = origin + sim_span if sim_span is not None else None
    sims = sc.simulators(origin)
    sink: FrameSink = (
        MemorySink() if output is not None else TcpSink(host, port).answer_history_for(sims)
    )
    err.print(
        f"scenario [bold]{sc.name}[/]: {len(sims)} stacks from {origin.isoformat()} "
        f"{'fast' if pace is None else f'at {pace:g}x'}"
        + (f" until {end.isoformat()}" if end else " (Ctrl-C to stop)")
        + ("" if output else f" -> {host}:{port}")
    )
    total = int((end - origin).total_seconds()) if end else None

    async def main() -> Any:
        with _progress() as progress:
            task = progress.add_task("simulating", total=total, info="")
            counter = {"n": 0, "shown": 0.0}

            def on_frame(frame: Any) -> None:
                counter["n"] += 1
                now = time.monotonic()
                if now - counter["shown"] >= 0.2:  # keep the terminal cheap at 1000s of frames/s
                    counter["shown"] = now
                    progress.update(task, completed=(frame.at - origin).total_seconds(),
                                    info=f"{counter['n']} frames, sim {frame.at:%m-%d %H:%M}")

            try:
                stats = await run_simulators(sims, sink, start=origin, end=end,
                                             clock=SimClock(origin, pace), on_frame=on_frame)
            finally:
                await sink.close()
            if total is not None:
                progress.update(task, completed=total, info=f"{stats.frames} frames")
            return stats

    try:
        stats = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("stopped")
        stats = None
    if output is not None and isinstance(sink, MemorySink):
        with output.open("w", encoding="utf-8", newline="") as fh:
            for frame in sorted(sink.frames, key=lambda f: f.at):
                fh.write(frame.text if frame.text.endswith("\r\n") else frame.text + "\r\n")
        err.print(f"{len(sink.frames)} frames written to {output}")
    if stats is None:
        return
    verb = "generated" if output is not None else "sent"
    err.print(f"{verb} {stats.frames} frames: " + ", ".join(
        f"CN {cn}: {n}" for cn, n in sorted(stats.by_cn.items())))


def _print_inferred(registry: Any) -> None:
    """What the capture showed about the loggers (counts per inferred setting)."""
    from collections import Counter

    from rich.table import Table

    table = Table(title="inferred from the traffic", show_lines=False)
    for column in ("system (ST)", "MinInterval", "label", "pressure unit", "loggers"):
        table.add_column(column)
    rows = Counter(
        (s.system_type, s.min_interval_min, s.interval_label, s.pressure_unit)
        for s in registry.stacks
    )
    for (st, interval, label, unit), n in sorted(rows.items(), key=lambda kv: -kv[1]):
        table.add_row(str(st or "?"), f"{interval} min" if interval else "?",
                      label or "default", unit or "?", str(n))
    err.print(table)


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(
        help="HJ 212 log/capture file(s), replayed as one recording in the order given; "
        "or one .csv export.")],
    speed: Annotated[float, typer.Option(help="Replay speed (× original).")] = 1.0,
    fast: Annotated[bool, typer.Option("--fast", help="As fast as possible.")] = False,
    shift_to: Annotated[str | None, typer.Option(
        help="Move timestamps so the recording starts at NOW or an ISO time.")] = None,
    gateway: Annotated[str | None, typer.Option(help="host:port of the HJ 212 gateway.")] = None,
    write_registry: Annotated[Path | None, typer.Option(
        help="Write a registry of the recording's MNs with the settings their traffic shows "
        "(system, intervals, interval label, pressure unit); sector/process are placeholders "
        "marked auto.")] = None,
    registry: Annotated[Path | None, typer.Option(
        help="Registry for CSV exports that name stacks instead of MNs.")] = None,
    concurrency: Annotated[int, typer.Option(help="Max simultaneous logger connections.")] = 512,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and summarise only.")] = False,
) -> None:
    """Replay recorded HJ 212 traffic (or a CSV export) to the gateway, one connection per MN."""
    from simulators.replay import ReplayError, load_replays, registry_for, replay, statistics_of
    from stackwatch.beijing_time import CST
    from stackwatch.registry import StackRegistry

    try:
        reg = StackRegistry.load(registry) if registry is not None else None
        log = load_replays(files, registry=reg)
        host, port = parse_gateway(gateway)
        if speed <= 0:
            raise ValueError("--speed must be > 0")
        shift: timedelta | None = None
        if shift_to is not None:
            target = datetime.now(CST) if shift_to.upper() == "NOW" else datetime.fromisoformat(
                shift_to)
            target = target if target.tzinfo else target.replace(tzinfo=CST)
            if log.start is None:
                raise ValueError("the recording has no DataTime to shift from")
            shift = timedelta(seconds=round((target - log.start).total_seconds()))
    except (ReplayError, ValueError, OSError) as e:
        raise _fail(str(e)) from None
    summary = statistics_of(log)
    err.print(f"{log.source}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    for problem in log.errors[:10]:
        err.print(f"  [yellow]{problem}[/]")
    if len(log.errors) > 10:
        err.print(f"  ... {len(log.errors) - 10} more problems")
    if write_registry is not None:
        inferred = registry_for(log)
        inferred.dump(write_registry, scrypt_n=CAPTURE_SCRYPT_N)  # the capture holds the PWs
        err.print(f"registry of {len(inferred.stacks)} loggers written to {write_registry}")
        _print_inferred(inferred)
    if dry_run:
        return

    async def main() -> Any:
        with _progress() as progress:
            task = progress.add_task("replaying", total=len(log.frames), info="")
            advance: Callable[[Any], None] = lambda _f: progress.advance(task)  # noqa: E731
            return await replay(log.frames, host, port, speed=None if fast else speed,
                                shift=shift, concurrency=concurrency, on_frame=advance)

    try:
        stats = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("stopped")
        return
    err.print(f"replayed {stats.frames} frames ({stats.invalid} invalid, sent verbatim) "
              f"over {stats.connections} connections to {host}:{port}")
