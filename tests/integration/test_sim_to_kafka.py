"""Simulated loggers and replay, through the real gateway, into the real Tansu raw topic.

Expected frames come from the simulators' pure generators (`frames_between`), and whether a
frame is intact is judged by the test's own HJ 212 App. A CRC, never by the gateway's verdict.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from simulators.clock import SimClock
from simulators.replay import load_replay, replay
from simulators.runner import TcpSink, run_simulators
from simulators.scenario import parse_scenario
from stackwatch.beijing_time import CST
from streams.gateway import Gateway
from tests.integration.test_gateway import consume, settings_for
from tests.oracles import intact

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=CST)
SPAN = timedelta(minutes=10)
SCENARIO = {
    "name": "two-stacks",
    "start": T0.replace(tzinfo=None).isoformat(),
    "speed": "fast",
    "logger": {"rtd_interval_s": 30, "min_interval_min": 1, "uploads": ["2011", "2051"]},
    "plants": [
        {
            "name": "Test plant",
            "city": "Sanmenxia",
            "province": "Henan",
            "stacks": [
                {
                    "stack_id": "kiln",
                    "mn": "4112TESTKILN01",
                    "sector": "cement",
                    "process": "kiln_tail",
                    "seed": 1,
                },
                {
                    "stack_id": "mill",
                    "mn": "4112TESTMILL01",
                    "sector": "cement",
                    "process": "cement_mill",
                    "seed": 2,
                },
            ],
        }
    ],
    # Every 7th frame of the mill's logger has a wrong CRC.
    "events": [{"kind": "corrupt", "stack": "mill", "start": "0m", "duration": "1h", "every": 7}],
}


def as_stored(text: str) -> str:
    """A frame as the raw layer keeps it: the simulated loggers' password 123456 masked."""
    assert text.count(";PW=123456;") == 1, text
    return text.replace(";PW=123456;", ";PW=******;")


def _texts(records: list[object]) -> list[str]:
    return [json.loads(r.value)["text"] for r in records]  # type: ignore[attr-defined]


async def test_two_simulated_loggers_over_tcp_land_exactly_in_the_raw_topic(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    sc = parse_scenario(SCENARIO, source="test")
    expected = sorted(
        (f for sim in sc.simulators(T0) for f in sim.frames_between(T0, T0 + SPAN)),
        key=lambda f: (f.at, f.mn),
    )
    wire = [f.text.rstrip("\r\n") for f in expected]
    corrupt_on_wire = [t for t in wire if not intact(t.encode())]
    assert 0 < len(corrupt_on_wire) < len(wire) // 4  # the event really corrupted some frames
    texts = [as_stored(t) for t in wire]
    corrupt = [as_stored(t) for t in corrupt_on_wire]

    settings = settings_for(kafka_bootstrap, unique_topic)
    gateway = Gateway.from_settings(settings, sc.registry())
    await gateway.start()
    # A corrupted frame is never acknowledged: wait briefly and don't retry it.
    sink = TcpSink("127.0.0.1", gateway.port, ack_timeout=0.5, retries=0)
    try:
        stats = await run_simulators(
            sc.simulators(T0), sink, start=T0, end=T0 + SPAN, clock=SimClock(T0, None)
        )
        client = sink.stats()
    finally:
        await sink.close()
        await gateway.stop()

    assert stats.frames == len(texts)
    assert client.acked == len(texts) - len(corrupt)  # every intact frame got its 9014
    assert client.gave_up == len(corrupt)
    raw = await consume(kafka_bootstrap, settings.topics.raw, len(texts))
    assert Counter(_texts(raw)) == Counter(texts)  # count and content
    verdicts = {json.loads(r.value)["text"]: json.loads(r.value)["verdict"] for r in raw}
    assert {t for t, v in verdicts.items() if v == "rejected"} == set(corrupt)
    dead = await consume(kafka_bootstrap, settings.topics.deadletter, len(corrupt))
    assert sorted(json.loads(r.value)["payload"] for r in dead) == sorted(corrupt)
    assert {json.loads(r.value)["reason"].partition(":")[0] for r in dead} == {"bad_crc"}


async def test_replaying_a_recorded_log_yields_the_same_frames(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    sc = parse_scenario(SCENARIO, source="test")
    recorded = sorted(
        (f for sim in sc.simulators(T0) for f in sim.frames_between(T0, T0 + SPAN)),
        key=lambda f: (f.at, f.mn),
    )
    lines = [f.text.rstrip("\r\n") for f in recorded]
    log_file = tmp_path / "recorded.h212"
    log_file.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")

    settings = settings_for(kafka_bootstrap, unique_topic)
    gateway = Gateway.from_settings(settings, sc.registry())
    await gateway.start()
    try:
        log = load_replay(log_file)
        sent = await replay(
            log.frames,
            "127.0.0.1",
            gateway.port,
            speed=None,
            client_options={"ack_timeout": 0.5, "retries": 0},
        )
    finally:
        await gateway.stop()
    assert sent.frames == len(lines)
    raw = await consume(kafka_bootstrap, settings.topics.raw, len(lines))
    assert Counter(_texts(raw)) == Counter(as_stored(line) for line in lines)
