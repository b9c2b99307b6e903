"""Asking loggers for their history (HJ 212-2017 App. C part 2; HJ 212-2025 RF=1).

Oracles: the standard's own example packets (docs/hj212.md#test-vectors, App. C: a 2061 request with
BeginTime/EndTime, the 9011 and 9012 answers, CRCs as printed), hand-computed gap ranges,
and a simulated logger whose records are known. The end-to-end part runs over real loopback
TCP into a gateway with an in-memory broker stand-in.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import SecretStr

from simulators.client import LoggerClient
from simulators.logger import LoggerConfig, StackSimulator
from simulators.plants import profile_for
from stackwatch.beijing_time import CST
from stackwatch.history_requests import HistoryPlanner, HistoryRequest, HistorySettings
from stackwatch.hj212 import (
    build_answer,
    build_history_request,
    decode_frame,
    decrypt_record,
    parse_key,
)
from stackwatch.models import Verdict
from stackwatch.registry import Sm4Key, StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings
from streams.gateway import Gateway
from streams.gateway_sink import MemoryFrameSink

EXAMPLE_MN = "010000A8900016F000169DC0"
EXAMPLE_QN_TIME = datetime(2016, 8, 1, 8, 58, 57, 223000, tzinfo=CST)
MIN = timedelta(minutes=1)


def test_request_and_answers_are_the_standards_example_packets() -> None:
    request = build_history_request(
        "2061", EXAMPLE_MN, "123456", datetime(2016, 8, 1, 8, tzinfo=CST),
        datetime(2016, 8, 1, 8, tzinfo=CST), st="32", version="2017", now=EXAMPLE_QN_TIME,
    )
    assert request == (
        "##0134QN=20160801085857223;ST=32;CN=2061;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=5;CP=&&BeginTime=20160801080000;EndTime=20160801080000&&7EC0\r\n"
    )
    decoded = decode_frame(request.encode())
    assert build_answer(decoded, "9011") == (
        "##0094QN=20160801085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=4;CP=&&QnRtn=1&&1B00\r\n"
    )
    assert build_answer(decoded, "9012") == (
        "##0095QN=20160801085857223;ST=91;CN=9012;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=4;CP=&&ExeRtn=1&&6240\r\n"
    )
    # HJ 212-2025 framing: version bits 2 (Flag 9 = 2025 + answer wanted; answers Flag 8).
    r2025 = build_history_request("2051", EXAMPLE_MN, "1", EXAMPLE_QN_TIME, EXAMPLE_QN_TIME,
                                  version="2025", now=EXAMPLE_QN_TIME)
    assert ";Flag=9;" in r2025
    assert ";Flag=8;" in build_answer(decode_frame(r2025.encode()), "9012")


def test_a_hole_in_the_uploads_becomes_one_request_for_it() -> None:
    # Minutes 10:00–10:19 arrive, then 10:50: 10:19 → 10:50 is 31 min ≥ 15 min.
    # The request asks for 10:19:01–10:49:59; re-sent records (RF=1) never open a hole.
    clock = [0.0]
    planner = HistoryPlanner(HistorySettings(), clock=lambda: clock[0])
    t0 = datetime(2026, 3, 1, 10, tzinfo=CST)
    asks = [planner.on_upload("M", "2051", t0 + i * MIN, resent=False) for i in range(20)]
    assert asks == [None] * 20
    ask = planner.on_upload("M", "2051", t0 + 50 * MIN, resent=False)
    assert ask is not None and ask.cn == "2051"
    assert (ask.begin, ask.end) == (t0 + timedelta(minutes=19, seconds=1),
                                    t0 + timedelta(minutes=49, seconds=59))
    assert planner.on_upload("M", "2051", t0 + 25 * MIN, resent=True) is None
    # A second hole 5 minutes later is not asked for: one request per logger per 10 min.
    clock[0] += 300
    assert planner.on_upload("M", "2051", t0 + 80 * MIN, resent=False) is None
    clock[0] += 301
    assert planner.on_upload("M", "2051", t0 + 110 * MIN, resent=False) is not None
    # Real-time data and heartbeats never open a hole.
    assert planner.on_upload("M", "2011", t0 + 500 * MIN, resent=False) is None


def test_requests_over_all_loggers_are_capped_per_minute() -> None:
    # 3 per minute: the fourth logger's hole waits; 20 s later one token (3/60 × 20 = 1).
    clock = [0.0]
    planner = HistoryPlanner(HistorySettings(per_minute=3), clock=lambda: clock[0])
    t0 = datetime(2026, 3, 1, 10, tzinfo=CST)
    for mn in "ABCD":
        planner.on_upload(mn, "2051", t0, resent=False)
    got = [planner.on_upload(mn, "2051", t0 + 30 * MIN, resent=False) for mn in "ABCD"]
    assert [g is not None for g in got] == [True, True, True, False]
    clock[0] += 20
    late = HistoryRequest("D", "2051", t0, t0 + 30 * MIN, "operator")
    assert planner.on_operator(late) is not None
    assert planner.on_operator(HistoryRequest("E", "2051", t0, t0, "operator")) is None


KEY = "30" * 16
MN = "41050001KL202501"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=CST)


def _simulator() -> StackSimulator:
    return StackSimulator(
        stack_id="kiln", mn=MN, password="123456", profile=profile_for("cement", "kiln_tail"),
        seed=7, origin=T0, logger=LoggerConfig(version="2025", sm4_key=KEY),
    )


async def test_a_2025_logger_answers_with_its_own_records_re_sent_and_encrypted() -> None:
    sim = _simulator()
    live = [f for f in sim.frames_between(T0, T0 + 62 * MIN) if f.cn == "2051"]
    request = decode_frame(build_history_request(
        "2051", MN, "123456", T0 + 20 * MIN, T0 + 49 * MIN, version="2025",
        now=T0 + 51 * MIN).encode())
    answer = await sim.serve_history(request)
    first, *records, last = answer
    assert ";CN=9011;" in first and "QnRtn=1" in first
    assert ";CN=9012;" in last and "ExeRtn=1" in last
    assert len(records) == 30
    key = parse_key(KEY)
    opened = [decode_frame(decrypt_record(r.rstrip("\r\n").encode(), [key]).record)
              for r in records]
    assert all(o.resend for o in opened)
    by_time = {decode_frame(decrypt_record(f.text.rstrip("\r\n").encode(), [key]).record)
               .data_time: f for f in live}
    for o in opened:
        original = decode_frame(decrypt_record(
            by_time[o.data_time].text.rstrip("\r\n").encode(), [key]).record)
        assert o.values == original.values  # exactly what it measured then


async def test_the_gateway_asks_a_logger_back_from_an_outage_for_its_hole() -> None:
    # Over real TCP: the 2025 logger uploads 10:00–10:19 (2051, encrypted), is off the
    # network 10:20–10:49, and resumes at 10:50. The gateway sees the hole, asks for
    # 10:19:01–10:49:59, and the logger re-sends those 30 minutes (RF=1); the gateway opens
    # every one with the logger's key and passes it on.
    sim = _simulator()
    stack = StackInfo(stack_id="kiln", mn=MN, password="123456", sector="cement",
                      process="kiln_tail", encryption="required",
                      sm4_keys=[Sm4Key(key=SecretStr(KEY))])
    sink = MemoryFrameSink()
    gateway = Gateway(settings=GatewaySettings(host="127.0.0.1", port=0),
                      registry=StackRegistry(stacks=[stack]), sink=sink)
    await gateway.start()
    client = LoggerClient("127.0.0.1", gateway.port, mn=MN, ack_timeout=5,
                          on_history_request=sim.serve_history)
    try:
        minutes = [f for f in sim.frames_between(T0, T0 + 52 * MIN) if f.cn == "2051"]
        for frame in minutes:
            if T0 + 20 * MIN <= frame.data_time < T0 + 50 * MIN:
                continue  # off the network
            await client.send(frame.text, ack=frame.ack, qn=frame.qn)
        for _ in range(100):
            if sum(1 for r in sink.raw if "RF=1" in (r.decrypted or "")) >= 30:
                break
            await asyncio.sleep(0.05)
    finally:
        await client.close()
        await gateway.stop()
    assert gateway.stats.history_requests["sent"] == 1 and client.stats.history_requests == 1
    resent = [r for r in sink.raw if r.decrypted and "RF=1" in r.decrypted]
    assert len(resent) == 30 and all(r.verdict is Verdict.ACCEPTED for r in resent)
    stamps = sorted(
        t for r in resent if r.decrypted and (t := decode_frame(r.decrypted.encode()).data_time)
    )
    assert stamps == [T0 + (20 + i) * MIN for i in range(30)]
    answers = [decode_frame(r.text.encode()).cn for r in sink.raw if r.cn in ("9011", "9012")]
    assert answers == ["9011", "9012"]
