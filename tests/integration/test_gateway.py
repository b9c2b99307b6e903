"""The gateway against the real Tansu broker: acks, raw topic, dead letters, a real capture.

Expected records are what the test itself sent (frames built with the codec's builder, the
standard's CRC algorithm re-implemented here for the capture), never read back from the code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from stackwatch.hj212 import build_frames
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings, Settings, TopicSettings
from streams.gateway import Gateway
from tests.oracles import intact
from tests.shared_data import CAPTURE

pytestmark = pytest.mark.integration

MN_A = "41120001CM0001"
MN_B = "41120001PW0002"
PW_A = "123456"
PW_B = "654321"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)






def upload(mn: str, pw: str, qn: str) -> bytes:
    """One 2011 real-time upload asking for a 9014 answer (Flag=5: 2017 + A bit)."""
    frames = build_frames(
        cn="2011",
        mn=mn,
        pw=pw,
        data_time=T0,
        values={"a34013": {"Rtd": 3.2}, "a21026": {"Rtd": 12.5}},
        qn=qn,
        ack=True,
    )
    assert len(frames) == 1
    text = frames[0]
    assert ";Flag=5;" in text  # the builder honoured the ack request
    return text.encode() if text.endswith("\r\n") else (text + "\r\n").encode()


def bad_crc(frame: bytes) -> bytes:
    body = frame.rstrip(b"\r\n")
    wrong = b"0000" if body[-4:] != b"0000" else b"1111"
    return body[:-4] + wrong + b"\r\n"


def text_of(frame: bytes) -> str:
    """The frame as recorded: its bytes, with the password (one of this test's) masked."""
    text = frame.rstrip(b"\r\n").decode()
    for pw in (PW_A, PW_B, "000000"):
        text = text.replace(f";PW={pw};", ";PW=******;")
    return text


def registry() -> StackRegistry:
    return StackRegistry(
        stacks=[
            StackInfo.model_validate(
                {
                    "stack_id": "a",
                    "mn": MN_A,
                    "password": PW_A,
                    "sector": "cement",
                    "process": "kiln_tail",
                }
            ),
            StackInfo.model_validate(
                {
                    "stack_id": "b",
                    "mn": MN_B,
                    "password": PW_B,
                    "sector": "power",
                    "process": "coal_boiler",
                }
            ),
        ]
    )


def settings_for(bootstrap: str, prefix: str, *, auto_register: bool = False) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        broker_profile="tansu",
        topics=TopicSettings(raw=f"{prefix}.raw", deadletter=f"{prefix}.deadletter"),
        gateway=GatewaySettings(
            host="127.0.0.1", port=0, idle_timeout_s=60, auto_register=auto_register
        ),
    )


async def consume(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """All records of `topic` from the beginning: wait for `expected`, then make sure no more."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        for _ in range(120):
            if len(records) >= expected:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
        batch = await consumer.getmany(timeout_ms=1500)  # anything beyond the expected?
        for msgs in batch.values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def read_ack(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)).decode()


def qn_of(ack: str) -> str:
    return ack.split("QN=", 1)[1].split(";", 1)[0]


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(6000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"gave up waiting: {what}")


async def test_two_loggers_acks_raw_and_deadletter(kafka_bootstrap: str, unique_topic: str) -> None:
    settings = settings_for(kafka_bootstrap, unique_topic)
    gateway = Gateway.from_settings(settings, registry())
    a = [upload(MN_A, PW_A, f"2026010508000000{i}") for i in range(1, 6)]
    b = [upload(MN_B, PW_B, f"2026010508000010{i}") for i in range(1, 3)]
    a_bad = bad_crc(a[4])
    garbage = b"GET / HTTP/1.0\r\n"
    unknown = upload("99999999UNKNOWN1", PW_B, "20260105080000201")
    wrong_pw = upload(MN_B, "000000", "20260105080000202")
    await gateway.start()
    try:
        ra, wa = await asyncio.open_connection("127.0.0.1", gateway.port)
        rb, wb = await asyncio.open_connection("127.0.0.1", gateway.port)
        wa.write(a[0] + a[1] + a[2])  # sticky packet: three frames in one write
        wa.write(a_bad)
        for piece in (a[3][:7], a[3][7:60], a[3][60:]):  # one frame split over three writes
            wa.write(piece)
            await wa.drain()
            await asyncio.sleep(0.01)
        wb.write(b[0] + garbage + unknown + wrong_pw + b[1])
        acks_a = [await read_ack(ra) for _ in range(4)]
        acks_b = [await read_ack(rb) for _ in range(2)]
        # 9014 echoes each accepted frame's QN, in order; none for the CRC failure, the garbage,
        # the unknown MN or the wrong password (HJ 212-2017 App. C;
        # docs/hj212.md#answers-and-requests).
        assert [qn_of(x) for x in acks_a] == [f"2026010508000000{i}" for i in range(1, 5)]
        assert [qn_of(x) for x in acks_b] == ["20260105080000101", "20260105080000102"]
        assert all(";CN=9014;" in x for x in acks_a + acks_b)
        for w in (wa, wb):
            w.close()
            await w.wait_closed()
        await until(lambda: gateway.connections == 0, "connections closed")
    finally:
        await gateway.stop()

    sent_ok = [a[0], a[1], a[2], a[3], b[0], b[1]]
    rejected = {
        text_of(a_bad): "bad_crc",
        "GET / HTTP/1.0": "garbage",
        text_of(unknown): "unknown_mn",
        text_of(wrong_pw): "bad_password",
    }
    raw = await consume(kafka_bootstrap, settings.topics.raw, expected=10)
    assert len(raw) == 10  # 6 accepted + 4 rejected, each exactly once
    values = [json.loads(r.value) for r in raw]
    assert Counter(v["text"] for v in values) == Counter(
        [text_of(f) for f in sent_ok] + list(rejected)
    )
    by_text = {v["text"]: (v, r) for v, r in zip(values, raw, strict=True)}
    for f in sent_ok:
        v, rec = by_text[text_of(f)]
        assert v["verdict"] == "accepted" and v["reasons"] == []
        # keyed by stack id: a stack's frames, state and commands share a partition
        assert v["cn"] == "2011" and rec.key == {MN_A: b"a", MN_B: b"b"}[v["mn"]]
    for text, reason in rejected.items():
        v, _ = by_text[text]
        assert v["verdict"] == "rejected" and v["reasons"][0] == reason
    assert by_text[text_of(a_bad)][1].key == b"a"  # MN still read from a bad frame
    assert by_text[text_of(unknown)][1].key == b"99999999UNKNOWN1"  # no stack: its MN
    peers = {by_text[text_of(a[0])][0]["peer"], by_text[text_of(b[0])][0]["peer"]}
    assert len(peers) == 2 and all(p.startswith("127.0.0.1:") for p in peers)

    dead = await consume(kafka_bootstrap, settings.topics.deadletter, expected=4)
    assert len(dead) == 4
    letters = {d["payload"]: d for d in (json.loads(r.value) for r in dead)}
    assert {p: d["reason"] for p, d in letters.items()} == rejected
    assert all(d["stage"] == "gateway" for d in letters.values())


@pytest.fixture(scope="module")
def capture_lines() -> list[bytes]:
    """The first 500 CRLF-separated lines of the real 2016 capture."""
    return [ln for ln in CAPTURE.read_bytes().split(b"\r\n")[:500] if ln]


async def test_capture_burst_from_many_loggers(
    kafka_bootstrap: str, unique_topic: str, capture_lines: list[bytes]
) -> None:
    lines = capture_lines
    assert len(lines) == 500
    by_logger: dict[bytes, list[bytes]] = {}
    for ln in lines:  # one TCP connection per data logger, like the real platform saw
        mn = ln.split(b"MN=", 1)[1].split(b";", 1)[0] if b"MN=" in ln else b"?"
        by_logger.setdefault(mn, []).append(ln)
    intact_count = sum(intact(ln) for ln in lines)
    settings = settings_for(kafka_bootstrap, unique_topic, auto_register=True)
    gateway = Gateway.from_settings(settings, StackRegistry())
    await gateway.start()
    try:

        async def logger(frames: list[bytes]) -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(b"".join(f + b"\r\n" for f in frames))
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(logger(f) for f in by_logger.values()))
        await until(lambda: gateway.stats.frames_received == 500, "all frames framed")
        await until(lambda: gateway.connections == 0, "connections closed")
    finally:
        await gateway.stop()
    assert gateway.stats.connections_total == len(by_logger)
    raw = await consume(kafka_bootstrap, settings.topics.raw, expected=500)
    assert len(raw) == 500
    values = [json.loads(r.value) for r in raw]
    # Verbatim but for the loggers' passwords, masked (docs/security.md) — and each record
    # carries the SHA-256 of the line as received.
    masked = [re.sub(r"(^|;|##\d{4})PW=[^;]+", r"\1PW=******", ln.decode()) for ln in lines]
    assert Counter(v["text"] for v in values) == Counter(masked)
    assert Counter(v["sha256"] for v in values) == Counter(
        hashlib.sha256(ln).hexdigest() for ln in lines)
    accepted = [v for v in values if v["verdict"] == "accepted"]
    assert len(accepted) == intact_count
    assert all(v["reasons"] == ["unregistered_mn"] for v in accepted)
