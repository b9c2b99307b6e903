"""Runs the whole pipeline on one machine: the one-command demo.

Order matters and is the reverse on the way down (Tansu must outlive its clients, see the
Services section of the README):

1. embedded services (Tansu broker, PostgreSQL 18) in the data directory;
2. database migrations; the scenario's stack registry written for the gateway and sinks;
3. the stream worker and the sinks as child processes (`stackwatch worker run`,
   `stackwatch sinks run`), each with its own metrics port;
4. the HJ 212 gateway in this process, then the simulated data loggers over real TCP;
5. the live view follows the hour and alerts topics until the duration ends or Ctrl-C.

Shutdown: simulators, gateway, then SIGTERM to the children (SIGKILL after a grace period),
then the services this run started. Nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.live import Live

from commands.live_view import LiveState, TopicFollower, cancel_quietly, render
from embedded import running_services
from embedded.children import DEMO_ENV, Child, spawn_child, stop_child
from embedded.ports import free_port
from embedded.prometheus import (
    RULES_FILE,
    RunningPrometheus,
    prometheus_binary,
    start_prometheus,
)
from stackwatch.compliance import Severity
from stackwatch.models import Rule
from stackwatch.settings import Settings
from streams.gateway import Gateway

logger = logging.getLogger(__name__)


class DemoSummary(BaseModel):
    """What a demo run produced (printed at the end; `--summary-json` writes it)."""

    duration_s: float
    frames_sent: int
    hours_per_stack: dict[str, int]
    alerts: dict[str, int] = Field(description="'rule/kind' → count")
    alarms_raised: int
    offline_raised: int
    children_exit_codes: dict[str, int | None]


def _migrate(dsn: str) -> str:
    from sinks.db import connect
    from sinks.schema import migrate

    with connect(dsn) as conn:
        result = migrate(conn)
    return str(getattr(result, "mode", "plain"))


def _start_demo_prometheus(
    data_dir: Path, targets: list[str], console: Console
) -> RunningPrometheus | None:
    """Prometheus scraping the demo's processes, when Debian's binary is installed."""
    binary = prometheus_binary()
    if binary is None:
        console.print("prometheus: not installed (apt-get install prometheus), not started")
        return None
    rules = [RULES_FILE] if RULES_FILE.exists() else []
    try:
        running = start_prometheus(binary, data_dir, targets, scrape_s=5.0, rule_files=rules)
    except (OSError, RuntimeError) as exc:
        console.print(f"prometheus: could not start ({exc})")
        return None
    console.print(
        f"prometheus: {running.url} (scraping worker and sinks"
        f"{', pipeline alert rules loaded' if rules else ''})"
    )
    return running


async def run_demo(
    settings: Settings,
    *,
    scenario: str = "demo",
    duration_s: float | None = 120.0,
    speed: float | None = None,
    console: Console | None = None,
) -> DemoSummary:
    """Run the demo for `duration_s` wall seconds (None = until cancelled)."""
    from simulators.clock import SimClock
    from simulators.runner import TcpSink, run_simulators
    from simulators.scenario import load_scenario

    console = console or Console(stderr=True)
    data_dir = settings.resolved_data_dir()
    log_dir = data_dir / "logs"
    sc = load_scenario(scenario)
    registry = sc.registry()
    registry_file = data_dir / "registry.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    registry.dump(registry_file)
    pace = float(speed if speed is not None else (sc.speed if sc.speed != "fast" else 60.0))
    started = time.monotonic()
    children: list[Child] = []
    with running_services(data_dir, kafka=True, postgres=True) as endpoints:
        assert endpoints.postgres_dsn is not None
        mode = await asyncio.to_thread(_migrate, endpoints.postgres_dsn)
        console.print(
            f"services: Kafka (Tansu) {endpoints.kafka_bootstrap}, PostgreSQL 18 "
            f"({mode} mode, no TimescaleDB here)"
        )
        env = {
            **os.environ,
            **DEMO_ENV,
            "STACKWATCH_KAFKA_BOOTSTRAP": str(endpoints.kafka_bootstrap),
            "STACKWATCH_DATABASE_URL": endpoints.postgres_dsn,
            "STACKWATCH_DATA_DIR": str(data_dir),
            "STACKWATCH_GATEWAY__REGISTRY_FILE": str(registry_file),
            "STACKWATCH_BROKER_PROFILE": settings.broker_profile,
        }
        ports = {name: free_port() for name in ("worker", "sinks", "worker_web", "sinks_web")}
        prometheus: RunningPrometheus | None = None
        try:
            for name in ("worker", "sinks"):
                child_env = {
                    **env,
                    "STACKWATCH_METRICS_PORT": str(ports[name]),
                    "STACKWATCH_WEB_PORT": str(ports[f"{name}_web"]),
                }
                children.append(spawn_child(name, [name, "run"], child_env, log_dir))
            console.print(
                f"metrics: worker http://127.0.0.1:{ports['worker']}/metrics, "
                f"sinks http://127.0.0.1:{ports['sinks']}/metrics; logs in {log_dir}"
            )
            prometheus = await asyncio.to_thread(
                _start_demo_prometheus,
                data_dir / "prometheus",
                [f"127.0.0.1:{ports['worker']}", f"127.0.0.1:{ports['sinks']}"],
                console,
            )
            summary = await _run_live(
                settings.model_copy(
                    update={
                        "kafka_bootstrap": endpoints.kafka_bootstrap,
                        "gateway": settings.gateway.model_copy(
                            update={"port": 0, "registry_file": registry_file}
                        ),
                    }
                ),
                registry_file,
                sc,
                pace,
                duration_s,
                console,
                children,
                SimClock,
                TcpSink,
                run_simulators,
            )
        finally:
            if prometheus is not None:
                prometheus.stop()
            for child in children:
                stop_child(child)
    summary.children_exit_codes = {c.name: c.exit_code for c in children}
    summary.duration_s = round(time.monotonic() - started, 1)
    return summary


async def _run_live(
    settings: Settings,
    registry_file: Path,
    sc: Any,
    pace: float,
    duration_s: float | None,
    console: Console,
    children: list[Child],
    sim_clock: Callable[..., Any],
    tcp_sink: Callable[..., Any],
    run_simulators: Callable[..., Any],
) -> DemoSummary:
    from stackwatch.registry import StackRegistry

    registry = StackRegistry.load(registry_file)
    state = LiveState(registry=registry)
    assert settings.kafka_bootstrap is not None
    follower = TopicFollower(
        settings.kafka_bootstrap, settings.topics.hour, settings.topics.alerts, state
    )
    gateway = Gateway.from_settings(settings, registry)
    await gateway.start()
    origin = sc.resolved_start()
    sims = sc.simulators(origin)
    sink = tcp_sink("127.0.0.1", gateway.port)
    end = origin + timedelta(seconds=duration_s * pace) if duration_s is not None else None
    frames = {"n": 0}

    def on_frame(_: Any) -> None:
        frames["n"] += 1

    sim_task = asyncio.create_task(
        run_simulators(
            sims, sink, start=origin, end=end, clock=sim_clock(origin, pace), on_frame=on_frame
        )
    )
    follow_task = asyncio.create_task(follower.run())
    console.print(
        f"demo: scenario {sc.name}, {len(sims)} stacks, simulated from {origin:%Y-%m-%d %H:%M} "
        f"at {pace:g}x; gateway 127.0.0.1:{gateway.port}; Ctrl-C stops everything."
    )
    began = time.monotonic()
    last_frames, last_t = 0, began
    rate = 0.0
    try:
        with (
            Live(render(state, 0.0, ""), console=console, refresh_per_second=2, transient=False)
            if console.is_terminal
            else contextlib.nullcontext() as live
        ):
            while duration_s is None or time.monotonic() - began < duration_s:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                rate = (frames["n"] - last_frames) / max(now - last_t, 1e-6)
                last_frames, last_t = frames["n"], now
                for child in children:
                    if child.proc.poll() is not None:
                        raise RuntimeError(
                            f"{child.name} exited with {child.proc.returncode}; "
                            f"see its log in {Path(child.log.name)}"
                        )
                footer = f"{now - began:.0f}s elapsed, {frames['n']} frames sent"
                if live is not None:
                    live.update(render(state, rate, footer))
                elif int(now - began) % 15 == 0:
                    console.print(_plain_status(state, footer))
            # Let the pipeline finish what the simulators already sent.
            await asyncio.sleep(3.0)
    finally:
        await cancel_quietly(sim_task)
        await sink.close()
        await gateway.stop()
        await cancel_quietly(follow_task)
    if not console.is_terminal:
        console.print(render(state, rate, f"{frames['n']} frames sent"))
    return _summary(state, frames["n"])


def _plain_status(state: LiveState, footer: str) -> str:
    hours = sum(len(v) for v in state.hours_seen.values())
    alerts = sum(n for (_, kind), n in state.alert_counts.items() if kind == "raise")
    return f"{footer}; {hours} stack-hours closed; {alerts} alerts raised"


def _summary(state: LiveState, frames: int) -> DemoSummary:
    counts = {f"{rule}/{kind}": n for (rule, kind), n in sorted(state.alert_counts.items())}
    return DemoSummary(
        duration_s=0.0,
        frames_sent=frames,
        hours_per_stack={sid: len(h) for sid, h in sorted(state.hours_seen.items())},
        alerts=counts,
        alarms_raised=state.raised_by_severity[Severity.ALARM.value]
        + state.raised_by_severity[Severity.CRITICAL.value],
        offline_raised=state.alert_counts.get((Rule.OFFLINE.value, "raise"), 0),
        children_exit_codes={},
    )
