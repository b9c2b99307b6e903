"""Bad input against the real pipeline on Tansu: hostile loggers at the gateway, bad records
at the worker. Throughout, a well-behaved logger keeps being served.

Gateway: wrong passwords, an oversized frame, 100 KB without a CRLF, a slow-loris client
dribbling one byte per second and a client that never sends anything, all while a good logger
sends frame after frame on its own connection. Worker (a real `stackwatch worker run`
subprocess): invalid JSON, wrong types, NaN/inf/1e400 values, an unknown MN and a too-future
DataTime on the raw topic, between good frames.

Expected records are what the test sent (frames built by the builder or framed by the
standard's CRC re-implemented in tests/oracles.py); counters are read back from the gateway's
own `CollectorRegistry` and from the worker's `/metrics` endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from embedded.ports import free_port
from embedded.process import terminate
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import DeadLetter, RawFrame, Reading, Verdict
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings, Settings, TopicSettings
from streams.gateway import Gateway
from streams.gateway_judge import MAX_RECORD_BYTES
from tests.kafka_topics import create_topics
from tests.oracles import framed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GOOD_MN, GOOD_PW = "41120001GOOD01", "123456"
OTHER_MN, OTHER_PW = "41120001OTHR02", "654321"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
IDLE_S = 2.5  # small, so the slow-loris and the silent client are cut quickly


def registry() -> StackRegistry:
    return StackRegistry(stacks=[
        StackInfo(stack_id="good", mn=GOOD_MN, password=GOOD_PW, sector="cement",
                  process="kiln_tail"),
        StackInfo(stack_id="other", mn=OTHER_MN, password=OTHER_PW, sector="cement",
                  process="kiln_tail"),
    ])


def upload(mn: str, pw: str, qn: str, so2: float = 12.5) -> bytes:
    """A 2011 real-time upload asking for a 9014 answer (Flag=5)."""
    (text,) = build_frames("2011", mn, pw, T0, {"a21026": {"Rtd": so2}}, qn=qn, ack=True)
    return text.rstrip("\r\n").encode() + b"\r\n"


def body(frame: bytes) -> str:
    return frame.rstrip(b"\r\n").decode()


async def read_ack(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)).decode()


def qn_of(ack: str) -> str:
    return ack.split("QN=", 1)[1].split(";", 1)[0]


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 30) == b""
    except ConnectionResetError:
        return True


async def consume(bootstrap: str, topic: str, done: Callable[[list[Any]], bool]) -> list[Any]:
    """Records of `topic` from the start until `done(records)`, then 1 s more for extras."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        for _ in range(240):  # hang guard (~2 min), not a timing assertion
            if done(records):
                break
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(msgs)
        for msgs in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


# --- gateway -------------------------------------------------------------------------------


async def test_hostile_loggers_do_not_stop_a_good_one(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        broker_profile="tansu",
        topics=TopicSettings(raw=f"{unique_topic}.raw", deadletter=f"{unique_topic}.dead"),
        gateway=GatewaySettings(host="127.0.0.1", port=0, idle_timeout_s=IDLE_S),
    )
    metrics = CollectorRegistry()
    gateway = Gateway.from_settings(settings, registry(), metrics_registry=metrics)

    wrong_pw = upload(OTHER_MN, "000000", "20260105080000201")
    chinese_pw = body(upload(OTHER_MN, OTHER_PW, "20260105080000202")).replace(
        f"PW={OTHER_PW}", "PW=密码")
    chinese_pw_frame = (framed(chinese_pw[6:-4]) + "\r\n").encode()
    other_ok = upload(OTHER_MN, OTHER_PW, "20260105080000203")
    # Table 2: at most 1 024 characters of data segment. 1 500, CRC right, asks for an answer.
    big_seg = body(upload(OTHER_MN, OTHER_PW, "20260105080000301"))[6:-4].replace(
        "a21026-Rtd=12.5", ";".join(f"a21026-Rtd={i}.0" for i in range(100)))
    oversized = (framed(big_seg) + "\r\n").encode()
    assert len(big_seg) > 1024
    junk = b"x" * 100_000  # no CRLF, no '##' for 100 KB
    after_junk = upload(OTHER_MN, OTHER_PW, "20260105080000302")
    loris_frame = upload(OTHER_MN, OTHER_PW, "20260105080000401")

    await gateway.start()
    good_qns: list[str] = []
    loris_sent = bytearray()
    try:
        async def hostile_passwords() -> list[str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(wrong_pw + chinese_pw_frame + other_ok)
            ack = await read_ack(reader)  # the first answer is the right-PW frame's
            writer.close()
            return [qn_of(ack)]

        async def oversized_then_junk() -> list[str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(oversized + junk + b"\r\n" + after_junk)
            ack = await read_ack(reader)  # no answer to the oversized frame or the junk
            writer.close()
            return [qn_of(ack)]

        async def slow_loris() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)

            async def dribble() -> None:
                with contextlib.suppress(ConnectionError):
                    # The header at once, then one byte per second: never a frame in time.
                    pieces = [loris_frame[:6], *(bytes([b]) for b in loris_frame[6:])]
                    for piece in pieces:
                        writer.write(piece)
                        await writer.drain()
                        loris_sent.extend(piece)
                        await asyncio.sleep(1.0)

            task = asyncio.ensure_future(dribble())
            closed = await closed_by_server(reader)
            task.cancel()
            writer.close()
            return closed

        async def silent() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            closed = await closed_by_server(reader)
            writer.close()
            return closed

        hostile = asyncio.gather(hostile_passwords(), oversized_then_junk(), slow_loris(),
                                 silent())
        # The good logger: one frame, wait for its answer, next frame — until the hostile
        # clients are done (both idle ones are closed after IDLE_S), and at least 10 frames.
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        i = 0
        while i < 10 or not hostile.done():
            qn = f"2026010508000{i:04d}"
            writer.write(upload(GOOD_MN, GOOD_PW, qn, so2=float(i)))
            assert qn_of(await read_ack(reader)) == qn
            good_qns.append(qn)
            i += 1
            await asyncio.sleep(0.1)
            assert i < 1000, "hostile clients never finished"
        pw_acks, big_acks, loris_closed, silent_closed = await hostile
        writer.close()
        for _ in range(1000):  # hang guard: wait for the gateway to see every close
            if gateway.connections == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await gateway.stop()

    assert pw_acks == ["20260105080000203"] and big_acks == ["20260105080000302"]
    assert loris_closed and silent_closed
    assert 0 < len(loris_sent) < len(loris_frame)

    def value(name: str, **labels: str) -> float:
        return metrics.get_sample_value(name, labels) or 0.0

    pieces = -(-len(junk) // MAX_RECORD_BYTES)  # 100 000 B in ≤ 16 KiB records: 7
    rejected = {"bad_password": 2, "segment_too_long": 1, "garbage": pieces}
    for reason, count in rejected.items():
        assert value("stackwatch_gateway_frames_total", verdict="rejected",
                     reason=reason) == count, reason
    assert value("stackwatch_gateway_idle_timeouts_total") == 2.0  # slow-loris + silent
    accepted = len(good_qns) + 2
    assert value("stackwatch_gateway_frames_total", verdict="accepted", reason="none") == accepted
    assert value("stackwatch_gateway_acks_total") == accepted
    # The slow-loris's half frame is recorded too, at disconnect (it is a rejected unit).
    n_loris = gateway.stats.frames_received - accepted - sum(rejected.values())
    assert n_loris == 1

    n_raw = gateway.stats.frames_received
    raw = [json.loads(r.value) for r in await consume(
        kafka_bootstrap, settings.topics.raw, lambda rs: len(rs) >= n_raw)]
    assert len(raw) == n_raw
    good = [v for v in raw if v["mn"] == GOOD_MN]
    assert [v["text"].split("QN=")[1][:17] for v in good] == good_qns  # all, in order
    assert all(v["verdict"] == "accepted" for v in good)
    n_dead = n_raw - accepted
    dead = [DeadLetter.model_validate_json(r.value) for r in await consume(
        kafka_bootstrap, settings.topics.deadletter, lambda rs: len(rs) >= n_dead)]
    assert len(dead) == n_dead
    by_reason: dict[str, list[DeadLetter]] = {}
    for d in dead:
        by_reason.setdefault(d.reason, []).append(d)
    # Recorded with the guessed passwords masked (docs/security.md).
    assert [d.payload for d in by_reason["bad_password"]] == [
        body(wrong_pw).replace(";PW=000000;", ";PW=******;"),
        body(chinese_pw_frame).replace(";PW=密码;", ";PW=******;"),
    ]
    assert [d.payload for d in by_reason["segment_too_long"]] == [
        body(oversized).replace(f";PW={OTHER_PW};", ";PW=******;")]
    assert "".join(d.payload for d in by_reason["garbage"]) == junk.decode()
    assert all("split_record" in d.details["reasons"] for d in by_reason["garbage"])
    (loris,) = [d for d in dead if "at_disconnect" in d.details["reasons"]]
    # What the gateway read before closing (a byte written as it closed may never be read).
    assert loris.reason == "truncated" and len(loris.payload) >= 6
    assert loris_sent.decode().startswith(loris.payload)
    assert all(d.stage == "gateway" and d.details["peer"].startswith("127.0.0.1:") for d in dead)


# --- worker --------------------------------------------------------------------------------

KILN_MN = "88888880000003"
KILN = StackInfo(stack_id="kiln-3", mn=KILN_MN, password="123456", sector="cement",
                 process="kiln_tail")
M0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
TOPICS = ("raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter")


def minute_raw(text: str, start: datetime, *, mn: str = KILN_MN) -> RawFrame:
    return RawFrame(text=text, received_at=start + timedelta(minutes=1), peer="10.0.0.3:5000",
                    mn=mn, cn="2051", verdict=Verdict.ACCEPTED)


def good_minute(i: int) -> RawFrame:
    start = M0 + timedelta(minutes=i)
    (text,) = build_frames("2051", KILN_MN, "123456", start,
                           {"a21026": {"Avg": 20.0 + i}, "a19001": {"Avg": 10.0}}, now=start)
    return minute_raw(text, start)


def odd_minute(i: int, cp: str, *, mn: str = KILN_MN, data_time: datetime | None = None) -> bytes:
    start = M0 + timedelta(minutes=i)
    stamp = f"{data_time or start:%Y%m%d%H%M%S}"
    text = framed(f"QN={start:%Y%m%d%H%M%S}000;ST=31;CN=2051;PW=123456;MN={mn};Flag=4;"
                  f"CP=&&DataTime={stamp};{cp}&&")
    return minute_raw(text, start, mn=mn).model_dump_json().encode()


class WorkerRun:
    """One `stackwatch worker run` subprocess with its own topics; killed by PID at the end."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.topics = {n: f"{prefix}.{n}" for n in TOPICS}
        self.app_id = prefix.replace(".", "-")
        self.tmp = tmp
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    async def create_topics(self) -> None:
        await create_topics(self.bootstrap, self.topics.values(), 1)

    def start(self) -> None:
        reg = self.tmp / "registry.yaml"
        StackRegistry(stacks=[KILN]).dump(reg)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
        env.update({f"STACKWATCH_TOPICS__{n.upper()}": t for n, t in self.topics.items()})
        env.update({"STACKWATCH_TOPICS__PARTITIONS": "1", "STACKWATCH_DATA_DIR":
                    str(self.tmp / "data"), "PYTHONPATH": str(REPO)})
        with (self.tmp / "worker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from commands import main; main()", "worker",
                 "run", "--bootstrap", self.bootstrap, "--web-port", str(free_port()),
                 "--metrics-port", str(self.metrics_port), "--app-id", self.app_id,
                 "--registry", str(reg), "--data-dir", str(self.tmp / "faust"),
                 "--log-level", "info"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc.pid, grace=10.0)
            self.proc.wait(timeout=15)

    def log_tail(self) -> str:
        path = self.tmp / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def worker_run(kafka_bootstrap: str, unique_topic: str, tmp_path: Path) -> Iterator[WorkerRun]:
    run = WorkerRun(kafka_bootstrap, unique_topic, tmp_path)
    try:
        yield run
    finally:
        run.stop()


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_worker_dead_letters_bad_records_and_keeps_going(worker_run: WorkerRun) -> None:
    good_json = good_minute(0).model_dump_json()
    # (record on the raw topic, reason of its dead letter); a good minute follows each.
    bad: list[tuple[bytes, str]] = [
        (b"{not json", "malformed_raw"),
        (good_json.replace('"verdict":"accepted"', '"verdict":7').encode(), "malformed_raw"),
        (b"\xff\xfe\x00", "malformed_raw"),
        (odd_minute(0, "a21026-Avg=nan,a21026-Flag=N"), "non_numeric_value"),
        (odd_minute(0, "a21026-Avg=inf"), "non_numeric_value"),
        (odd_minute(0, "a21026-Avg=1e400"), "non_numeric_value"),
        (odd_minute(0, "a21026-Avg=1", mn="UNKNOWN0000009"), "unknown_mn"),
    ]
    # DataTime two days after receipt: decoded fine, refused by the windows as late.
    future = odd_minute(0, "a21026-Avg=1", data_time=M0 + timedelta(days=2))
    records: list[bytes] = []
    for i, (record, _) in enumerate(bad):
        records += [record, good_minute(i + 1).model_dump_json().encode()]
    records.append(future)
    await worker_run.create_topics()
    producer = AIOKafkaProducer(bootstrap_servers=worker_run.bootstrap, max_batch_size=1)
    await producer.start()
    try:
        for record in records:
            await producer.send(worker_run.topics["raw"], record, key=KILN_MN.encode())
        await producer.flush()
    finally:
        await producer.stop()
    worker_run.start()

    expected_dead = len(bad) + 1
    dead = [DeadLetter.model_validate_json(r.value) for r in await consume(
        worker_run.bootstrap, worker_run.topics["deadletter"],
        lambda rs: len(rs) >= expected_dead or not worker_run.alive())]
    assert len(dead) == expected_dead, worker_run.log_tail()
    assert [(d.stage, d.reason) for d in dead] == (
        [("decode", why) for _, why in bad] + [("aggregate", "late")]
    )
    for d, (record, why) in zip(dead, bad, strict=False):
        expected = (record.decode("utf-8", errors="backslashreplace") if why == "malformed_raw"
                    else RawFrame.model_validate_json(record).text)
        assert d.payload == expected
    readings = [Reading.model_validate_json(r.value) for r in await consume(
        worker_run.bootstrap, worker_run.topics["readings"],
        lambda rs: len(rs) >= len(bad) + 1)]
    # Every good minute came through, in order, with its own value (20 + i).
    good = [(r.data_time, r.values["a21026"].value) for r in readings
            if r.data_time is not None and r.data_time < M0 + timedelta(days=1)]
    assert good == [(M0 + timedelta(minutes=i), 20.0 + i) for i in range(1, len(bad) + 1)]

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for _ in range(100):  # the counters are bumped before the send is awaited; hang guard
        samples = await scrape(worker_run.metrics_port)
        key = ("stackwatch_dead_letters_total", (("reason", "late"), ("stage", "aggregate")))
        if samples.get(key) == 1.0:
            break
        await asyncio.sleep(0.1)

    def count(reason: str, stage: str = "decode") -> float:
        return samples.get(
            ("stackwatch_dead_letters_total", (("reason", reason), ("stage", stage))), 0.0)

    assert count("malformed_raw") == 3.0
    assert count("non_numeric_value") == 3.0
    assert count("unknown_mn") == 1.0
    assert count("late", "aggregate") == 1.0
    assert samples[("stackwatch_readings_total", (("kind", "minute"),))] == len(bad) + 1
    assert worker_run.alive(), worker_run.log_tail()
