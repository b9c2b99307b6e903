"""The pipeline benchmark's records and verdicts: steps, phases, latency, README figures.

Pure (no I/O), so the rules that turn observations into "sustained" and into figures can be
read in one place.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from bench.results import BenchResult, Figure, figure, median

#: 100 000 stacks × one frame per 30 s.
NATIONAL_FPS = 100_000 / 30
WHY_SLOW = ("< 1 on this 2-core machine: gateway, loggers, worker, sinks, Tansu and PostgreSQL "
            "share two cores; at the ladder's top step some task waits for a core most of the "
            "time and the workers wait for one for a good part of the time they run (the "
            "CPU pressure rows below); Tansu's fetches cost more as its log grows (README "
            "\"Quirks\")")


class Latency(BaseModel):
    """Frame → alert event, milliseconds."""

    n: int = 0
    missing: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Step(BaseModel):
    """One offered rate, as observed at the end of its step."""

    offered_fps: float
    accepted_fps: float = Field(description="Acknowledged by the gateway, whole step.")
    processed_fps: float = Field(description="By the workers, second half of the step.")
    stored_fps: float = Field(description="raw_frames rows, second half of the step.")
    readings_rows_per_s: float
    worker_backlog_mid: int
    worker_backlog: int = Field(description="Frames accepted − processed at the step's end.")
    sinks_backlog_mid: int
    sinks_backlog: int = Field(description="Frames accepted − stored in raw_frames.")
    worker_group_lag: int | None = Field(description="Committed consumer lag, records.")
    sinks_group_lag: int | None
    worker_rss_mb: list[float]
    broker_rss_mb: float | None = Field(
        default=None, description="The embedded broker's RSS at the step's end (it keeps "
        "every record in memory).")
    cpu_percent: dict[str, float] = Field(
        default_factory=dict, description="Second half of the step; 100 = one core.")
    cpu_wait_percent: dict[str, float] = Field(
        default_factory=dict, description="Second half of the step: runnable but no core free "
        "(run-queue wait); 100 = one thread waiting the whole time.")
    cpu_pressure_percent: float | None = Field(
        default=None, description="Second half of the step: share of the time some task on "
        "the machine waited for a core (PSI \"some\").")
    latency: Latency = Field(default_factory=Latency)
    sustained: bool
    verdict: str


class Phase(BaseModel):
    """One ladder with N worker processes."""

    workers: int
    run: int
    startup_s: float = 0.0
    steps: list[Step] = Field(default_factory=list)
    sustained_fps: float = 0.0
    every_step_sustained: bool = Field(
        default=False, description="The ladder ran out: the sustainable rate is higher.")
    capacity_fps: float = 0.0
    readings_rows_per_s: float = 0.0
    latency: Latency = Field(default_factory=Latency)
    latency_basis: str = ""
    half_rate_latency: Latency = Field(
        default_factory=Latency,
        description="The sustained step nearest half the sustained rate (issue #14's target).")
    half_rate_fps: float | None = None
    rss_peak_mb: float = 0.0
    broker_rss_start_mb: float | None = None
    broker_rss_growth_mb: float | None = Field(
        default=None, description="Broker RSS at the last step's end − at the ladder's start.")
    error: str | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_of(sent: dict[tuple[str, str], float], seen: dict[tuple[str, str], float],
               window: tuple[float, float]) -> Latency:
    """Latency of the probe frames sent within `window` (perf_counter seconds)."""
    keys = [k for k, t in sent.items() if window[0] <= t < window[1]]
    ms = [(seen[k] - sent[k]) * 1000 for k in keys if k in seen]
    return Latency(n=len(ms), missing=len(keys) - len(ms), p50=percentile(ms, 50),
                   p95=percentile(ms, 95), p99=percentile(ms, 99))


def half_rate_step(steps: list[Step], sustained_fps: float) -> Step | None:
    """The sustained step whose offered rate is nearest half the sustained rate (the lower
    one on a tie): the latency target is set there, not over the whole ladder, whose top
    steps run the machine full."""
    good = [s for s in steps if s.sustained]
    if not good or sustained_fps <= 0:
        return None
    half = sustained_fps / 2
    return min(good, key=lambda s: (abs(s.offered_fps - half), s.offered_fps))


def judge(offered: float, accepted: float, window: float, worker: tuple[int, int],
          sinks: tuple[int, int]) -> tuple[bool, str]:
    """Is this rate sustained? `worker`/`sinks` = backlog at mid-step and at the end,
    `window` = frames accepted in between (rules: `bench.bench_pipeline` docstring)."""
    if accepted < 0.9 * offered:
        return False, "gateway took < 90 % of the offered rate"
    slack = 0.1 * window + 10
    if worker[1] - worker[0] > slack or worker[1] > 5 * offered + 20:
        return False, "worker backlog grows"
    if sinks[1] - sinks[0] > slack + offered or sinks[1] > 6 * offered + 50:
        return False, "sinks backlog grows"  # `+ offered`: the sinks write 1 s batches
    return True, "backlog bounded"


def summarise(phase: Phase, windows: list[tuple[float, float]],
              sent: dict[tuple[str, str], float], seen: dict[tuple[str, str], float]) -> None:
    """Sustained rate, capacity, latency and RSS of a finished ladder."""
    good = [(s, w) for s, w in zip(phase.steps, windows, strict=True) if s.sustained]
    phase.every_step_sustained = bool(phase.steps) and all(s.sustained for s in phase.steps)
    if good:
        best = good[-1][0]
        phase.sustained_fps = best.accepted_fps
        phase.readings_rows_per_s = best.readings_rows_per_s
        span = (good[0][1][0], good[-1][1][1])
        phase.latency_basis = f"sustained steps up to {best.offered_fps:g} frames/s"
    elif phase.steps:
        span = windows[0]
        phase.latency_basis = f"no step sustained; the {phase.steps[0].offered_fps:g} frames/s step"
    else:
        return
    phase.capacity_fps = max(s.processed_fps for s in phase.steps)
    phase.latency = latency_of(sent, seen, span)
    half = half_rate_step(phase.steps, phase.sustained_fps)
    if half is not None:
        phase.half_rate_fps = half.offered_fps
        phase.half_rate_latency = half.latency
    phase.rss_peak_mb = max((max(s.worker_rss_mb or [0.0]) for s in phase.steps), default=0.0)
    end = phase.steps[-1].broker_rss_mb
    if end is not None and phase.broker_rss_start_mb is not None:
        phase.broker_rss_growth_mb = round(end - phase.broker_rss_start_mb, 1)


def percentile_figures(row: str, latencies: list[Latency], notes: str) -> list[Figure]:
    """One README row of p50 / p95 / p99 (median over the runs that have each)."""
    return [figure(q, [v for lat in latencies if (v := getattr(lat, q)) is not None], "ms",
                   row=row, notes=notes) for q in ("p50", "p95", "p99")]


def saturation_figures(who: str, phases: list[Phase]) -> list[Figure]:
    """Was the machine full at the ladder's top step? Its CPU pressure, and how long the
    workers were ready to run with no core free, next to the CPU they got."""
    tops = [p.steps[-1] for p in phases if p.steps]
    if not tops:
        return []
    pressure = [s.cpu_pressure_percent for s in tops if s.cpu_pressure_percent is not None]
    waited = [s.cpu_wait_percent["workers"] for s in tops if "workers" in s.cpu_wait_percent]
    used = [s.cpu_percent["workers"] for s in tops if "workers" in s.cpu_percent]
    top = "/".join(sorted({f"{s.offered_fps:g}" for s in tops}))
    figures = []
    if pressure:
        figures.append(figure(
            f"{who}: CPU pressure at the top step", pressure, "%",
            notes=f"the {top} frames/s step: share of the time some runnable task on the "
            "machine waited for a core (Linux PSI \"some\")"))
    if waited and used:
        figures.append(figure(
            f"{who}: workers waiting for a core at the top step", waited, "% of a core",
            notes=f"the {top} frames/s step: run-queue wait of the worker processes "
            f"(schedstat) while they ran {median(used):.0f} % of a core"))
    return figures


def figures_of(phases: list[Phase], baselines: BenchResult, rates: list[float],
               step_s: float) -> list[Figure]:
    """The README figures: per worker count (median over runs), then ratios to baselines."""
    figures: list[Figure] = []
    ladder = "/".join(f"{r:g}" for r in rates)
    for workers in sorted({p.workers for p in phases}):
        mine = [p for p in phases if p.workers == workers and p.error is None]
        who = f"{workers} worker{'s' if workers > 1 else ''}"
        if not mine:
            continue
        sustained = [p.sustained_fps for p in mine]
        more = (" — every step was sustained, so the limit is higher"
                if any(p.every_step_sustained for p in mine) else "")
        figures += [
            figure(f"{who}: sustained frames/s", sustained, "frames/s",
                   notes=f"highest of the steps {ladder} frames/s ({step_s:g} s each) whose "
                   f"backlog stayed bounded{more}"),
            figure(f"{who}: multiple of national scale",
                   [s / NATIONAL_FPS for s in sustained], "x", digits=3,
                   notes="national = 100,000 stacks × 1 frame / 30 s ≈ 3,300 frames/s"
                   + (f"; {WHY_SLOW}" if workers == min(p.workers for p in phases) else "")),
            figure(f"{who}: peak processed frames/s", [p.capacity_fps for p in mine],
                   "frames/s", notes="frames processed by the worker, best step; the capacity "
                   "when the ladder ended on a step that was not sustained"),
        ]
        latencies = [p.latency for p in mine]
        n = sum(lat.n for lat in latencies)
        figures += percentile_figures(
            f"{who}: alert latency p50 / p95 / p99", latencies,
            f"frame to provisional_exceedance event consumed, {n} probe frames, "
            f"{mine[0].latency_basis}")
        half = [p for p in mine if p.half_rate_fps is not None]
        if half:
            latencies = [p.half_rate_latency for p in half]
            n = sum(lat.n for lat in latencies)
            rates_used = "/".join(sorted({f"{p.half_rate_fps:g}" for p in half}))
            figures += percentile_figures(
                f"{who}: alert latency at half the sustained rate, p50 / p95 / p99", latencies,
                f"the {rates_used} frames/s step (nearest half the sustained rate; "
                f"target p99 ≤ 1 s), {n} probe frames")
        figures.append(figure(f"{who}: worker RSS, peak", [p.rss_peak_mb for p in mine], "MB",
                              notes="per worker process (psutil)"))
        grown = [p.broker_rss_growth_mb for p in mine if p.broker_rss_growth_mb is not None]
        if grown:
            figures.append(figure(
                f"{who}: broker memory growth over the ladder", grown, "MB",
                notes="the embedded Tansu keeps every record in memory; RSS at the last "
                "step's end − at the ladder's start (producer batches compressed: "
                "kafka.compression)"))
        figures += saturation_figures(who, mine)
    ok = [p for p in phases if p.error is None]
    if ok:
        best = max(ok, key=lambda p: p.sustained_fps)
        base = {f.figure: f.value for f in baselines.figures}
        label = f"{best.workers} worker{'s' if best.workers > 1 else ''}"
        for name, key, what in (
            ("pipeline ÷ raw produce, one by one", "aiokafka produce, send_and_wait one by one",
             best.sustained_fps),
            ("pipeline ÷ raw produce, batched", "aiokafka produce, batched", best.sustained_fps),
            ("pipeline ÷ raw consume", "aiokafka consume", best.sustained_fps),
            ("pipeline ÷ plain Faust agent + table", "Faust agent + table",
             best.sustained_fps),
            ("readings rows/s ÷ raw COPY rows/s", "psycopg COPY into readings",
             best.readings_rows_per_s),
        ):
            if base.get(key):
                figures.append(figure(name, [100 * what / base[key]], "%", digits=2,
                                      notes=f"{label} sustained vs the baseline in this run"))
    return figures
