"""A 30 s broker outage loses no frame, even from loggers that never ask for a 9014 answer.

Such loggers (Flag A = 0) never re-send: whatever the gateway read from their socket must
reach the raw topic. The broker is a Tansu on S3 storage, stopped mid-stream and started
again on the same port. The expected records are the frames the loggers themselves wrote.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from stackwatch.hj212 import build_frames
from stackwatch.registry import StackRegistry
from stackwatch.settings import GatewaySettings, Settings, TopicSettings
from streams.gateway import Gateway
from tests.durable_broker import DurableBroker, S3Server

pytestmark = pytest.mark.integration

LOGGERS = 8
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PER_LOGGER_PER_S = 2.0  # 16 frames/s in all
UPLOAD_S = 60.0
OUTAGE_AT_S, OUTAGE_S = 15.0, 30.0


def mn_of(i: int) -> str:
    return f"4101000{i:02d}OUT001"


def ackless_frame(mn: str, n: int) -> bytes:
    """Minute n of logger `mn`, real-time upload without the A bit (no 9014 wanted)."""
    (text,) = build_frames(
        cn="2011", mn=mn, pw="123456", data_time=T0 + timedelta(minutes=n),
        values={"a21026": {"Rtd": float(n % 97)}}, qn=f"20260302080000{n:03d}", ack=False,
    )
    assert ";Flag=4;" in text  # 2017 dialect, A bit clear: the logger expects no answer
    return (text if text.endswith("\r\n") else text + "\r\n").encode()


async def logger(port: int, mn: str, frames: int, sent: list[bytes]) -> None:
    """Write `frames` frames at the logger's pace; never read (no answer is expected)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(frames):
            frame = ackless_frame(mn, n)
            writer.write(frame)
            sent.append(frame)
            await asyncio.sleep(1.0 / PER_LOGGER_PER_S)
        await writer.drain()  # only the kernel buffers: a stalled gateway still holds them
    finally:
        writer.close()


def identity(frame_text: str) -> tuple[str, str]:
    """(MN, QN): what tells one written frame from another (the PW is redacted on the topic)."""
    mn = re.search(r"MN=([^;]+);", frame_text)
    qn = re.search(r"QN=([^;]+);", frame_text)
    assert mn and qn, frame_text
    return mn.group(1), qn.group(1)


async def raw_texts(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[str]:
    """The frame texts on `topic` from the beginning, once `expected` are there (or timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    texts: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(texts) < expected and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                texts += [json.loads(r.value)["text"] for r in records]
        for records in (await consumer.getmany(timeout_ms=1500)).values():
            texts += [json.loads(r.value)["text"] for r in records]
    finally:
        await consumer.stop()
    return texts


@pytest.mark.timeout(420)
async def test_ackless_loggers_lose_nothing_in_a_30s_broker_outage(
    tmp_path: Path, s3: S3Server
) -> None:
    broker = DurableBroker(tmp_path, s3)
    broker.start()
    prefix = f"outage.{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, broker_profile="tansu",
        topics=TopicSettings(raw=f"{prefix}.raw", deadletter=f"{prefix}.deadletter"),
        gateway=GatewaySettings(host="127.0.0.1", port=0, auto_register=True,
                                idle_timeout_s=600),
    )
    frames_each = int(UPLOAD_S * PER_LOGGER_PER_S)
    sent: list[bytes] = []
    try:
        gateway = Gateway.from_settings(settings, registry=StackRegistry(stacks=[]))
        async with gateway:
            uploads = asyncio.gather(*(logger(gateway.port, mn_of(i), frames_each, sent)
                                       for i in range(LOGGERS)))
            await asyncio.sleep(OUTAGE_AT_S)
            broker.stop()
            sent_before_outage = len(sent)
            await asyncio.sleep(OUTAGE_S)
            sent_during_outage = len(sent) - sent_before_outage
            await asyncio.to_thread(broker.start)
            await uploads
            texts = await raw_texts(broker.bootstrap, settings.topics.raw,
                                    LOGGERS * frames_each, timeout_s=180)
            retried = gateway.sink.retries if hasattr(gateway.sink, "retries") else None
    finally:
        broker.stop()

    wanted = Counter(identity(f.decode()) for f in sent)
    got = Counter(identity(t) for t in texts)
    assert len(wanted) == LOGGERS * frames_each  # every frame the loggers wrote is distinct
    assert sent_during_outage > 0, "no logger wrote while the broker was down"
    missing = wanted - got
    assert not missing, f"{sum(missing.values())} frames lost, e.g. {next(iter(missing))}"
    assert set(got) == set(wanted), "records on the raw topic that no logger sent"
    duplicates = sum(got.values()) - len(got)
    print(f"\nbroker down {OUTAGE_S:.0f} s: {LOGGERS * frames_each} frames written, "
          f"{sent_during_outage} during the outage, all {len(got)} on the raw topic, "
          f"{duplicates} duplicated by re-sends, deliveries retried {retried}")
