"""Baseline child: a plain Faust agent updating a table, on the pipeline's broker.

Run by `bench.bench_baselines` as
`python -m bench.faust_baseline BOOTSTRAP TOPIC PARTITIONS RECORDS OUT` on a topic already
holding RECORDS records. The agent counts each key in a memory-store table
(changelog-backed, as the worker's `stack_state`) and acknowledges every event as Faust does
by default; the consumers fetch with the worker's transport. When the last record is counted
it writes `records/s` (first to last record, so start-up and group join do not count) to OUT
as JSON, and the parent stops it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import faust

from streams.faust_config import TANSU_PROFILE, broker_url


def build(bootstrap: str, topic_name: str, partitions: int, expected: int, out: Path,
          data_dir: Path) -> faust.App:
    """The app: one agent, one table, Faust's defaults otherwise."""
    app = faust.App(
        f"bench-faust-{topic_name}", broker=broker_url(bootstrap), store="memory://",
        datadir=str(data_dir), web_enabled=False, topic_partitions=partitions, **TANSU_PROFILE,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    counts = app.Table("counts", default=int, partitions=partitions)
    seen = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for key, _value in stream.items():
            counts[key] += 1
            seen["n"] += 1
            if seen["n"] == 1:
                seen["first"] = time.perf_counter()
            if seen["n"] == expected:
                rate = (expected - 1) / max(time.perf_counter() - seen["first"], 1e-9)
                await asyncio.to_thread(out.write_text, json.dumps({"records_per_s": rate}))

    return app


def main(argv: list[str]) -> None:
    bootstrap, topic, partitions, expected = argv[0], argv[1], int(argv[2]), int(argv[3])
    out = Path(argv[4])
    app = build(bootstrap, topic, partitions, expected, out, out.parent / f"faust-{topic}")
    worker = faust.Worker(app, loglevel="warning")
    worker.spinner = None  # it would set the root logger to DEBUG (commands.options)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
