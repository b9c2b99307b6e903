"""A whole pipeline for fault tests: gateway, worker and sinks as real subprocesses.

The loggers of a deterministic scenario (three cement kilns, four hours and ten minutes of
minute data plus hourly data, an SO2 exceedance, a calibration hour and a 20-minute comm loss)
upload over TCP to `stackwatch gateway run`, which produces to Tansu; `stackwatch worker run`
and `stackwatch sinks run` carry the frames into a fresh PostgreSQL database. A test disturbs
one part mid-stream and compares the database with an undisturbed run (`snapshot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from embedded.children import Child, spawn_child, stop_child
from embedded.ports import free_port
from simulators.client import LoggerClient
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, decode_frame
from stackwatch.registry import StackInfo, StackRegistry
from tests.kafka_topics import create_topics

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 2
PASSWORD = "123456"
DAY0 = datetime(2026, 11, 2, tzinfo=CST)
MINUTES = 4 * 60 + 10  # hours 00–03 close once the 04:0x minutes arrive (hour grace 3 min)
SO2, NOX, DUST, O2 = "a21026", "a21002", "a34013", "a19001"
TOPICS = ["raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter",
          "gateway_commands"]

STACKS = [
    StackInfo(stack_id=f"fault-{name}", mn=f"MNFAULT{i:07d}", password=PASSWORD,
              sector="cement", process="kiln_tail", name=f"{name} kiln tail")
    for i, name in enumerate(["exceed", "calib", "commloss"], start=1)
]
EXCEED, CALIB, COMMLOSS = STACKS


@dataclass(frozen=True)
class Upload:
    """One frame a logger uploads and the QN its 9014 answer will carry."""

    mn: str
    qn: str
    text: str


def _so2(stack: StackInfo, minute: int) -> float:
    if stack is EXCEED and 60 <= minute < 120:  # hour 01 far above the 35 mg/m³ ultra-low limit
        return 60.0 + (minute % 5)
    if stack is CALIB and 120 <= minute < 180:  # hour 02: calibration, span gas reads high
        return 90.0
    return 20.0 + (minute % 7)


def _lost(stack: StackInfo, minute: int) -> bool:
    return stack is COMMLOSS and 130 <= minute < 150  # 02:10–02:29 off the network


def _nox(minute: int) -> float:
    return 40.0 + minute % 11


def minute_upload(stack: StackInfo, minute: int) -> Upload | None:
    """The 2051 frame of `minute` after DAY0 (None while the stack is off the network)."""
    t = DAY0 + timedelta(minutes=minute)
    if _lost(stack, minute):
        return None
    so2 = _so2(stack, minute)
    flag = "C" if stack is CALIB and 120 <= minute < 180 else "N"
    values = {
        SO2: {"Avg": so2, "Min": so2 - 1, "Max": so2 + 1},
        NOX: {"Avg": _nox(minute), "Min": 38.0, "Max": 52.0},
        DUST: {"Avg": 3.5, "Min": 3.0, "Max": 4.0},
        O2: {"Avg": 10.0, "Min": 9.8, "Max": 10.2},
    }
    flags = {code: flag for code in values}
    return _upload("2051", stack, t, values, flags, sent=t + timedelta(minutes=1))


def hour_upload(stack: StackInfo, hour: int) -> Upload:
    """The logger's own 2061 frame: the mean of the minutes it sent in that hour."""
    t = DAY0 + timedelta(hours=hour)
    minutes = [m for m in range(hour * 60, hour * 60 + 60) if not _lost(stack, m)]
    so2 = sum(_so2(stack, m) for m in minutes) / len(minutes)
    nox = sum(_nox(m) for m in minutes) / len(minutes)
    values = {SO2: {"Avg": round(so2, 3)}, NOX: {"Avg": round(nox, 3)}, DUST: {"Avg": 3.5},
              O2: {"Avg": 10.0}}
    return _upload("2061", stack, t, values, {c: "N" for c in values},
                   sent=t + timedelta(hours=1, seconds=20))


def _upload(cn: str, stack: StackInfo, t: datetime, values: dict[str, dict[str, float]],
            flags: dict[str, str], *, sent: datetime) -> Upload:
    (text,) = build_frames(cn, stack.mn, PASSWORD, t, values, flags=flags, ack=True, now=sent)
    qn = decode_frame(text.encode()).qn
    assert qn is not None
    return Upload(mn=stack.mn, qn=qn, text=text)


def scenario(minutes: int = MINUTES) -> dict[str, list[Upload]]:
    """Each logger's uploads in the order it sends them, for the first `minutes` of the day."""
    out: dict[str, list[Upload]] = {}
    for stack in STACKS:
        uploads: list[Upload] = []
        for minute in range(minutes):
            if minute and minute % 60 == 0:
                uploads.append(hour_upload(stack, minute // 60 - 1))
            up = minute_upload(stack, minute)
            if up is not None:
                uploads.append(up)
        out[stack.mn] = uploads
    return out


@dataclass
class Pipeline:
    """Gateway, worker and sinks of one run, on its own topics and database."""

    bootstrap: str
    dsn: str
    prefix: str
    tmp: Path
    gateway_port: int = field(default_factory=free_port)
    children: dict[str, Child] = field(default_factory=dict)
    sent: int = 0
    registry: StackRegistry = field(default_factory=lambda: StackRegistry(stacks=STACKS))
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    """Fixed /metrics ports per part (`gateway`, `worker`, `sinks`); others pick their own."""

    @property
    def topics(self) -> dict[str, str]:
        return {t: f"{self.prefix}.{t}" for t in TOPICS}

    @property
    def registry_file(self) -> Path:
        return self.tmp / "registry.yaml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
        env |= {f"STACKWATCH_TOPICS__{t.upper()}": n for t, n in self.topics.items()}
        env |= {
            "PYTHONPATH": str(REPO),
            "STACKWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "STACKWATCH_DATABASE_URL": self.dsn,
            "STACKWATCH_DATA_DIR": str(self.tmp / "data"),
            "STACKWATCH_BROKER_PROFILE": "tansu",
            "STACKWATCH_TOPICS__PARTITIONS": str(PARTITIONS),
            "STACKWATCH_GATEWAY__REGISTRY_FILE": str(self.registry_file),
            "STACKWATCH_STREAMS__TICK_INTERVAL_S": "1",
            "STACKWATCH_LOG_LEVEL": "INFO",
            # The scenario is a past day replayed at speed, as operators replay recorded data:
            # receipt is days after DataTime by design, so the clock-skew detector is off.
            "STACKWATCH_STREAMS__PROCESSOR__QUALITY__CLOCK_SKEW_TOLERANCE": "P3650D",
            # Runs are compared once the database is quiet; the end-of-input flush is a
            # wall-clock event that could land before or after that point, so it is off here
            # (tests/e2e/test_real_hours.py exercises it).
            "STACKWATCH_STREAMS__IDLE_FLUSH_S": "86400",
        }
        return env | self.extra_env

    def start(self, name: str) -> Child:
        """(Re)start one part: `gateway`, `worker` or `sinks`; `worker2`, `worker3`… are more
        members of the worker's consumer group (scale-out)."""
        group = self.prefix.replace(".", "-")
        metrics = self.metrics_ports
        gateway_metrics = (
            ["--metrics-port", str(metrics["gateway"])] if "gateway" in metrics else []
        )
        if name.startswith("worker"):
            args = ["worker", "run", "--app-id", f"{group}-worker",
                    "--web-port", str(free_port()),
                    "--metrics-port", str(metrics.get(name) or free_port()),
                    "--data-dir", str(self.tmp / f"faust-{name}")]
        else:
            args = {
                "gateway": ["gateway", "run", "--port", str(self.gateway_port),
                            *gateway_metrics],
                "sinks": ["sinks", "run", "--app-id", f"{group}-sinks",
                          "--metrics-port", str(metrics.get("sinks", 0))],
            }[name]
        env = self.env()
        if name == "sinks":
            env["STACKWATCH_WEB_PORT"] = str(free_port())
        child = spawn_child(name, args, env, self.tmp / "logs")
        self.children[name] = child
        return child

    async def start_all(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.registry.dump(self.registry_file)
        await create_topics(self.bootstrap, self.topics.values(), PARTITIONS)
        for name in ("worker", "sinks", "gateway"):
            self.start(name)
        await wait_port(self.gateway_port, self.children["gateway"])

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        child = self.children[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)
        child.proc.wait(30)
        child.log.close()

    def stop_all(self) -> None:
        order = ["gateway", *sorted(n for n in self.children if n.startswith("worker")), "sinks"]
        for name in order:
            child = self.children.get(name)
            if child is not None and not child.log.closed:
                stop_child(child)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.tmp / "logs").glob("*.log"))
        )

    async def feed(self, uploads: dict[str, list[Upload]], *, per_second: float,
                   before_send: Callable[[Upload], Any] | None = None,
                   on_sent: Callable[[], None] | None = None) -> None:
        """Every logger uploads its frames in order, each waiting for its 9014 (re-sending on
        a timeout, as HJ 212 loggers do), paced to about `per_second` frames in total."""
        delay = len(uploads) / per_second

        async def one(frames: list[Upload]) -> None:
            client = LoggerClient("127.0.0.1", self.gateway_port, mn=frames[0].mn,
                                  ack_timeout=3.0, retries=1000, backoff_initial=0.2,
                                  backoff_max=2.0)
            try:
                for up in frames:
                    if before_send is not None:
                        await before_send(up)
                    await client.send(up.text, ack=True, qn=up.qn)
                    self.sent += 1
                    if on_sent is not None:
                        on_sent()
                    await asyncio.sleep(delay)
            finally:
                await client.close()

        await asyncio.gather(*(one(frames) for frames in uploads.values()))


async def wait_port(port: int, child: Child, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert child.proc.poll() is None, f"{child.name} exited with {child.proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{child.name} does not listen on {port}")


# --------------------------------------------------------------------------- database

def fresh_database(server_dsn: str) -> str:
    """A new, empty database on the server of `server_dsn`; its DSN."""
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


def migrate(dsn: str) -> None:
    """Apply stackwatch's migrations to `dsn`."""
    from sinks.db import connect
    from sinks.schema import migrate as run_migrations

    with connect(dsn) as conn:
        run_migrations(conn)


# --------------------------------------------------------------------------- database view

# Per table: the columns that must be identical between runs. Left out: wall-clock columns
# (received_at, computed_at, updated_at, occurred_at) and `raw_frames` (an audit log of
# receptions: a re-sent frame is a second reception, compared separately as a set of texts).
SNAPSHOT_SQL = {
    "readings": "SELECT stack_id, factor, cn, data_time, value, min_value, max_value, cou, "
                "zs_value, zs_min, zs_max, flag, eflag, mn, qn, resent FROM readings "
                "ORDER BY 1, 2, 3, 4",
    **{
        f"{period}_aggregates": (
            f"SELECT stack_id, factor, period_start, mean, zs_mean, min, max, valid_count, "
            f"total_count, flag, valid, invalid_reason, mass_kg, ref_o2, source, revision"
            f"{', limit_mg_m3, limit_program' if period == 'hour' else ''} "
            f"FROM {period}_aggregates ORDER BY 1, 2, 3"
        )
        for period in ("minute", "hour", "day")
    },
    "alerts": "SELECT alert_id, stack_id, factor, rule, severity, state, first_seen, last_seen, "
              "cleared_at, peak_value, count, limit_value, ref_o2, evidence::text FROM alerts "
              "ORDER BY 1",
    "alert_events": "SELECT alert_id, seq, event, at, payload::text FROM alert_events "
                    "ORDER BY 1, 2",
    "dead_letters": "SELECT stage, reason, key, payload FROM dead_letters ORDER BY 1, 2, 3, 4",
    "raw_frame_texts": "SELECT DISTINCT verdict, text FROM raw_frames ORDER BY 1, 2",
}


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """The compared content of every table (empty lists while the schema is missing)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        for name, sql in SNAPSHOT_SQL.items():
            out[name] = conn.execute(sql).fetchall()
    return out


def counts(view: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    return {name: len(rows) for name, rows in view.items()}


def duplicates_of(dsn: str) -> list[tuple[Any, ...]]:
    """Alert lifecycle events that say the same thing twice (a doubled raise, …)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT alert_id, event, at, count(*) FROM alert_events "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1 AND event IN ('raise', 'clear')"
        ).fetchall()


async def settle(dsn: str, *, done: Callable[[dict[str, int]], bool], quiet_s: float,
                 timeout_s: float, alive: Iterable[Child] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Poll the database until `done(counts)` holds and nothing changed for `quiet_s`."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, list[tuple[Any, ...]]] = {}
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        for child in alive:
            assert child.proc.poll() is None, f"{child.name} exited ({child.proc.returncode})"
        try:
            view = await asyncio.to_thread(snapshot, dsn)
        except psycopg.Error:
            view = {}
        if view != last:
            last, stable_since = view, time.monotonic()
        elif view and done(counts(view)) and time.monotonic() - stable_since >= quiet_s:
            return view
        await asyncio.sleep(1.0)
    return last
