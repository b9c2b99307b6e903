"""Baselines: what the raw clients do on the same servers, so pipeline figures become ratios.

On the embedded Tansu, with `RawFrame` JSON records of realistic ~400-character frames (what
the gateway produces, ~0.6 kB):
* aiokafka produce, `send_and_wait` one record at a time (`acks=all`, one record per batch):
  one broker round trip per record, as a single stop-and-wait producer sees it;
* aiokafka produce, pipelined, one record per batch (how the gateway ran on Tansu before
  batching, with many loggers in flight);
* aiokafka produce, batched (64 KiB batches, linger 5 ms: the kafka profile);
* aiokafka consume of the one-record-per-batch topic (assigned partitions, no group);
* a plain Faust agent counting keys in a changelog-backed table (`bench/faust_baseline.py`, a
  child process), over the batched topic: what Faust itself does per record on this broker.
On the embedded PostgreSQL 18, psycopg `COPY … FROM STDIN` of rows into `readings`, the table
the sinks write, in one transaction per run.

The pipeline benchmark runs these on its own servers first (same run, same machine state).

    stackwatch bench run baselines [--quick] [--runs N]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.frames import flue_gas_inputs
from bench.infra import create_topics, fresh_database, server_version
from bench.options import BenchOptions
from bench.results import BenchResult, figure, new_result
from embedded import running_services
from sinks.db import connect
from sinks.rows import READING_COLUMNS
from stackwatch.models import RawFrame, Verdict
from stackwatch.settings import Settings

FACTORS = ("a21026", "a21002", "a34013", "a19001", "a01011", "a01012", "a01013", "a01014")


def raw_records(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: RawFrame JSON keyed by MN, as the gateway produces them."""
    now = datetime.now(UTC)
    out: list[tuple[bytes, bytes]] = []
    for item in flue_gas_inputs(min(n, 2000)):
        raw = RawFrame(text=item.build(), received_at=now, peer="127.0.0.1:50000", mn=item.mn,
                       cn=item.cn, verdict=Verdict.ACCEPTED)
        out.append((item.mn.encode(), raw.model_dump_json().encode()))
    return [out[i % len(out)] for i in range(n)]


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *,
                   awaited: bool, batched: bool) -> float:
    batching: dict[str, Any] = ({"max_batch_size": 64 * 1024, "linger_ms": 5} if batched
                                else {"max_batch_size": 1, "linger_ms": 0})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **batching)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")  # metadata + connection, untimed
        started = time.perf_counter()
        if awaited:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key)
        else:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, partitions: int, expected: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        deadline = started + 120
        while seen < expected and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def kafka_rates(bootstrap: str, partitions: int, runs: int, quick: bool
                      ) -> dict[str, list[float]]:
    """Per-run records/s of the four Kafka baselines."""
    n_awaited, n_stream = (500, 3000) if quick else (2000, 10_000)
    records = raw_records(n_stream)
    out: dict[str, list[float]] = {"awaited": [], "pipelined": [], "batched": [], "consume": []}
    for r in range(runs):
        names = {k: f"bench.base.{k}.{r}" for k in ("awaited", "pipelined", "batched")}
        await create_topics(bootstrap, list(names.values()), partitions)
        out["awaited"].append(await _produce(bootstrap, names["awaited"], records[:n_awaited],
                                             awaited=True, batched=False))
        out["pipelined"].append(await _produce(bootstrap, names["pipelined"], records,
                                               awaited=False, batched=False))
        out["batched"].append(await _produce(bootstrap, names["batched"], records,
                                             awaited=False, batched=True))
        out["consume"].append(await _consume(bootstrap, names["pipelined"], partitions,
                                             n_stream + 1))
        print(f"  run {r + 1}/{runs}: produce awaited {out['awaited'][-1]:,.0f}/s, pipelined "
              f"{out['pipelined'][-1]:,.0f}/s, batched {out['batched'][-1]:,.0f}/s, consume "
              f"{out['consume'][-1]:,.0f}/s", flush=True)
    return out


FAUST_TIMEOUT_S = 240.0
REPO = Path(__file__).resolve().parents[1]


def faust_rate(bootstrap: str, topic: str, partitions: int, records: int, tmp: Path) -> float:
    """records/s of `bench.faust_baseline` over `topic` (which holds `records` records)."""
    out = tmp / f"{topic}.json"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_baseline", bootstrap, topic, str(partitions),
         str(records), str(out)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + FAUST_TIMEOUT_S
        while not out.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Faust baseline did not count {records} records "
                                   f"(exit {child.poll()})")
            time.sleep(0.2)
        time.sleep(0.1)  # the file is written in one call; let it land
        return float(json.loads(out.read_text())["records_per_s"])
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def faust_rates(bootstrap: str, partitions: int, runs: int, quick: bool) -> list[float]:
    """Per-run records/s of the plain Faust agent + table, each over a fresh batched topic."""
    n = 3000 if quick else 10_000
    records = raw_records(n)
    out: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as tmp:
        for r in range(runs):
            topic = f"bench.base.faust.{r}.{os.getpid()}"
            asyncio.run(create_topics(bootstrap, [topic], partitions))
            asyncio.run(_produce(bootstrap, topic, records, awaited=False, batched=True))
            out.append(faust_rate(bootstrap, topic, partitions, n + 1, Path(tmp)))
            print(f"  run {r + 1}/{runs}: Faust agent + table {out[-1]:,.0f} records/s",
                  flush=True)
    return out


def reading_rows(n: int) -> list[tuple[Any, ...]]:
    """`n` distinct readings rows (READING_COLUMNS order): 8 factors per minute per stack."""
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        stack, rest = divmod(i, len(FACTORS) * 1440)
        minute, f = divmod(rest, len(FACTORS))
        at = t0 + timedelta(minutes=minute)
        v = 20.0 + (i % 97) * 0.37
        rows.append((f"copy-{stack:05d}", FACTORS[f], "2051", at, v, v * 0.9, v * 1.1, None,
                     v * 1.18, None, None, "N", None, f"8888{stack:010d}", None, False,
                     at + timedelta(seconds=65), "31"))
    return rows


def copy_rates(dsn: str, runs: int, quick: bool) -> list[float]:
    """rows/s of COPY into `readings` (emptied before each run), commit included."""
    rows = reading_rows(20_000 if quick else 100_000)
    assert len(rows[0]) == len(READING_COLUMNS)
    statement = f"COPY readings ({', '.join(READING_COLUMNS)}) FROM STDIN"
    out: list[float] = []
    with connect(dsn) as conn:
        for r in range(runs):
            conn.execute("TRUNCATE readings")
            conn.commit()
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            out.append(len(rows) / (time.perf_counter() - started))
            print(f"  run {r + 1}/{runs}: COPY {out[-1]:,.0f} rows/s", flush=True)
        conn.execute("TRUNCATE readings")
        conn.commit()
    return out


def measure(bootstrap: str, dsn: str, opts: BenchOptions, partitions: int) -> BenchResult:
    """All baselines on the given servers (the pipeline benchmark calls this first)."""
    runs = opts.pick_runs(3, 1)
    print("baselines: raw aiokafka on Tansu, raw psycopg COPY on PostgreSQL", flush=True)
    kafka = asyncio.run(kafka_rates(bootstrap, partitions, runs, opts.quick))
    faust_agent = faust_rates(bootstrap, partitions, runs, opts.quick)
    db = fresh_database(dsn, "bench_baselines")
    copy = copy_rates(db, runs, opts.quick)
    result = new_result("baselines", "raw clients, same servers", quick=opts.quick,
                        postgresql=server_version(db), settings={
                            "runs": runs, "partitions": partitions,
                            "record": "RawFrame JSON of a ~400-character frame, keyed by MN",
                            "copy_rows": 20_000 if opts.quick else 100_000,
                            "copy_table": "readings (migrated schema, plain PostgreSQL)",
                        })
    result.figures += [
        figure("aiokafka produce, send_and_wait one by one", kafka["awaited"], "records/s",
               notes="acks=all, one record per batch: one round trip per record"),
        figure("aiokafka produce, pipelined, one record per batch", kafka["pipelined"],
               "records/s",
               notes="one record per batch, many in flight (the gateway on Tansu before batching)"),
        figure("aiokafka produce, batched", kafka["batched"], "records/s",
               notes="64 KiB batches, linger 5 ms (kafka profile)"),
        figure("aiokafka consume", kafka["consume"], "records/s",
               notes="one-record batches, assigned partitions, no group"),
        figure("Faust agent + table", faust_agent, "records/s",
               notes="plain agent counting keys in a memory-store table with changelog, "
               "Faust's per-event acks; first to last record"),
        figure("psycopg COPY into readings", copy, "rows/s",
               notes="one transaction per run, commit included"),
    ]
    return result


def run(opts: BenchOptions) -> list[BenchResult]:
    """Baselines alone, on servers of their own."""
    partitions = Settings().topics.partitions
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp, running_services(
        Path(tmp), kafka=True, postgres=True
    ) as endpoints:
        assert endpoints.kafka_bootstrap is not None and endpoints.postgres_dsn is not None
        return [measure(endpoints.kafka_bootstrap, endpoints.postgres_dsn, opts, partitions)]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["baselines", *sys.argv[1:]]))
