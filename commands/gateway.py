"""`stackwatch gateway run`: the HJ 212 TCP gateway as a standalone process.

The gateway itself lives in `streams/` (it uses aiokafka); it is imported only when the
command runs, so the other commands never load a Kafka client.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from stackwatch.registry import StackRegistry
from stackwatch.settings import Settings, get_settings

app = typer.Typer(help="HJ 212 TCP gateway: loggers in, raw frames to Kafka.")
console = Console(stderr=True)
log = logging.getLogger("stackwatch.gateway")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)


def load_registry(path: Path | None) -> StackRegistry:
    """The stack registry from YAML; without a file, the built-in demo scenario's stacks.

    The demo registry is what `stackwatch simulate` (scenario `demo`) sends, so the demo works
    without configuration; production sets STACKWATCH_GATEWAY__REGISTRY_FILE.
    """
    if path is not None:
        return StackRegistry.load(path)
    from simulators.scenario import ScenarioError, load_scenario

    try:
        registry = load_scenario("demo").registry()
    except ScenarioError as exc:
        log.warning("no demo registry; every MN is unknown", extra={"error": str(exc)})
        return StackRegistry()
    log.warning(
        "no registry file: using the demo scenario's stacks "
        "(set STACKWATCH_GATEWAY__REGISTRY_FILE)",
        extra={"stacks": len(registry.stacks)},
    )
    return registry


def raise_fd_limit(max_connections: int) -> int:
    """Lift the soft open-files limit towards `max_connections` + headroom (up to the hard limit).

    Each logger holds one socket; the common default soft limit (1024) would cap a regional
    centre's gateway well below `max_connections`. Returns the soft limit now in force.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 256
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit", extra={"error": str(exc)})
    if soft < max_connections:
        log.warning(
            "open-files limit below max_connections",
            extra={"limit": soft, "max_connections": max_connections},
        )
    return soft


async def serve(settings: Settings, registry: StackRegistry, metrics_port: int | None) -> None:
    """Run the gateway until SIGINT/SIGTERM, then shut it down gracefully."""
    from prometheus_client import CollectorRegistry, start_http_server

    from embedded import resolve_kafka_bootstrap
    from streams.gateway import Gateway
    from streams.gateway_commands import consume_commands

    raise_fd_limit(settings.gateway.max_connections)
    metrics = CollectorRegistry()
    gateway = Gateway.from_settings(
        settings, registry, bootstrap=resolve_kafka_bootstrap(settings), metrics_registry=metrics
    )
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.web_host, registry=metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    commands = asyncio.create_task(
        consume_commands(gateway, resolve_kafka_bootstrap(settings),
                         settings.topics.gateway_commands, stop)
    )
    console.print(
        f"gateway listening on {settings.gateway.host}:{gateway.port} "
        f"→ {settings.topics.raw} (Ctrl-C stops)",
        highlight=False,
    )
    try:
        await stop.wait()
    finally:
        await asyncio.gather(commands, return_exceptions=True)
        await gateway.stop()
        stats = gateway.stats
        console.print(
            f"gateway stopped: {stats.frames_received} frames, {stats.frames_accepted} accepted, "
            f"{stats.frames_rejected} rejected, {stats.acks_sent} answered",
            highlight=False,
        )


@app.command()
def run(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default STACKWATCH_GATEWAY__HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default STACKWATCH_GATEWAY__PORT).")
    ] = None,
    registry_file: Annotated[
        Path | None,
        typer.Option("--registry", help="YAML stack registry (MN, password, sector, process)."),
    ] = None,
    auto_register: Annotated[
        bool | None,
        typer.Option(
            "--auto-register/--no-auto-register",
            help="Accept unknown MNs (replay of foreign captures).",
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap (default: settings or embedded Tansu).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (off by default).")
    ] = None,
) -> None:
    """Accept HJ 212 loggers over TCP and produce every frame to the raw topic."""
    base = get_settings()
    overrides = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "registry_file": registry_file,
            "auto_register": auto_register,
        }.items()
        if value is not None
    }
    try:
        gateway_settings = base.gateway.model_copy(update=overrides)
        settings = base.model_copy(
            update={
                "gateway": type(base.gateway).model_validate(gateway_settings.model_dump()),
                **({"kafka_bootstrap": bootstrap} if bootstrap else {}),
            }
        )
        registry = load_registry(settings.gateway.registry_file)
    except (OSError, ValidationError, ValueError, yaml.YAMLError) as exc:
        raise _fail(f"cannot load configuration: {exc}") from exc
    try:
        asyncio.run(serve(settings, registry, metrics_port))
    except Exception as exc:  # startup failures (port in use, broker unreachable, ...)
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
