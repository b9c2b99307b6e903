"""End-to-end pipeline: gateway → worker(s) → aggregates and alerts → sinks → PostgreSQL 18.

On one embedded Tansu + PostgreSQL 18 (`running_services`), after the baselines
(`bench.bench_baselines.measure`, same servers), for 1 and then 2 worker processes (one
consumer group, `topics.partitions` partitions; fresh topics, app ids and database each time):

1. `stackwatch worker run` ×N and `stackwatch sinks run` as child processes (as the demo
   starts them), the HJ 212 gateway in this process producing to the raw topic;
2. warm-up: every national stack sends a frame, the probes their 46 warm-up minutes; the
   benchmark waits until every worker has processed frames and the backlog is empty;
3. rate steps (default 10, 25, 50, 100, 200, 300, 400 frames/s, 15 s each; quick: 25, 50, 100,
   6 s each) of the `national` scenario through real TCP loggers, 4 probe frames/s included.
   Observed at mid-step and at the end: frames acknowledged by the gateway, processed by the
   workers (their /metrics) and stored by the sinks (`raw_frames` rows); backlog = accepted −
   processed (worker) and accepted − stored (sinks); at the end also the committed consumer
   lag of both groups and worker RSS. A step is *sustained* when the gateway took ≥ 90 % of
   the offered rate and, over the step's second half, neither backlog grew by more than 10 %
   of the frames accepted meanwhile (+ a few records, + one 1 s batch for the sinks) nor
   exceeds 5 s (worker) / 6 s (sinks) of traffic. The ladder stops at the first step that is
   not. Processed and stored rates are those of the second half.
4. alert latency: probe frame handed to its logger → `provisional_exceedance` event consumed
   from the alerts topic, p50/p95/p99 over the sustained steps.

Sustained rate = accepted frames/s of the highest sustained step; national scale = 100 000
stacks × one frame per 30 s ≈ 3 300 frames/s.

    stackwatch bench run pipeline [--quick] [--rates 25,50,100] [--step-s 15] [--workers 1,2]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import bench_baselines, infra
from bench.infra import bench_servers, create_topics, fresh_database, raise_if_exited
from bench.options import BenchOptions
from bench.pipeline_load import (
    Feeder,
    Outgoing,
    Probes,
    national,
    national_frames,
    origin_minutes_ago,
    probe_stacks,
)
from bench.pipeline_report import (
    NATIONAL_FPS,
    Phase,
    Step,
    figures_of,
    judge,
    latency_of,
    summarise,
)
from bench.pipeline_watch import AlertWatch, CpuWatch, GroupLag, RssWatch, Scraper, rss_mb
from bench.results import BenchResult, new_result
from embedded.children import DEMO_ENV, Child, spawn_child, stop_child
from embedded.ports import free_port
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings, Settings
from streams.gateway import Gateway
from streams.gateway_sink import KafkaFrameSink

TOPICS = ("raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter")
WORKER_TOPICS = ("raw", "alert_commands")
PROBES, PROBE_FPS = 4, 4.0
FULL_RATES = [10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0]
QUICK_RATES = [25.0, 50.0, 100.0]
READY_TIMEOUT_S = 150.0
#: Simulated time runs faster than the wall clock here (as in the demo): widen the skew checks.
SKEW_ENV = {k: v for k, v in DEMO_ENV.items() if "SKEW" in k}


@dataclass(frozen=True)
class Context:
    """What every phase shares."""

    bootstrap: str
    dsn: str
    partitions: int
    registry: StackRegistry
    registry_file: Path
    tmp: Path
    frames: list[Outgoing]
    probe_stacks: list[StackInfo]
    probe_origin: datetime
    rates: list[float]
    step_s: float
    quick: bool
    server_pids: dict[str, int]


def child_env(ctx: Context, names: dict[str, str], db: str, phase_dir: Path) -> dict[str, str]:
    """Environment of the worker and sinks children (fresh topics and database)."""
    return infra.child_env(ctx.bootstrap, names, db, phase_dir, ctx.registry_file,
                           ctx.partitions) | SKEW_ENV


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> tuple[Child, int]:
    """A child with its own metrics and web ports; (child, metrics port)."""
    metrics, web = free_port(), free_port()
    extra = {"STACKWATCH_METRICS_PORT": str(metrics), "STACKWATCH_WEB_PORT": str(web)}
    return spawn_child(name, args, env | extra, log_dir), metrics


def log_tails(children: list[Child], lines: int = 15) -> str:
    """The end of each child's log (why a phase failed)."""
    out = []
    for child in children:
        text = Path(child.log.name).read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {child.name} (exit {child.proc.poll()}):\n" + "\n".join(text))
    return "\n".join(out)


async def wait_ready(ctx: Context, feeder: Feeder, scraper: Scraper, children: list[Child],
                     cursor: int) -> int:
    """Trickle frames until every worker processed some and nothing is left behind."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        raise_if_exited(children)
        per_worker = await scraper.per_worker_processed()
        progress = await scraper.progress()
        if (all(n > 0 for n in per_worker) and feeder.acked - progress.processed <= 5
                and feeder.acked - progress.raw_rows <= 20):
            return cursor
        for item in ctx.frames[cursor:cursor + 5]:  # keeps every partition getting records
            feeder.offer_nowait(item)
        cursor += 5
        await asyncio.sleep(0.5)
    raise TimeoutError(f"pipeline not ready after {READY_TIMEOUT_S:.0f} s")


async def run_step(ctx: Context, rate: float, feeder: Feeder, scraper: Scraper,
                   lags: tuple[GroupLag, GroupLag], rss: RssWatch, cpu: CpuWatch, cursor: int
                   ) -> tuple[Step, int, tuple[float, float]]:
    """Offer `rate` frames/s (probes included) for `step_s`; rates over its second half
    (the first lets the in-flight backlog of the new rate build up)."""
    national = max(rate - PROBE_FPS, 1.0)
    acked0, t0 = feeder.acked, time.perf_counter()
    offered = await feeder.paced(ctx.frames[cursor:], national, ctx.step_s / 2)
    acked_mid, mid, cpu_mid = feeder.acked, await scraper.progress(), cpu.snapshot()
    offered += await feeder.paced(ctx.frames[cursor + offered:], national, ctx.step_s / 2)
    acked_end, t_end = feeder.acked, time.perf_counter()
    end, cpu_end = await scraper.progress(), cpu.snapshot()
    cpu_use = CpuWatch.between(cpu_mid, cpu_end)
    dt = end.at - mid.at
    try:
        worker_lag: int | None = await lags[0].lag()
        sinks_lag: int | None = await lags[1].lag()
    except Exception:  # informative only
        worker_lag = sinks_lag = None
    rss.sample()
    broker_rss = rss_mb(ctx.server_pids.get("tansu"))
    worker = (max(0, int(acked_mid - mid.processed)), max(0, int(acked_end - end.processed)))
    sinks = (max(0, int(acked_mid - mid.raw_rows)), max(0, int(acked_end - end.raw_rows)))
    accepted = (acked_end - acked0) / (t_end - t0)  # the lag reads above take seconds
    ok, verdict = judge(rate, accepted, acked_end - acked_mid, worker, sinks)
    step = Step(offered_fps=rate, accepted_fps=round(accepted, 1),
                processed_fps=round((end.processed - mid.processed) / dt, 1),
                stored_fps=round((end.raw_rows - mid.raw_rows) / dt, 1),
                readings_rows_per_s=round((end.readings_rows - mid.readings_rows) / dt, 1),
                worker_backlog_mid=worker[0], worker_backlog=worker[1],
                sinks_backlog_mid=sinks[0], sinks_backlog=sinks[1],
                worker_group_lag=worker_lag, sinks_group_lag=sinks_lag,
                worker_rss_mb=[round(m, 1) for m in rss.peak_mb], broker_rss_mb=broker_rss,
                cpu_percent=cpu_use.used, cpu_wait_percent=cpu_use.waiting,
                cpu_pressure_percent=cpu_use.pressure, sustained=ok, verdict=verdict)
    return step, cursor + offered, (t0, time.perf_counter())


async def run_phase(ctx: Context, workers: int, run: int) -> Phase:
    """One ladder with `workers` worker processes (fresh topics, groups and database)."""
    tag = f"w{workers}r{run}"
    phase = Phase(workers=workers, run=run)
    phase_dir = ctx.tmp / tag
    names = {t: f"bench.{tag}.{t}" for t in TOPICS}
    await create_topics(ctx.bootstrap, list(names.values()), ctx.partitions)
    db = await asyncio.to_thread(fresh_database, ctx.dsn, f"bench_{tag}")
    env = child_env(ctx, names, db, phase_dir)
    log_dir = phase_dir / "logs"
    started = time.perf_counter()
    children: list[Child] = []
    worker_ports: list[int] = []
    for i in range(workers):
        child, port = spawn(f"worker{i}", ["worker", "run", "--app-id", f"bench-worker-{tag}",
                                           "--data-dir", str(phase_dir / f"worker{i}"),
                                           "--log-level", "warning"], env, log_dir)
        children.append(child)
        worker_ports.append(port)
    sinks, sinks_port = spawn("sinks", ["sinks", "run", "--app-id", f"bench-sinks-{tag}",
                                        "--no-migrate", "--data-dir", str(phase_dir / "sinks"),
                                        "--log-level", "warning"], env, log_dir)
    children.append(sinks)
    gateway = Gateway(
        settings=GatewaySettings(port=0, max_connections=len(ctx.registry.stacks) + 100),
        registry=ctx.registry,
        sink=KafkaFrameSink(bootstrap=ctx.bootstrap, raw_topic=names["raw"],
                            deadletter_topic=names["deadletter"],
                            partitions=ctx.partitions, create_topics=False),
    )
    scraper = Scraper(worker_ports, sinks_port)
    lags = (GroupLag(ctx.bootstrap, f"bench-worker-{tag}",
                     [names[t] for t in WORKER_TOPICS], ctx.partitions),
            GroupLag(ctx.bootstrap, f"bench-sinks-{tag}", list(names.values()), ctx.partitions))
    alerts = AlertWatch(ctx.bootstrap, names["alerts"])
    rss = RssWatch([c.proc.pid for c in children[:workers]])
    cpu = CpuWatch({"workers": ([c.proc.pid for c in children[:workers]], True),
                    "sinks": ([sinks.proc.pid], True),
                    "gateway+loggers": ([os.getpid()], False),
                    **{name: ([pid], True) for name, pid in ctx.server_pids.items()}})
    feeder: Feeder | None = None
    probe_task: asyncio.Task[None] | None = None
    try:
        await gateway.start()
        await alerts.start()
        for lag in lags:
            await lag.start()
        feeder = Feeder(gateway.port)
        probes = Probes(ctx.probe_stacks, ctx.probe_origin, feeder)
        stacks = len(ctx.registry.stacks) - len(probes.stacks)
        await feeder.deliver_all(probes.warmup() + ctx.frames[:stacks])
        cursor = await wait_ready(ctx, feeder, scraper, children, stacks)
        phase.startup_s = round(time.perf_counter() - started, 1)
        rss.start()
        phase.broker_rss_start_mb = rss_mb(ctx.server_pids.get("tansu"))
        probe_task = asyncio.create_task(probes.run(PROBE_FPS))
        windows: list[tuple[float, float]] = []
        for rate in ctx.rates:
            step, cursor, window = await run_step(ctx, rate, feeder, scraper, lags, rss, cpu,
                                                  cursor)
            phase.steps.append(step)
            windows.append(window)
            print(f"  {workers} worker(s), {rate:g} frames/s: accepted {step.accepted_fps:g}, "
                  f"processed {step.processed_fps:g}, stored {step.stored_fps:g} frames/s; "
                  f"backlog worker {step.worker_backlog} / sinks {step.sinks_backlog}; "
                  f"committed lag {step.worker_group_lag} / {step.sinks_group_lag}; "
                  f"RSS {max(step.worker_rss_mb or [0]):.0f} MB (broker "
                  f"{step.broker_rss_mb or 0:.0f} MB); CPU % {step.cpu_percent}, waiting "
                  f"for a core % {step.cpu_wait_percent}, CPU pressure "
                  f"{step.cpu_pressure_percent} % → {step.verdict}", flush=True)
            if not step.sustained:
                break
        probe_task.cancel()
        await _drain(probes.sent, alerts.seen, 5.0 if ctx.quick else 10.0)
        for step, window in zip(phase.steps, windows, strict=True):
            step.latency = latency_of(probes.sent, alerts.seen, window)
        summarise(phase, windows, probes.sent, alerts.seen)
    except Exception as exc:
        phase.error = f"{type(exc).__name__}: {exc}"
        print(f"  phase {tag} failed: {phase.error}\n{log_tails(children)}", flush=True)
    finally:
        if probe_task is not None:
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe_task
        await rss.stop()
        if feeder is not None:
            await feeder.close()
        await gateway.stop(grace_s=5.0)
        await asyncio.gather(*(asyncio.to_thread(stop_child, c) for c in children))
        with contextlib.suppress(Exception):
            await alerts.stop()
        for lag in lags:
            with contextlib.suppress(Exception):
                await lag.stop()
        await scraper.close()
    return phase


async def _drain(sent: dict[tuple[str, str], float], seen: dict[tuple[str, str], float],
                 limit_s: float) -> None:
    """Give the last probe frames' alert events time to arrive."""
    for _ in range(int(limit_s / 0.25)):
        if sent.keys() <= seen.keys():
            return
        await asyncio.sleep(0.25)


def run(opts: BenchOptions) -> list[BenchResult]:
    """Baselines, then the ladders; returns the `baselines` and `pipeline` results."""
    rates = opts.rates or (QUICK_RATES if opts.quick else FULL_RATES)
    step_s = opts.step_s or (6.0 if opts.quick else 15.0)
    stacks = opts.stacks or (100 if opts.quick else 200)
    worker_counts = opts.workers or [1, 2]
    runs = opts.pick_runs(1, 1)
    partitions = Settings().topics.partitions
    registry = national(stacks)
    probes = probe_stacks(PROBES)
    registry = StackRegistry(stacks=[*registry.stacks, *probes])
    count = int(sum(rates) * step_s * 1.05) + stacks + 5 * 2 * int(READY_TIMEOUT_S)
    print(f"pipeline: generating {count:,} national frames ({stacks} stacks)", flush=True)
    frames = national_frames(stacks, count, origin_minutes_ago(30))
    phases: list[Phase] = []
    with bench_servers("bench-pipe-", registry) as servers:
        baselines = bench_baselines.measure(servers.bootstrap, servers.dsn, opts, partitions)
        ctx = Context(bootstrap=servers.bootstrap, dsn=servers.dsn, partitions=partitions,
                      registry=registry, registry_file=servers.registry_file, tmp=servers.tmp,
                      frames=frames, probe_stacks=probes,
                      probe_origin=origin_minutes_ago(120), rates=rates, step_s=step_s,
                      quick=opts.quick, server_pids=servers.server_pids)
        for workers in worker_counts:
            for r in range(runs):
                print(f"pipeline: {workers} worker(s), run {r + 1}/{runs}", flush=True)
                phases.append(asyncio.run(run_phase(ctx, workers, r)))
    result = new_result("pipeline", "pipeline, national scenario", quick=opts.quick,
                        postgresql=baselines.versions.postgresql, settings={
                            "rates_fps": rates, "step_s": step_s, "stacks": stacks,
                            "probes": PROBES, "probe_fps": PROBE_FPS, "workers": worker_counts,
                            "runs": runs, "partitions": partitions, "broker_profile": "tansu",
                            "sinks": "1 process, batch 500 / 1 s", "national_fps": NATIONAL_FPS,
                        })
    result.figures = figures_of(phases, baselines, rates, step_s)
    result.details = {"phases": [p.model_dump() for p in phases]}
    return [baselines, result]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["pipeline", *sys.argv[1:]]))
