"""Gateway throughput: N concurrent simulated loggers over loopback TCP, 9014 acks on.

Each logger has its own TCP connection (`simulators.client.LoggerClient`) and sends realistic
~400-character frames with Flag.A = 1, stop-and-wait: the next frame goes only after the 9014
answer, which the gateway sends only after the sink acknowledged the record. Sinks:
(a) in memory — the gateway's own cost (framing, CRC, decode, auth, records, acks);
(b) the raw topic on the embedded Tansu, tansu broker profile (`acks=all`, batches of
`kafka.linger_ms`). Connections are opened (one untimed frame each) before the clock starts.
The loggers run in the same process and event loop as the gateway, so the figures are a
lower bound for the gateway on its own.

    stackwatch bench run gateway [--quick] [--runs N] [--loggers 50,200,1000]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bench.frames import PASSWORD, length_summary, logger_frames, mn_of
from bench.options import BenchOptions
from bench.results import BenchResult, figure, new_result
from embedded import running_services
from simulators.client import LoggerClient
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings, Settings
from streams.gateway import Gateway
from streams.gateway_sink import FrameSink, KafkaFrameSink, MemoryFrameSink


def registry(loggers: int) -> StackRegistry:
    """The gateway accepts exactly the simulated loggers (MN + PW checked)."""
    return StackRegistry(stacks=[
        StackInfo(stack_id=f"gw-{i:05d}", mn=mn_of(i), password=SecretStr(PASSWORD),
                  sector="cement", process="kiln_tail")
        for i in range(loggers)
    ])


async def _send_all(client: LoggerClient, frames: list[bytes]) -> None:
    for raw in frames:
        qn = raw.split(b"QN=", 1)[1].split(b";", 1)[0].decode()
        await client.send(raw, ack=True, qn=qn)


async def one_run(gateway: Gateway, loggers: int, per_logger: int, seed: int) -> float:
    """One run: open N connections, then time N × `per_logger` acknowledged frames."""
    frames = [logger_frames(i, per_logger + 1, seed=seed) for i in range(loggers)]
    clients = [LoggerClient("127.0.0.1", gateway.port, mn=mn_of(i), ack_timeout=60.0,
                            retries=0) for i in range(loggers)]
    try:
        await asyncio.gather(*(_send_all(c, f[:1]) for c, f in zip(clients, frames, strict=True)))
        started = time.perf_counter()
        await asyncio.gather(*(_send_all(c, f[1:]) for c, f in zip(clients, frames, strict=True)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    acked = sum(c.stats.acked for c in clients)
    if acked != loggers * (per_logger + 1):
        raise RuntimeError(f"only {acked} of {loggers * (per_logger + 1)} frames acknowledged")
    return loggers * per_logger / elapsed


async def measure(sink: FrameSink, loggers: int, per_logger: int, runs: int) -> list[float]:
    """`runs` runs against one gateway (started once per sink and N)."""
    gateway = Gateway(settings=GatewaySettings(port=0, max_connections=loggers + 100),
                      registry=registry(loggers), sink=sink)
    await gateway.start()
    try:
        return [await one_run(gateway, loggers, per_logger, seed=r) for r in range(runs)]
    finally:
        await gateway.stop()


def run(opts: BenchOptions) -> list[BenchResult]:
    """Memory sink and Tansu, for each N; returns the `gateway` result."""
    runs = opts.pick_runs(3, 1)
    counts = opts.loggers or ([50, 200] if opts.quick else [50, 200, 1000])
    total = 1000 if opts.quick else 4000
    sample = logger_frames(0, 20)
    lengths = length_summary(sample)
    settings = Settings()
    plan = {n: max(2, total // n) for n in counts}
    rates: dict[tuple[str, int], list[float]] = {}
    for n, k in plan.items():
        print(f"gateway → memory sink: {n} loggers × {k} frames", flush=True)
        rates[("memory", n)] = asyncio.run(measure(MemoryFrameSink(), n, k, runs))
    with tempfile.TemporaryDirectory(prefix="bench-gw-") as tmp, running_services(
        Path(tmp), kafka=True, postgres=False
    ) as endpoints:
        assert endpoints.kafka_bootstrap is not None
        for n, k in plan.items():
            print(f"gateway → Tansu raw topic: {n} loggers × {k} frames", flush=True)
            sink = KafkaFrameSink(
                bootstrap=endpoints.kafka_bootstrap, raw_topic=f"bench.gw{n}.raw",
                deadletter_topic=f"bench.gw{n}.deadletter",
                partitions=settings.topics.partitions,
            )
            rates[("tansu", n)] = asyncio.run(measure(sink, n, k, runs))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = new_result("gateway", "HJ 212 gateway, loopback TCP", quick=opts.quick, settings={
        "loggers": counts, "frames_per_logger": plan, "runs": runs,
        "frame_length_chars": lengths, "ack": "Flag.A=1, 9014 after the sink's ack",
        "broker_profile": "tansu (batched: 64 kB, linger 5 ms, acks=all)",
        "partitions": settings.topics.partitions,
    })
    for sink_name, label in (("memory", "in-memory sink"), ("tansu", "Tansu raw topic")):
        for n in counts:
            result.figures.append(figure(
                f"{n} loggers → {label}, frames/s", rates[(sink_name, n)], "frames/s",
                notes=f"{n} TCP connections × {plan[n]} frames, stop-and-wait"))
    result.figures.append(figure(
        "peak RSS of the benchmark process", [rss_mb], "MB",
        notes="gateway + all simulated loggers in one process"))
    return [result]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["gateway", *sys.argv[1:]]))
