"""Loggers on three protocol versions feed one gateway; the 2025 one is encrypted, goes off
the network for 30 minutes, and is asked for its history.

Gateway, worker and sinks run as subprocesses on real Tansu and PostgreSQL 18 (the harness of
tests/e2e/pipeline.py). Three scripted kilns (cement kiln tail, reference O2 10 %, O2 = 10 %
so converted = measured) upload hour 10:00 and the first minutes of 11:00:

* A — HJ 212-2025, SM4-encrypted data areas (policy `required`), minute data every minute,
  SO2 = 30 + (minute mod 4): hour mean (30 + 31 + 32 + 33)/4 = 31.5. It is off the network
  10:20–10:49; when it is back the gateway asks for 10:19:01–10:49:59, and the logger answers
  (RF=1) only after its 11:10 minute, so the hour first closes incomplete (30 minutes) and
  becomes valid as a later revision.
* B — HJ 212-2017, every minute, SO2 = 20 + (minute mod 5): mean 22.0.
* C — the HJ/T 212-2005 dialect of the real capture: no QN or Flag, 2005 codes, 10-minute
  records stamped at the interval end (10:10 … 11:00), SO2 10, 12, …, 20: mean 15.0.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from simulators.client import LoggerClient
from stackwatch.beijing_time import CST
from stackwatch.hj212 import (
    DecodedFrame,
    build_answer,
    build_frames,
    decode_frame,
    parse_key,
)
from stackwatch.registry import Sm4Key, StackInfo, StackRegistry
from tests.e2e.pipeline import REPO, Pipeline, fresh_database, migrate, settle

pytestmark = pytest.mark.e2e

KEY = "30" * 16  # the HJ 212-2025 examples' test key: sixteen bytes 0x30
SO2, O2 = "a21026", "a19001"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=CST)
MIN = timedelta(minutes=1)
A = StackInfo(stack_id="v2025", mn="41050001V2025001", password="a-pw", sector="cement",
              process="kiln_tail", encryption="required", sm4_keys=[Sm4Key(key=SecretStr(KEY))])
B = StackInfo(stack_id="v2017", mn="41050001V2017001", password="b-pw", sector="cement",
              process="kiln_tail")
C = StackInfo(stack_id="v2005", mn="41050001V2005001", password="c-pw", sector="cement",
              process="kiln_tail")


def so2_a(minute: int) -> float:
    return 30.0 + minute % 4


def minute_a(minute: int, *, resend: bool = False) -> str:
    t = T0 + minute * MIN
    values = {SO2: {"Avg": so2_a(minute)}, O2: {"Avg": 10.0}}
    (text,) = build_frames("2051", A.mn, "a-pw", t, values, version="2025", ack=True,
                           now=t + MIN, resend=resend, sm4_key=parse_key(KEY))
    return text


def minute_b(minute: int) -> str:
    t = T0 + minute * MIN
    (text,) = build_frames("2051", B.mn, "b-pw", t,
                           {SO2: {"Avg": 20.0 + minute % 5}, O2: {"Avg": 10.0}}, ack=True,
                           now=t + MIN)
    return text


def record_c(end_minute: int, so2: float) -> str:
    t = T0 + end_minute * MIN
    (text,) = build_frames("2051", C.mn, "c-pw", t, {SO2: {"Avg": so2}, O2: {"Avg": 10.0}},
                           field_2005=True, now=t)
    return text


class LoggerA:
    """The 2025 logger: it keeps its records and answers history requests from them, once
    its live uploads have reached 11:10 (so the hour has closed without the missing part)."""

    def __init__(self) -> None:
        self.live_done = asyncio.Event()
        self.asked: list[DecodedFrame] = []

    async def serve(self, request: DecodedFrame) -> list[str]:
        self.asked.append(request)
        await self.live_done.wait()
        await asyncio.sleep(5.0)  # the worker has closed hour 10 by now
        begin, end = request.cp["BeginTime"], request.cp["EndTime"]
        wanted = [m for m in range(20, 50)
                  if begin <= f"{T0 + m * MIN:%Y%m%d%H%M%S}" <= end]
        return [build_answer(request, "9011"), *(minute_a(m, resend=True) for m in wanted),
                build_answer(request, "9012")]


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, pg_dsn: str,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("v2025")
    dsn = fresh_database(pg_dsn)
    migrate(dsn)
    pipe = Pipeline(bootstrap=kafka_bootstrap, dsn=dsn, prefix=f"v.{uuid.uuid4().hex[:10]}",
                    tmp=tmp, registry=StackRegistry(stacks=[A, B, C]))
    logger_a = LoggerA()
    try:
        await pipe.start_all()
        port = pipe.gateway_port
        client_a = LoggerClient("127.0.0.1", port, mn=A.mn, ack_timeout=5, retries=100,
                                on_history_request=logger_a.serve)
        client_b = LoggerClient("127.0.0.1", port, mn=B.mn, ack_timeout=5, retries=100)
        client_c = LoggerClient("127.0.0.1", port, mn=C.mn, ack_timeout=5, retries=100)

        async def feed_a() -> None:
            for m in range(71):
                if 20 <= m < 50:
                    continue  # off the network
                text = minute_a(m)
                await client_a.send(text, ack=True, qn=decode_frame(text).qn)
            logger_a.live_done.set()

        async def feed_b() -> None:
            for m in range(71):
                text = minute_b(m)
                await client_b.send(text, ack=True, qn=decode_frame(text).qn)

        async def feed_c() -> None:
            for i, end in enumerate(range(10, 71, 10)):
                await client_c.send(record_c(end, 10.0 + 2 * (i % 6)), ack=False, qn=None)
                await asyncio.sleep(0.05)

        await asyncio.gather(feed_a(), feed_b(), feed_c())
        await asyncio.sleep(8.0)  # the history answer goes out
        # A clear upload where encryption is required: refused, and the stack alerted.
        (clear,) = build_frames("2051", A.mn, "a-pw", T0 + 71 * MIN, {SO2: {"Avg": 1.0}},
                                version="2025", now=T0 + 72 * MIN)
        await client_a.send(clear, ack=False, qn=None)
        # An operator asks for the logger's hours of 09:00–10:00 with the CLI.
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "from commands import main; main()", "history",
             "request", A.mn, "--cn", "2061", "--begin", "2026-03-02T09:00",
             "--end", "2026-03-02T10:00", "--by", "tester"],
            cwd=REPO, env=pipe.env(), capture_output=True, text=True, timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        for _ in range(200):
            if len(logger_a.asked) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.gather(client_a.close(), client_b.close(), client_c.close())

        def done(counts: dict[str, int]) -> bool:
            return counts.get("hour_aggregates", 0) >= 6
        await settle(dsn, done=done, quiet_s=6.0, timeout_s=240.0, alive=pipe.children.values())
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'Asia/Shanghai'")
            hours = conn.execute(
                "SELECT stack_id, valid, mean, zs_mean, revision, coverage_minutes "
                "FROM hour_aggregates WHERE factor = %s AND period_start = %s", (SO2, T0)
            ).fetchall()
            readings_a = conn.execute(
                "SELECT data_time, value, resent FROM readings WHERE stack_id = 'v2025' "
                "AND factor = %s AND cn = '2051' ORDER BY data_time", (SO2,)
            ).fetchall()
            raw_a = conn.execute(
                "SELECT text FROM raw_frames WHERE mn = %s AND verdict = 'accepted' "
                "AND cn = '2051'", (A.mn,)
            ).fetchall()
            texts = conn.execute(
                "SELECT coalesce(string_agg(text, ''), '') FROM raw_frames"
            ).fetchone()
            dead = conn.execute("SELECT reason, payload FROM dead_letters").fetchall()
            alerts = conn.execute("SELECT stack_id, rule FROM alerts").fetchall()
        yield {
            "hours": {row[0]: row[1:] for row in hours},
            "readings_a": readings_a,
            "raw_a": [r[0] for r in raw_a],
            "all_raw_text": texts[0] if texts else "",
            "dead": dead,
            "alerts": alerts,
            "asked": logger_a.asked,
            "logs": tmp / "logs",
            "gateway_port": port,
        }
    finally:
        pipe.stop_all()


def test_every_version_gives_its_hand_computed_hour(run: dict[str, Any]) -> None:
    hours = run["hours"]
    assert hours["v2017"][:2] == (True, 22.0)
    assert hours["v2005"][:2] == (True, 15.0)


def test_the_2025_hole_is_asked_for_and_back_fills_the_hour(run: dict[str, Any]) -> None:
    asked = run["asked"][0]
    assert asked.cn == "2051" and asked.cp["BeginTime"] == "20260302101901"
    assert asked.cp["EndTime"] == "20260302104959" and asked.version == "2025"
    valid, mean, zs_mean, revision, coverage = run["hours"]["v2025"]
    assert valid and revision > 0 and coverage == 60.0
    assert mean == pytest.approx(31.5) and zs_mean == pytest.approx(31.5)
    minutes = run["readings_a"]
    assert [v for _, v, _ in minutes] == [so2_a(m) for m in range(71)]
    assert [m for m, (_, _, resent) in enumerate(minutes) if resent] == list(range(20, 50))


def test_encrypted_frames_are_kept_as_received_and_no_key_is_anywhere(
    run: dict[str, Any],
) -> None:
    assert run["raw_a"] and all("CP=&&{0x" in text for text in run["raw_a"])
    assert KEY not in run["all_raw_text"] and KEY.upper() not in run["all_raw_text"]
    assert not [d for d in run["dead"] if KEY in d[1]]
    logs = "".join(p.read_text(errors="replace") for p in Path(run["logs"]).glob("*.log"))
    assert logs and KEY not in logs and KEY.upper() not in logs


def test_clear_data_is_refused_where_encryption_is_required_and_alerted(
    run: dict[str, Any],
) -> None:
    assert [d for d in run["dead"] if d[0] == "not_encrypted"]
    assert ("v2025", "encryption") in run["alerts"]


def test_an_operator_asks_for_a_loggers_history_with_the_cli(run: dict[str, Any]) -> None:
    operator = run["asked"][1]
    assert (operator.cn, operator.cp["BeginTime"], operator.cp["EndTime"]) == (
        "2061", "20260302090000", "20260302100000"
    )
