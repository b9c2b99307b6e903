"""A real Faust worker against Tansu survives a SIGTERM restart with its tables intact.

The worker (tests/integration/faust_smoke_app.py, tansu broker profile) counts events in a
table and in a 60 s tumbling event-time window. It is stopped with SIGTERM after the first
batch, restarted, fed a second batch, and its state must then be exactly the hand-counted
totals of both batches: the tables were recovered from their changelogs, and recovery did
not trip over Tansu's batch-based latest offsets (no `ConsistencyError` in the log).

A second test writes a changelog as one producer batch, the case Tansu's end offset gets
wrong, and checks that recovery reads all of it (streams/changelog_marker.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from embedded.ports import free_port
from embedded.process import terminate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC).timestamp()  # window starts at T0 + k*60

# (stack, seconds after T0). Windows: [T0, T0+60) and [T0+60, T0+120).
BATCH_1 = [("S1", 5), ("S1", 20), ("S2", 30), ("S1", 65)]
BATCH_2 = [("S1", 70), ("S2", 59), ("S2", 119)]
# Totals after both batches: S1 = 3 + 1 = 4, S2 = 1 + 2 = 3.
# S1 windows: [T0, +60) ← 5, 20 → 2; [T0+60, +120) ← 65, 70 → 2.
# S2 windows: [T0, +60) ← 30, 59 → 2; [T0+60, +120) ← 119 → 1.
EXPECTED_AFTER_1 = {"totals": {"S1": 3, "S2": 1}}
EXPECTED_TOTALS = {"S1": 4, "S2": 3}
W0, W1 = int(T0), int(T0) + 60  # window start keys in the snapshot (epoch seconds)
EXPECTED_WINDOWS = {f"S1@{W0}": 2, f"S1@{W1}": 2, f"S2@{W0}": 2, f"S2@{W1}": 1}


class Worker:
    """One `faust worker` subprocess, killed by PID whatever happens."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.log_file = log_file
        with log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.faust_smoke_app", "worker", "-l", "info"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def sigterm(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM) and wait; returns the exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc.pid, grace=5.0)
            self.proc.wait(timeout=10)

    def listening_addresses(self) -> set[str]:
        conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _wait_for_totals(
    worker: Worker, snapshot: Path, totals: dict[str, int], timeout: float = 90.0
) -> dict[str, Any] | None:
    """Poll the worker's snapshot until it shows `totals` (or the worker dies / time runs out)."""
    deadline = time.monotonic() + timeout
    state = _read(snapshot)
    while time.monotonic() < deadline and worker.proc.poll() is None:
        state = _read(snapshot)
        if state is not None and state["totals"] == totals:
            return state
        time.sleep(0.2)
    return state


async def _produce(bootstrap: str, topic: str, batch: list[tuple[str, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for stack, offset_s in batch:
            value = json.dumps({"stack": stack, "ts": T0 + offset_s}).encode()
            await producer.send_and_wait(topic, value, key=stack.encode())
    finally:
        await producer.stop()


async def test_worker_restart_recovers_tables(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, workers: list[Worker]
) -> None:
    topic = f"{unique_topic}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    web_port = free_port()
    base_env = {
        **os.environ,
        "SMOKE_BROKER": kafka_bootstrap,
        "SMOKE_TOPIC": topic,
        "SMOKE_APP_ID": unique_topic.replace(".", "-"),
        "SMOKE_DATA_DIR": str(tmp_path / "faust"),
        "SMOKE_WEB_PORT": str(web_port),
        "PYTHONPATH": str(REPO),
    }
    log_file = tmp_path / "worker.log"

    await _produce(kafka_bootstrap, topic, BATCH_1)
    snap_1 = tmp_path / "snapshot-1.json"
    first = Worker({**base_env, "SMOKE_SNAPSHOT": str(snap_1)}, log_file)
    workers.append(first)
    state = _wait_for_totals(first, snap_1, EXPECTED_AFTER_1["totals"])
    assert state is not None and state["totals"] == EXPECTED_AFTER_1["totals"], (
        f"{state}\n{log_file.read_text()[-3000:]}"
    )
    # The web server binds loopback only (Faust's own default is every interface).
    assert first.listening_addresses() == {"127.0.0.1"}
    assert first.sigterm() == 0

    await _produce(kafka_bootstrap, topic, BATCH_2)
    snap_2 = tmp_path / "snapshot-2.json"
    second = Worker({**base_env, "SMOKE_SNAPSHOT": str(snap_2)}, log_file)
    workers.append(second)
    state = _wait_for_totals(second, snap_2, EXPECTED_TOTALS)
    log = log_file.read_text()
    assert state is not None, log[-3000:]
    assert state["totals"] == EXPECTED_TOTALS, log[-3000:]
    assert state["per_minute"] == EXPECTED_WINDOWS
    assert second.sigterm() == 0
    assert "ConsistencyError" not in log_file.read_text()


async def test_recovery_reads_a_changelog_written_in_one_batch(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, workers: list[Worker]
) -> None:
    app_id = unique_topic.replace(".", "-")
    changelog = f"{app_id}-totals-changelog"
    topic = f"{unique_topic}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in (topic, changelog)]
        )
    finally:
        await admin.close()
    # A previous worker counted S1 up to 10: ten changelog records, sent as one batch.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200)
    await producer.start()
    try:
        futures = [
            await producer.send(changelog, json.dumps(n).encode(), key=b'"S1"', partition=0)
            for n in range(1, 11)
        ]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    assert offsets == list(range(10))
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([TopicPartition(changelog, 0)]))[
            TopicPartition(changelog, 0)
        ]
    finally:
        await consumer.stop()
    # Tansu reports the last batch's base offset + 1: recovery up to it would read one record.
    assert end == 1

    snap = tmp_path / "snapshot.json"
    worker = Worker(
        {
            **os.environ,
            "SMOKE_BROKER": kafka_bootstrap,
            "SMOKE_TOPIC": topic,
            "SMOKE_APP_ID": app_id,
            "SMOKE_DATA_DIR": str(tmp_path / "faust"),
            "SMOKE_WEB_PORT": str(free_port()),
            "SMOKE_SNAPSHOT": str(snap),
            "PYTHONPATH": str(REPO),
        },
        tmp_path / "worker.log",
    )
    workers.append(worker)
    await _produce(kafka_bootstrap, topic, [("S1", 5)])
    # Recovered 10, plus the new event: 11 (an end-offset recovery would give 1 + 1 = 2).
    state = _wait_for_totals(worker, snap, {"S1": 11})
    log = (tmp_path / "worker.log").read_text()
    assert state is not None and state["totals"] == {"S1": 11}, log[-3000:]
    assert worker.sigterm() == 0
