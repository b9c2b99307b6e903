"""What the pipeline benchmark observes: /metrics counters, consumer lag, RSS, alert events.

* Worker and sinks progress come from their Prometheus counters (exact and instantaneous):
  frames processed = `stackwatch_process_seconds_count` (one per reading, i.e. per frame),
  rows stored = `stackwatch_sink_rows_written_total{table}`.
* Consumer lag of a group = Σ (end offset − committed offset) over its topics' partitions,
  read with a consumer that carries the group id but never joins (committed offsets move
  only every commit interval, so this trails the counters by up to a few seconds). The end
  offset is read from the log itself (the last batch is fetched), because Tansu reports the
  last batch's base offset + 1 as the end.
* Alert events are consumed from the alerts topic the moment they arrive (latency probes).
* RSS of the workers and CPU % per process group (psutil) say where the machine's time went;
  the run-queue wait of each group (`/proc/<pid>/task/*/schedstat`) and the machine's CPU
  pressure (PSI) say whether it was full: time a process was ready to run but had no core.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from stackwatch.beijing_time import CST
from stackwatch.models import AlertEvent, Rule
from streams.kafka_transport import FETCH_MAX_WAIT_MS

AGGREGATE_TABLES = ("minute_aggregates", "hour_aggregates", "day_aggregates")
PROC_ROOT = Path("/proc")
CPU_PRESSURE = PROC_ROOT / "pressure" / "cpu"


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample."""

    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a /metrics page."""
    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Σ of the samples called `name` whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


@dataclass(frozen=True)
class Progress:
    """Counters summed over the workers, and the sinks' rows, at one instant."""

    at: float
    processed: float
    aggregates: float
    raw_rows: float
    readings_rows: float
    aggregate_rows: float


class Scraper:
    """Reads the workers' and the sinks' /metrics pages."""

    def __init__(self, worker_ports: list[int], sinks_port: int) -> None:
        self.worker_urls = [f"http://127.0.0.1:{p}/metrics" for p in worker_ports]
        self.sinks_url = f"http://127.0.0.1:{sinks_port}/metrics"
        self._http = httpx.AsyncClient(timeout=5.0)

    async def _get(self, url: str) -> list[Sample]:
        try:
            response = await self._http.get(url)
            response.raise_for_status()
        except httpx.HTTPError:
            return []  # not up yet (or restarting): counts as nothing done
        return parse_metrics(response.text)

    async def per_worker_processed(self) -> list[float]:
        """Frames processed by each worker."""
        pages = await asyncio.gather(*(self._get(u) for u in self.worker_urls))
        return [total(p, "stackwatch_process_seconds_count") for p in pages]

    async def progress(self) -> Progress:
        """All counters now."""
        pages = await asyncio.gather(*(self._get(u) for u in [*self.worker_urls,
                                                             self.sinks_url]))
        workers, sinks = pages[:-1], pages[-1]
        rows = "stackwatch_sink_rows_written_total"
        return Progress(
            at=time.perf_counter(),
            processed=sum(total(p, "stackwatch_process_seconds_count") for p in workers),
            aggregates=sum(total(p, "stackwatch_aggregates_total") for p in workers),
            raw_rows=total(sinks, rows, table="raw_frames"),
            readings_rows=total(sinks, rows, table="readings"),
            aggregate_rows=sum(total(sinks, rows, table=t) for t in AGGREGATE_TABLES),
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


class GroupLag:
    """Consumer lag of one consumer group over its topics (never joins the group)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                          enable_auto_commit=False)

    async def start(self) -> None:
        """Connect."""
        await self._consumer.start()

    async def _true_ends(self) -> dict[TopicPartition, int]:
        """End offsets as the log has them: the reported end, then past the last batch."""
        reported = await self._consumer.end_offsets(self.tps)
        ends = {tp: int(reported.get(tp, 0)) for tp in self.tps}
        tail = [tp for tp in self.tps if ends[tp] > 0]
        if not tail:
            return ends
        self._consumer.assign(tail)
        for tp in tail:
            self._consumer.seek(tp, ends[tp] - 1)
        # One fetch from each reported end − 1 (the last batch's base) returns that batch:
        # its last record is the true end. Records produced since are the next poll's.
        batch = await self._consumer.getmany(*tail, timeout_ms=100)
        for tp, records in batch.items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1)
        return ends

    async def lag(self) -> int:
        """Σ (end offset − committed offset); a partition never committed counts from 0."""
        ends = await self._true_ends()
        lag = 0
        for tp in self.tps:
            committed = await self._consumer.committed(tp)
            lag += max(0, int(ends.get(tp, 0)) - int(committed or 0))
        return lag

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()


@dataclass
class RssWatch:
    """Peak resident memory per worker process (sampled every second)."""

    pids: list[int]
    peak_mb: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Read each worker's RSS now (a worker and any children it has)."""
        if not self.peak_mb:
            self.peak_mb = [0.0] * len(self.pids)
        for i, pid in enumerate(self.pids):
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_mb[i] = max(self.peak_mb[i], rss / 2**20)

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(1.0)

    def start(self) -> None:
        """Sample in the background."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of one process now, MB (None: no such local process)."""
    if pid is None:
        return None
    try:
        rss: int = psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
    return round(rss / 2**20, 1)


def process_tree(pid: int, *, children: bool) -> list[psutil.Process]:
    """A process and, if asked, its live children ([] when it is gone)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *(proc.children(recursive=True) if children else [])]
    except psutil.Error:
        return []


def cpu_seconds(pid: int, *, children: bool) -> float:
    """User + system CPU seconds of a process (and, if asked, of its live children)."""
    used = 0.0
    for p in process_tree(pid, children=children):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            used += times.user + times.system
    return used


def schedstat_wait_s(process_dir: Path) -> float:
    """Seconds the threads of one process spent runnable but waiting for a CPU.

    Each `task/<tid>/schedstat` holds "<ns on a CPU> <ns waiting on a run queue> <slices>"
    (Linux `Documentation/scheduler/sched-stats.rst`); a missing or unreadable task (it just
    ended) counts 0.
    """
    waited_ns = 0
    for stat in process_dir.glob("task/*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            waited_ns += int(stat.read_text().split()[1])
    return waited_ns / 1e9


def run_queue_seconds(pid: int, *, children: bool) -> float:
    """Run-queue wait of a process (and, if asked, of its live children), seconds: CPU time
    it would have used had a core been free."""
    return sum(schedstat_wait_s(PROC_ROOT / str(p.pid))
               for p in process_tree(pid, children=children))


def cpu_pressure_seconds(path: Path = CPU_PRESSURE) -> float | None:
    """The machine's CPU pressure stall total (PSI "some": time during which at least one
    runnable task waited for a CPU), seconds; None where the kernel has no PSI."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        if line.startswith("some ") and "total" in fields:
            return int(fields["total"]) / 1e6  # microseconds
    return None


class CpuSnapshot(BaseModel):
    """Cumulative CPU and run-queue seconds per label, and the machine's PSI total, at `at`."""

    at: float
    used: dict[str, float]
    waited: dict[str, float]
    pressure_s: float | None


class CpuUse(BaseModel):
    """Between two snapshots, as % of one core (of wall time for `pressure`)."""

    used: dict[str, float]
    waiting: dict[str, float] = Field(description="Runnable, but no core was free.")
    pressure: float | None = Field(
        description="Share of the time some task on the machine waited for a core (PSI).")


@dataclass
class CpuWatch:
    """Where the CPU goes, and what waited for it, per group of processes.

    `groups` maps a label to (PIDs, whether to count their children): PostgreSQL's work is
    done by the postmaster's children; this process must not count the workers it spawned.
    The wait says whether the machine is full: a process that waits as long as it runs would
    have run twice as much on a free core.
    """

    groups: dict[str, tuple[list[int], bool]]

    def snapshot(self) -> CpuSnapshot:
        """Cumulative seconds per label now."""
        return CpuSnapshot(
            at=time.perf_counter(),
            used={label: sum(cpu_seconds(pid, children=kids) for pid in pids)
                  for label, (pids, kids) in self.groups.items()},
            waited={label: sum(run_queue_seconds(pid, children=kids) for pid in pids)
                    for label, (pids, kids) in self.groups.items()},
            pressure_s=cpu_pressure_seconds())

    @staticmethod
    def between(a: CpuSnapshot, b: CpuSnapshot) -> CpuUse:
        """CPU used and waited for, per label, between two snapshots (100 % = one core)."""
        dt = max(b.at - a.at, 1e-9)

        def per_label(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
            return {k: round(100 * (y[k] - x.get(k, 0.0)) / dt, 1) for k in y}

        pressure = (None if a.pressure_s is None or b.pressure_s is None
                    else round(100 * (b.pressure_s - a.pressure_s) / dt, 1))
        return CpuUse(used=per_label(a.used, b.used), waiting=per_label(a.waited, b.waited),
                      pressure=pressure)


class AlertWatch:
    """First arrival time of each `provisional_exceedance` event, by (stack_id, at)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                          auto_offset_reset="earliest", enable_auto_commit=False,
                                          fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and follow the topic in the background."""
        await self._consumer.start()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    event = AlertEvent.model_validate_json(record.value or b"")
                    if event.rule is Rule.PROVISIONAL_EXCEEDANCE:
                        key = (event.stack_id, event.at.astimezone(CST).isoformat())
                        self.seen.setdefault(key, now)

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
