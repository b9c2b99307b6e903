"""Province-day replay: real recorded hours through the whole pipeline, as fast as it goes.

Issue #14's target: a real province-day (the 21 public hours of 2016-08-24, about 190,000
frames) replays end to end in at most 4 minutes on the embedded default. The four shared hours
(`../shared/data`, 2016-08-24 04:00–08:00, 284 loggers, about 36,000 frames) stand in for it:

1. the registry is inferred from the capture, as `stackwatch replay --write-registry` does;
2. `stackwatch gateway run`, `stackwatch worker run` and `stackwatch sinks run` start as child
   processes on the embedded Tansu and PostgreSQL 18 (fresh topics and database);
3. warm-up: the capture's first frame, until the worker and the sinks have handled it;
4. the logins: every other logger's first frame, until all are handled. The gateway checks
   each logger's password with scrypt once per process (about 50 ms of CPU each, 286 loggers:
   about 15 CPU-seconds), so this phase is timed apart: a province-day has the same loggers
   and pays it once, not once per four hours;
5. the rest is replayed with `stackwatch replay`'s code: one TCP connection per logger, each
   frame sent when the previous one's 9014 came back (or the logger does not ask for one), as
   fast as the gateway answers;
6. each phase ends when both consumer groups have committed everything; its end is the last
   moment any count still moved (frames processed, raw frames, readings and aggregate rows), so
   the commit interval does not count.

The province-day time is the logins plus the other 190,000 − 286 frames at the rate of step 5.

    stackwatch bench run replay [--runs N]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import infra
from bench.infra import (
    BenchServers,
    bench_servers,
    create_topics,
    fresh_database,
    raise_if_exited,
    server_version,
)
from bench.options import BenchOptions
from bench.pipeline_watch import CpuUse, CpuWatch, GroupLag, RssWatch, Scraper
from bench.results import BenchResult, figure, new_result
from embedded.children import Child, spawn_child, stop_child
from embedded.ports import LOOPBACK, free_port, port_accepts
from simulators.replay import ReplayFrame, load_replays, registry_for, replay
from stackwatch.registry_hash import DEFAULT_N
from stackwatch.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data"
CAPTURE_GLOB = "hj212-capture-2016-08-24-*.h212"
PROVINCE_DAY_FRAMES = 190_000
"""The 21 public hours of 2016-08-24 on the provincial platform (issue #14)."""
TARGET_MINUTES = 4.0
TOPICS = ("raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter")
WORKER_TOPICS = ("raw", "alert_commands")
READY_TIMEOUT_S = 180.0
DONE_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Run:
    """One replay's measurements: the logins, then the rest of the frames."""

    login_frames: int
    login_s: float
    frames: int
    sent_s: float
    end_to_end_s: float
    cpu: CpuUse
    worker_rss_mb: float

    @property
    def fps(self) -> float:
        """Frames/s end to end once every logger is logged in."""
        return self.frames / self.end_to_end_s

    @property
    def all_in_fps(self) -> float:
        """Frames/s over the whole capture, the logins included."""
        return (self.login_frames + self.frames) / (self.login_s + self.end_to_end_s)

    @property
    def province_day_min(self) -> float:
        """A province-day: its loggers log in once, then the rest of its frames at `fps`."""
        rest = PROVINCE_DAY_FRAMES - self.login_frames
        return (self.login_s + rest / self.fps) / 60.0


def split_logins(frames: list[ReplayFrame]) -> tuple[list[ReplayFrame], list[ReplayFrame]]:
    """Each logger's first frame (its login: the gateway checks its password with scrypt, once
    per gateway process) and the rest, both in capture order."""
    seen: set[str | None] = set()
    logins: list[ReplayFrame] = []
    rest: list[ReplayFrame] = []
    for f in frames:
        (rest if f.mn in seen else logins).append(f)
        seen.add(f.mn)
    return logins, rest


def login_notes(logins: int, loggers: int) -> str:
    """The README note of the logins figure."""
    return (f"{logins} first frames, one per MN on the wire, the unreadable frames' line included "
            f"(the registry holds {loggers} loggers); the gateway checks each password with "
            f"scrypt (N = {DEFAULT_N:,}) once per process, about 50 ms of CPU each")


def capture_files() -> list[Path]:
    """The shared real hours, in order."""
    files = sorted(CAPTURE.glob(CAPTURE_GLOB))
    if not files:
        raise FileNotFoundError(f"no recorded hours {CAPTURE / CAPTURE_GLOB} beside the repository")
    return files


def child_env(bootstrap: str, names: dict[str, str], db: str, data_dir: Path,
              registry_file: Path, partitions: int) -> dict[str, str]:
    """Environment of the gateway, worker and sinks children, as for real loggers."""
    env = infra.child_env(bootstrap, names, db, data_dir, registry_file, partitions)
    # As tests/e2e/test_real_hours.py: real clocks judged against their peers.
    return env | {"STACKWATCH_STREAMS__PROCESSOR__QUALITY__CLOCK_SKEW_TOLERANCE": "PT5M"}


async def wait_port(port: int, child: Child, timeout_s: float = 60.0) -> None:
    """Until the gateway accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raise_if_exited([child])
        if await asyncio.to_thread(port_accepts, LOOPBACK, port):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{child.name} is not listening on {port}")


async def wait_handled(scraper: Scraper, children: list[Child]) -> None:
    """Until the warm-up frame's record and reading are in the database (worker and sinks
    are up; the first logger may be a wastewater one, which the processor never sees)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        raise_if_exited(children)
        progress = await scraper.progress()
        if progress.raw_rows >= 1 and (progress.readings_rows >= 1 or progress.processed >= 1):
            return
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the warm-up frame was not handled within {READY_TIMEOUT_S:.0f} s")


async def wait_done(scraper: Scraper, lags: tuple[GroupLag, GroupLag],
                    children: list[Child]) -> float:
    """perf_counter of the last change of any count, once both groups committed everything."""
    last: tuple[float, ...] | None = None
    last_change = time.perf_counter()
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while time.monotonic() < deadline:
        raise_if_exited(children)
        p = await scraper.progress()
        counts = (p.processed, p.raw_rows, p.readings_rows, p.aggregate_rows)
        if counts != last:
            last, last_change = counts, p.at
        elif await lags[0].lag() == 0 and await lags[1].lag() == 0:
            return last_change
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the replay did not finish within {DONE_TIMEOUT_S:.0f} s")


async def run_once(frames: list[ReplayFrame], servers: BenchServers, partitions: int,
                   tag: str) -> Run:
    """One replay on fresh topics, consumer groups and database."""
    bootstrap, server_pids = servers.bootstrap, servers.server_pids
    names = {t: f"bench.{tag}.{t}" for t in TOPICS}
    await create_topics(bootstrap, list(names.values()), partitions)
    db = await asyncio.to_thread(fresh_database, servers.dsn, f"bench_{tag}")
    run_dir = servers.tmp / tag
    env = child_env(bootstrap, names, db, run_dir, servers.registry_file, partitions)
    gateway_port, worker_metrics, sinks_metrics = free_port(), free_port(), free_port()
    log_dir = run_dir / "logs"
    children = [
        spawn_child("worker", ["worker", "run", "--app-id", f"bench-worker-{tag}",
                               "--web-port", str(free_port()),
                               "--metrics-port", str(worker_metrics), "--log-level", "warning",
                               "--data-dir", str(run_dir / "worker")], env, log_dir),
        spawn_child("sinks", ["sinks", "run", "--app-id", f"bench-sinks-{tag}", "--no-migrate",
                              "--metrics-port", str(sinks_metrics), "--log-level", "warning",
                              "--data-dir", str(run_dir / "sinks")],
                    env | {"STACKWATCH_WEB_PORT": str(free_port())}, log_dir),
        spawn_child("gateway", ["gateway", "run", "--port", str(gateway_port)], env, log_dir),
    ]
    worker, sinks, gateway = children
    scraper = Scraper([worker_metrics], sinks_metrics)
    lags = (GroupLag(bootstrap, f"bench-worker-{tag}", [names[t] for t in WORKER_TOPICS],
                     partitions),
            GroupLag(bootstrap, f"bench-sinks-{tag}", list(names.values()), partitions))
    rss = RssWatch([worker.proc.pid])
    cpu = CpuWatch({"worker": ([worker.proc.pid], True), "sinks": ([sinks.proc.pid], True),
                    "gateway": ([gateway.proc.pid], True),
                    "replaying loggers": ([os.getpid()], False),
                    **{name: ([pid], True) for name, pid in server_pids.items()}})
    try:
        await wait_port(gateway_port, gateway)
        for lag in lags:
            await lag.start()
        await replay(frames[:1], "127.0.0.1", gateway_port, speed=None)
        await wait_handled(scraper, children)
        logins, rest = split_logins(frames[1:])
        rss.start()
        started = time.perf_counter()
        await replay(logins, "127.0.0.1", gateway_port, speed=None)
        logged_in = await wait_done(scraper, lags, children)
        cpu_start = cpu.snapshot()
        resumed = time.perf_counter()
        stats = await replay(rest, "127.0.0.1", gateway_port, speed=None)
        sent = time.perf_counter()
        ended = await wait_done(scraper, lags, children)
        cpu_end = cpu.snapshot()
        await rss.stop()
        return Run(login_frames=len(logins), login_s=logged_in - started, frames=stats.frames,
                   sent_s=sent - resumed, end_to_end_s=ended - resumed,
                   cpu=CpuWatch.between(cpu_start, cpu_end),
                   worker_rss_mb=max(rss.peak_mb or [0.0]))
    finally:
        await rss.stop()
        await asyncio.gather(*(asyncio.to_thread(stop_child, c) for c in children))
        for lag in lags:
            with contextlib.suppress(Exception):
                await lag.stop()
        await scraper.close()


def run(opts: BenchOptions) -> list[BenchResult]:
    """Replay the shared hours `runs` times; the `replay` result."""
    files = capture_files()
    log = load_replays(files)
    registry = registry_for(log)
    partitions = Settings().topics.partitions
    runs = opts.pick_runs(1, 1)
    print(f"replay: {len(log.frames):,} frames of {len(registry.stacks)} loggers "
          f"({files[0].name} … {files[-1].name})", flush=True)
    results: list[Run] = []
    with bench_servers("bench-replay-", registry) as servers:
        pg_version = server_version(servers.dsn)
        for i in range(runs):
            one = asyncio.run(run_once(log.frames, servers, partitions, f"replay{i}"))
            print(f"  run {i + 1}/{runs}: {one.login_frames} logins handled in "
                  f"{one.login_s:.1f} s; then {one.frames:,} frames, sent in {one.sent_s:.1f} s, "
                  f"end to end {one.end_to_end_s:.1f} s = {one.fps:.0f} frames/s "
                  f"({one.all_in_fps:.0f} with the logins) → province-day "
                  f"{one.province_day_min:.1f} min; CPU % {one.cpu.used}, waiting for a core % "
                  f"{one.cpu.waiting}, CPU pressure {one.cpu.pressure} %; "
                  f"worker RSS {one.worker_rss_mb:.0f} MB", flush=True)
            results.append(one)
    result = new_result("replay", "real hours replayed end to end (province-day)",
                        quick=opts.quick, postgresql=pg_version, settings={
                            "capture": [f.name for f in files], "loggers": len(registry.stacks),
                            "frames": len(log.frames), "partitions": partitions,
                            "broker_profile": "tansu", "workers": 1,
                            "province_day_frames": PROVINCE_DAY_FRAMES,
                        })
    loggers = len(registry.stacks)
    result.figures = [
        figure("logins: every logger's first frame, end to end", [r.login_s for r in results],
               "s", digits=1, notes=login_notes(results[0].login_frames, loggers)),
        figure("end-to-end replay of the shared hours after the logins",
               [r.end_to_end_s for r in results], "s", digits=1,
               notes=f"{results[0].frames:,} frames from {loggers} real loggers, one TCP "
               "connection each, stop-and-wait on 9014; until every frame, reading and "
               "aggregate is in PostgreSQL"),
        figure("frames/s end to end", [r.fps for r in results], "frames/s",
               notes="after the logins; gateway, 1 worker, sinks, Tansu and PostgreSQL 18 on "
               "this machine"),
        figure("frames/s end to end, logins included", [r.all_in_fps for r in results],
               "frames/s", notes="the whole capture over both phases (as the earlier stops "
               "reported it)"),
        figure("province-day (190,000 frames) replayed", [r.province_day_min for r in results],
               "min", digits=1, notes=f"target ≤ {TARGET_MINUTES:g} min; the logins once, "
               "then the other frames at the rate after the logins"),
        figure("frames acknowledged by the gateway", [r.sent_s for r in results], "s",
               digits=1, notes="after the logins: last 9014 received by the replaying loggers"),
        figure("worker RSS, peak", [r.worker_rss_mb for r in results], "MB",
               notes="per worker process (psutil)"),
    ]
    pressure = [r.cpu.pressure for r in results if r.cpu.pressure is not None]
    if pressure:
        result.figures.append(figure(
            "CPU pressure during the replay", pressure, "%",
            notes="after the logins: share of the time some runnable task on the machine "
            "waited for a core (Linux PSI \"some\")"))
    result.details = {"runs": [{**r.__dict__, "cpu": r.cpu.model_dump(), "fps": r.fps,
                                "all_in_fps": r.all_in_fps,
                                "province_day_min": r.province_day_min} for r in results]}
    return [result]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["replay", *sys.argv[1:]]))
