"""Gateway throughput: the real hour of provincial traffic replayed as fast as possible.

Replays `../shared/data/hj212-capture-2016-08-24-05.h212` (8 696 frames, 284 loggers, each its
own TCP connection) through the HJ 212 gateway (framing, CRC, auth, 9014 acks) into
(a) an in-memory sink — the gateway's own cost — and (b) the embedded Tansu broker with the
Tansu profile (one record per producer batch). Prints frames/s and peak RSS. The replaying
loggers run in the same process and core, so the figures are a lower bound for the gateway.

    .venv/bin/python bench/bench_gateway.py
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.replay import load_replay, registry_for, replay  # noqa: E402
from stackwatch.services import running_services  # noqa: E402
from stackwatch.settings import GatewaySettings, Settings  # noqa: E402
from streams.gateway import Gateway  # noqa: E402
from streams.gateway_sink import FrameSink, KafkaFrameSink, MemoryFrameSink  # noqa: E402

CAPTURE = ROOT.parent / "shared" / "data" / "hj212-capture-2016-08-24-05.h212"


async def one_run(sink: FrameSink, label: str) -> tuple[str, float, int]:
    """Replay the capture once through a gateway writing to `sink`; (label, frames/s, frames)."""
    log = load_replay(CAPTURE)
    registry = registry_for(log)
    gateway = Gateway(
        settings=GatewaySettings(port=0, auto_register=True, max_connections=2000),
        registry=registry,
        sink=sink,
    )
    await gateway.start()
    try:
        began = time.perf_counter()
        stats = await replay(log.frames, "127.0.0.1", gateway.port, speed=None)
        elapsed = time.perf_counter() - began
    finally:
        await gateway.stop()
    return label, stats.frames / elapsed, stats.frames


async def main() -> None:
    """Both runs, then the README rows."""
    results = [await one_run(MemoryFrameSink(), "in-memory sink")]
    with tempfile.TemporaryDirectory() as tmp, running_services(
        Path(tmp), kafka=True, postgres=False
    ) as endpoints:
        assert endpoints.kafka_bootstrap is not None
        settings = Settings()
        sink = KafkaFrameSink(
            bootstrap=endpoints.kafka_bootstrap,
            raw_topic="bench.raw",
            deadletter_topic="bench.deadletter",
            broker_profile="tansu",
            partitions=settings.topics.partitions,
        )
        results.append(await one_run(sink, "Tansu (tansu profile)"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for label, rate, frames in results:
        print(f"gateway → {label}: {frames} frames, {rate:,.0f} frames/s")
    print(f"peak RSS {rss_mb:.0f} MB")
    for label, rate, frames in results:
        print(
            f"| gateway replay of the real hour | frames/s into {label} | {rate:,.0f} | "
            f"{frames} frames, 284 TCP connections, acks on |"
        )
    print(f"| gateway replay of the real hour | peak RSS | {rss_mb:.0f} MB | both runs |")


if __name__ == "__main__":
    asyncio.run(main())
