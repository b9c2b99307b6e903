"""Benchmark: stream-worker throughput and end-to-end latency on the embedded Tansu.

Standalone (not part of the test suite): starts its own Tansu via
`stackwatch.services.running_services`, one `stackwatch worker run` subprocess, and prints

1. **throughput** — N stacks × M minute frames (CN 2051) produced as fast as possible to the
   raw topic; frames/s from the first produce until the worker has emitted the last frame's
   minute aggregate (decode + process + emit + state write, one worker);
2. **latency** — frames paced below capacity; each frame (SO2 above the ultra-low limit) makes
   a `provisional_exceedance` update on the alerts topic; latency = wall time from the frame's
   produce call to the alert event being consumed, as p50/p90/p99/max.

    .venv/bin/python -m bench.bench_pipeline [--stacks 10] [--minutes 120] [--paced 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stackwatch.alerts import AlertEvent
from stackwatch.hj212 import CST, build_frames
from stackwatch.models import AggregateRecord, RawFrame, Verdict
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.services import running_services
from stackwatch.services.ports import free_port
from stackwatch.services.process import terminate

REPO = Path(__file__).resolve().parents[1]
SO2, O2 = "a21026", "a19001"
DAY = datetime(2026, 11, 2, tzinfo=CST)
TOPICS = ["raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter"]
PARTITIONS = 4


def stack(i: int, group: str) -> StackInfo:
    return StackInfo(stack_id=f"{group}-{i:03d}", mn=f"MN{group.upper()}{i:010d}",
                     sector="cement", process="kiln_tail")


def frame(st: StackInfo, minute: int) -> RawFrame:
    t = DAY + timedelta(minutes=minute)
    so2 = 50.0 if minute % 2 == 0 else 52.0  # above the 35 mg/m³ ultra-low limit
    values = {SO2: {"Avg": so2}, O2: {"Avg": 10.0}}
    (text,) = build_frames("2051", st.mn, "123456", t, values, now=t)
    return RawFrame(text=text, received_at=t + timedelta(minutes=1), peer="bench", mn=st.mn,
                    cn="2051", verdict=Verdict.ACCEPTED)


def main(args: argparse.Namespace) -> None:
    fast = [stack(i, "tp") for i in range(args.stacks)]
    paced = [stack(i, "lat") for i in range(args.paced_stacks)]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        with running_services(tmp / "services", kafka=True, postgres=False) as endpoints:
            bootstrap = endpoints.kafka_bootstrap
            assert bootstrap is not None
            names = {t: f"bench.{t}" for t in TOPICS}
            asyncio.run(create_topics(bootstrap, list(names.values())))
            registry = tmp / "registry.yaml"
            StackRegistry(stacks=fast + paced).dump(registry)
            env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
            env |= {f"STACKWATCH_TOPICS__{t.upper()}": n for t, n in names.items()}
            env |= {"STACKWATCH_TOPICS__PARTITIONS": str(PARTITIONS),
                    "STACKWATCH_DATA_DIR": str(tmp / "data"), "STACKWATCH_LOG_LEVEL": "WARNING"}
            with (tmp / "worker.log").open("ab") as log:
                worker = subprocess.Popen(
                    [sys.executable, "-c", "from stackwatch.cli import main; main()", "worker",
                     "run", "--bootstrap", bootstrap, "--web-port", str(free_port()),
                     "--metrics-port", str(free_port()), "--app-id", "bench",
                     "--registry", str(registry), "--log-level", "warning"],
                    cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                asyncio.run(run_bench(args, bootstrap, names, fast, paced))
            except TimeoutError:
                print((tmp / "worker.log").read_text(errors="replace")[-3000:])
                raise
            finally:
                terminate(worker.pid, grace=10.0)


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def run_bench(args: argparse.Namespace, bootstrap: str, names: dict[str, str],
                    fast: list[StackInfo], paced: list[StackInfo]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1)
    consumer = AIOKafkaConsumer(names["minute"], names["alerts"], bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        # Warm-up: the worker has joined the group once a first frame comes out the other end.
        print("waiting for the worker ...", flush=True)
        await producer.send_and_wait(names["raw"], frame(fast[0], -1).model_dump_json().encode(),
                                     key=fast[0].mn.encode())
        await _until(consumer, names, lambda t, v: t == names["minute"], 120.0)

        frames = [(st, m) for m in range(args.minutes) for st in fast]
        last = {(st.stack_id, (DAY + timedelta(minutes=args.minutes - 1)).isoformat())
                for st in fast}
        started = time.perf_counter()
        for st, m in frames:
            await producer.send(names["raw"], frame(st, m).model_dump_json().encode(),
                                key=st.mn.encode())
        await producer.flush()
        produced = time.perf_counter() - started

        def is_last(topic: str, value: bytes) -> bool:
            if topic != names["minute"]:
                return False
            rec = AggregateRecord.model_validate_json(value)
            last.discard((rec.stack_id, rec.period_start.isoformat()))
            return not last

        await _until(consumer, names, is_last, 600.0)
        elapsed = time.perf_counter() - started
        print(f"throughput: {len(frames)} frames ({len(fast)} stacks × {args.minutes} min) "
              f"produced in {produced:.1f} s, processed in {elapsed:.1f} s → "
              f"{len(frames) / elapsed:.0f} frames/s")
        print(f"| stream worker (decode + process), one worker on Tansu | frames/s | "
              f"{len(frames) / elapsed:.0f} | {len(fast)} stacks × {args.minutes} minute frames |")

        # Latency: 60 warm-up minutes per stack make the rolling mean ready (≥ 45 minutes),
        # then every further minute frame emits a provisional_exceedance update.
        for m in range(60):
            for st in paced:
                await producer.send(names["raw"], frame(st, m).model_dump_json().encode(),
                                    key=st.mn.encode())
        await producer.flush()
        await asyncio.sleep(5.0)
        sent: dict[tuple[str, str], float] = {}
        seen: dict[tuple[str, str], float] = {}
        interval = 1.0 / args.rate
        for k in range(args.paced):
            st, m = paced[k % len(paced)], 60 + k // len(paced)
            at = (DAY + timedelta(minutes=m + 1)).isoformat()
            sent[(st.stack_id, at)] = time.perf_counter()
            await producer.send_and_wait(names["raw"], frame(st, m).model_dump_json().encode(),
                                         key=st.mn.encode())
            await _drain(consumer, names, seen, timeout_ms=int(interval * 1000))
        deadline = time.perf_counter() + 60
        while len(seen.keys() & sent.keys()) < len(sent) and time.perf_counter() < deadline:
            await _drain(consumer, names, seen, timeout_ms=500)
        lat = sorted((seen[k] - sent[k]) * 1000 for k in sent if k in seen)
        if not lat:
            print("latency: no alert events observed")
            return
        q = statistics.quantiles(lat, n=100)
        print(f"latency frame→alert event ({len(lat)}/{len(sent)} events at {args.rate}/s): "
              f"p50 {q[49]:.0f} ms, p90 {q[89]:.0f} ms, p99 {q[98]:.0f} ms, max {lat[-1]:.0f} ms")
        print(f"| stream worker, frame produced → alert event consumed | latency p50 / p90 / p99 "
              f"| {q[49]:.0f} / {q[89]:.0f} / {q[98]:.0f} ms "
              f"| {len(lat)} frames at {args.rate}/s |")
    finally:
        await consumer.stop()
        await producer.stop()


async def _drain(consumer: AIOKafkaConsumer, names: dict[str, str],
                 seen: dict[tuple[str, str], float], timeout_ms: int) -> None:
    batch = await consumer.getmany(timeout_ms=max(timeout_ms, 1))
    now = time.perf_counter()
    for tp, records in batch.items():
        if tp.topic != names["alerts"]:
            continue
        for r in records:
            ev = AlertEvent.model_validate_json(r.value or b"")
            if ev.rule.value == "provisional_exceedance":
                seen.setdefault((ev.stack_id, ev.at.astimezone(CST).isoformat()), now)


async def _until(consumer: AIOKafkaConsumer, names: dict[str, str], pred: object,
                 limit_s: float) -> None:
    assert callable(pred)
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for tp, records in batch.items():
            for r in records:
                if pred(tp.topic, r.value or b""):
                    return
    raise TimeoutError("the worker produced nothing in time (see its log)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stacks", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--paced-stacks", type=int, default=5)
    parser.add_argument("--paced", type=int, default=200, help="paced frames for latency")
    parser.add_argument("--rate", type=float, default=20.0, help="paced frames per second")
    main(parser.parse_args())
