"""The gateway against hostile peers, over real loopback TCP and the real Tansu broker.

* Password guessing: locked out after `ban_after` wrong passwords, alerted (dead letter,
  WARNING log line, Prometheus counter); during the ban even the right password is refused
  without an answer, while the real logger's connection (proven before the ban) is served.
* A flood from other loopback addresses (127.0.0.2, 127.0.0.4: garbage, wrong passwords, many
  connections) run in another process: the good logger's 9014 answers keep flowing; their
  latency with and without the flood is printed (figures, not assertions).
* No password value in any topic, table (raw_frames, dead_letters; PostgreSQL 18) or log line.

Expected values are what the test sent and the settings it chose (e.g. ban_after = 5 means the
sixth guess is refused unchecked), never read back from the code under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sinks.batching import write_batch
from sinks.db import connect, connect_async
from sinks.records import SinkKind, SourceRecord
from sinks.schema import migrate
from stackwatch.hj212 import build_frames, parse_key
from stackwatch.registry import Sm4Key, StackInfo, StackRegistry
from stackwatch.registry_hash import hash_password
from stackwatch.settings import GatewayGuardSettings, GatewaySettings, Settings, TopicSettings
from streams.gateway import Gateway
from tests.integration.test_gateway import consume, qn_of, read_ack, until

pytestmark = pytest.mark.integration

MN = "41120001SEC0001"
PW = "Kiln7-Pass"
VICTIM_MN = "41120001SEC0002"
VICTIM_PW = "Vict1m-Pass"
ENC_MN = "41120001SEC2025"
ENC_PW = "Enc2025-Pass"
KEY = "30" * 16
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def upload(mn: str, pw: str, qn: str, **kw: Any) -> bytes:
    """One 2011 real-time upload asking for a 9014 answer."""
    (text,) = build_frames("2011", mn, pw, T0, {"a21026": {"Rtd": 12.5}}, qn=qn, ack=True, **kw)
    return text.encode() if text.endswith("\r\n") else (text + "\r\n").encode()


def stack(stack_id: str, mn: str, pw: str, **kw: Any) -> StackInfo:
    return StackInfo(stack_id=stack_id, mn=mn, password_hash=hash_password(pw),
                     sector="cement", process="kiln_tail", **kw)


def settings_for(bootstrap: str, prefix: str, guard: GatewayGuardSettings) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        broker_profile="tansu",
        topics=TopicSettings(raw=f"{prefix}.raw", deadletter=f"{prefix}.deadletter"),
        gateway=GatewaySettings(host="127.0.0.1", port=0, idle_timeout_s=60, guard=guard),
    )


async def open_from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from `source` (any 127.x.y.z is this host on Linux)."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


# --- password guessing ------------------------------------------------------------------


async def test_password_guessing_is_locked_out_and_alerted(
    kafka_bootstrap: str, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stackwatch")
    guard = GatewayGuardSettings(free_attempts=3, backoff_base_s=0, ban_after=5, ban_s=600,
                                 exempt_networks=[])
    settings = settings_for(kafka_bootstrap, unique_topic, guard)
    metrics = CollectorRegistry()
    gateway = Gateway.from_settings(settings, StackRegistry(stacks=[stack("kiln", MN, PW)]),
                                    metrics_registry=metrics)
    guesses = [f"{i:06d}" for i in range(1, 9)]  # eight wrong guesses, one at a time
    right = upload(MN, PW, "20260105080000900")
    await gateway.start()
    try:
        # The real logger proves its password before the attack.
        lr, lw = await open_from("127.0.0.1", gateway.port)
        lw.write(upload(MN, PW, "20260105080000001"))
        assert qn_of(await read_ack(lr)) == "20260105080000001"
        _, aw = await open_from("127.0.0.2", gateway.port)
        def received(n: int) -> Callable[[], bool]:
            return lambda: gateway.stats.frames_received == n

        for i, guess in enumerate(guesses):
            aw.write(upload(MN, guess, f"2026010508000010{i}"))
            await until(received(2 + i), f"guess {i + 1}")
        # The right password, from an address that guessed nothing: the MN is banned.
        rr, rw = await open_from("127.0.0.3", gateway.port)
        rw.write(right)
        rw.write_eof()
        assert await asyncio.wait_for(rr.read(), 30) == b""  # no 9014, connection closed
        # From the guesser's own address: the connection is refused at once.
        br, bw = await open_from("127.0.0.2", gateway.port)
        assert await asyncio.wait_for(br.read(), 30) == b""
        # The real logger's connection, proven before the ban, is still answered.
        lw.write(upload(MN, PW, "20260105080000002"))
        assert qn_of(await read_ack(lr)) == "20260105080000002"
        for w in (lw, aw, rw, bw):
            w.close()
        await until(lambda: gateway.connections == 0, "connections closed")
    finally:
        await gateway.stop()

    raw = [json.loads(r.value) for r in await consume(kafka_bootstrap, settings.topics.raw, 11)]
    assert len(raw) == 11  # 2 accepted + 8 guesses + the refused right password
    attacker = [v for v in raw if v["peer"].startswith("127.0.0.2:")]
    # Five wrong passwords are checked (the fifth bans MN and IP and is the alert); the other
    # three are refused without checking.
    assert [v["reasons"] for v in attacker] == [["bad_password"]] * 4 + [
        ["password_guessing", "bad_password"]] + [["banned"]] * 3
    (refused,) = [v for v in raw if v["peer"].startswith("127.0.0.3:")]
    assert refused["verdict"] == "rejected" and refused["reasons"] == ["banned"]
    assert refused["sha256"] == hashlib.sha256(right.rstrip(b"\r\n")).hexdigest()
    assert f"PW={PW}" not in refused["text"] and ";PW=******;" in refused["text"]
    accepted = [v for v in raw if v["verdict"] == "accepted"]
    assert [v["peer"].split(":")[0] for v in accepted] == ["127.0.0.1", "127.0.0.1"]

    dead = [json.loads(r.value) for r in await consume(
        kafka_bootstrap, settings.topics.deadletter, 9)]
    assert len(dead) == 9
    (alert,) = [d for d in dead if d["reason"] == "password_guessing"]
    assert alert["key"] == MN and alert["details"]["alert"] == "security"
    assert alert["details"]["scope"] == "mn,ip" and alert["details"]["failures"] == "5,5"
    assert alert["details"]["banned"] == f"{MN},127.0.0.2" and alert["details"]["ban_s"] == "600"

    def value(name: str, **labels: str) -> float:
        return metrics.get_sample_value(name, labels) or 0.0

    assert value("stackwatch_gateway_security_alerts_total", scope="mn") == 1
    assert value("stackwatch_gateway_security_alerts_total", scope="ip") == 1
    assert value("stackwatch_gateway_guard_total", action="banned") == 4  # 3 guesses + right
    assert value("stackwatch_gateway_guard_total", action="banned_ip") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and getattr(r, "alert", None) == "password_guessing"]
    assert sorted(getattr(r, "scope", "") for r in warnings) == ["ip", "mn"]
    print(f"\nattempts until lockout: {guard.ban_after} checked, then refused unchecked")


# --- flood ---------------------------------------------------------------------------------


def _flood(port: int, seconds: float) -> None:
    """The hostile side, in its own process: 40 connections from two addresses."""
    asyncio.run(_flood_async(port, seconds))


async def _flood_async(port: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    garbage = b"\x16\x03\x01\x02\x00 GET / HTTP/1.1\r\n" * 64
    rng = random.Random(7)

    async def attacker(source: str, guess: bool) -> None:
        n = 0
        while loop.time() < end:
            try:
                _, writer = await open_from(source, port)
                while loop.time() < end:
                    data = garbage
                    if guess:
                        n += 1
                        data += upload(VICTIM_MN, f"{rng.randrange(10**6):06d}",
                                       f"20260105090{n:06d}")
                    writer.write(data)
                    await writer.drain()
            except (OSError, ConnectionError):
                await asyncio.sleep(0.005)

    await asyncio.gather(*(attacker("127.0.0.2", True) for _ in range(20)),
                         *(attacker("127.0.0.4", False) for _ in range(20)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_flood_leaves_good_loggers_answered(kafka_bootstrap: str, unique_topic: str) -> None:
    # back-off 0.1, 0.2, 0.4, 0.8, 1.6 s after the 3rd: the 8th wrong password comes ≥ 3.1 s in
    guard = GatewayGuardSettings(free_attempts=3, backoff_base_s=0.1, ban_after=8, ban_s=600,
                                 max_connections_per_ip=8, frames_per_s_per_ip=200,
                                 burst_per_ip=200, max_consecutive_rejects=50,
                                 exempt_networks=[])
    settings = settings_for(kafka_bootstrap, unique_topic, guard)
    reg = StackRegistry(stacks=[stack("kiln", MN, PW), stack("victim", VICTIM_MN, VICTIM_PW)])
    gateway = Gateway.from_settings(settings, reg)
    await gateway.start()
    flood = multiprocessing.get_context("spawn").Process(
        target=_flood, args=(gateway.port, 25.0), daemon=True)
    try:
        reader, writer = await open_from("127.0.0.1", gateway.port)
        seq = 0

        async def measure(n: int) -> list[float]:
            nonlocal seq
            latencies = []
            for _ in range(n):
                seq += 1
                qn = f"2026010508{seq:07d}"
                started = time.perf_counter()
                writer.write(upload(MN, PW, qn))
                assert qn_of(await read_ack(reader)) == qn  # every answer, in order
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            return latencies

        quiet = await measure(100)
        flood.start()
        await until(lambda: gateway.stats.frames_rejected > 200, "the flood has begun")
        stormy = await measure(300)
        flooding = flood.is_alive()
        writer.close()
    finally:
        flood.join(60)
        if flood.is_alive():
            flood.kill()
        await gateway.stop()
    stats = gateway.stats
    print(
        f"\ngood logger 9014 latency, ms: quiet p50 {1000 * statistics.median(quiet):.1f} "
        f"p95 {1000 * _percentile(quiet, 0.95):.1f}; during flood p50 "
        f"{1000 * statistics.median(stormy):.1f} p95 {1000 * _percentile(stormy, 0.95):.1f} "
        f"max {1000 * max(stormy):.1f} (flood still running at the end: {flooding}); "
        f"rejected units {stats.frames_rejected}, guard {dict(stats.guard_actions)}, "
        f"security alerts {dict(stats.security_alerts)}, refused connections "
        f"{stats.connections_refused}"
    )
    assert len(quiet) == 100 and len(stormy) == 300
    assert stats.security_alerts["ip"] == 1  # 127.0.0.2 banned once for guessing
    assert stats.guard_actions["banned_ip"] > 0  # its later connections refused at once
    assert stats.guard_actions["max_connections_per_ip"] > 0  # 20 tries from 127.0.0.4, cap 8
    assert stats.guard_actions["too_many_rejects"] > 0  # garbage-only connections closed
    assert stats.security_alerts["mn"] == 1  # the guessed MN too…
    assert stats.frames_accepted == 400  # …but the good logger was never refused


# --- no password anywhere ------------------------------------------------------------------


async def test_no_password_in_topics_tables_or_logs(
    kafka_bootstrap: str, unique_topic: str, pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stackwatch")
    guesses = ["Guess-0001", "Guess-0002", "密码猜测"]
    new_pw = "NewPass-42"
    garbage_pw = "GarbagePass"
    half_pw = "HalfFramePass"
    secrets = [PW, *guesses, new_pw, garbage_pw, half_pw, ENC_PW]
    guard = GatewayGuardSettings(exempt_networks=[], log_interval_s=0)
    settings = settings_for(kafka_bootstrap, unique_topic, guard)
    reg = StackRegistry(stacks=[
        stack("kiln", MN, PW),
        StackInfo(stack_id="enc", mn=ENC_MN, password=SecretStr(ENC_PW), sector="cement",
                  process="kiln_tail", encryption="required",
                  sm4_keys=[Sm4Key(key=SecretStr(KEY))]),
    ])
    gateway = Gateway.from_settings(settings, reg)
    (enc_text,) = build_frames("2011", ENC_MN, ENC_PW, T0, {"a21026": {"Rtd": 1.5}},
                               qn="20260105080000300", ack=True, version="2025",
                               sm4_key=parse_key(KEY))
    garbage_lines = [b"hello", f"x;PW={garbage_pw};y".encode(), b"\x00\x01\x02"]
    set_pw = upload(MN, PW, "20260105080000200", extra_cp={"NewPW": new_pw})
    await gateway.start()
    try:
        r, w = await open_from("127.0.0.1", gateway.port)
        w.write(upload(MN, PW, "20260105080000001"))
        assert qn_of(await read_ack(r)) == "20260105080000001"
        w.write(b"\r\n".join(garbage_lines) + b"\r\n")  # one burst: one record
        w.write(set_pw)
        assert qn_of(await read_ack(r)) == "20260105080000200"
        for i, guess in enumerate(guesses):
            w.write(upload(MN, guess, f"2026010508000010{i}"))
        await until(lambda: gateway.stats.frames_received == 8, "guesses judged")
        # An HJ 212-2025 logger (PW in the clear header, the data area encrypted), from another
        # address: 127.0.0.1 is in back-off after three wrong passwords.
        r2, w2 = await open_from("127.0.0.5", gateway.port)
        w2.write(enc_text.encode())
        assert qn_of(await read_ack(r2)) == "20260105080000300"
        w.write(upload(MN, half_pw, "20260105080000400")[:80])  # cut short: at disconnect
        await w.drain()
        for writer in (w, w2):
            writer.close()
        await until(lambda: gateway.connections == 0, "connections closed")
    finally:
        await gateway.stop()

    # 3 accepted + 3 wrong passwords + 1 garbage burst (3 lines) + 1 half frame
    raw = await consume(kafka_bootstrap, settings.topics.raw, 8)
    dead = await consume(kafka_bootstrap, settings.topics.deadletter, 5)
    assert (len(raw), len(dead)) == (8, 5)
    everything = [r.value.decode() for r in raw + dead]
    everything_json = [json.dumps(json.loads(t), ensure_ascii=False) for t in everything]
    for secret in secrets:
        assert not any(secret in t for t in everything + everything_json), secret
    burst = [json.loads(d.value) for d in dead if json.loads(d.value)["reason"] == "garbage"]
    assert len(burst) == 1 and burst[0]["details"]["count"] == "3"
    assert burst[0]["payload"] == "hello\r\nx;PW=******;y\r\n\x00\x01\x02"
    assert burst[0]["details"]["sha256"] == hashlib.sha256(b"\r\n".join(garbage_lines)).hexdigest()

    # The sinks' writer stores what the topics carry: the tables hold no password either.
    with connect(pg_database, autocommit=True) as conn:
        migrate(conn, "plain")
    db = await connect_async(pg_database)
    try:
        await write_batch(db, SinkKind.RAW, [SourceRecord(value=r.value, key=r.key) for r in raw])
        await write_batch(db, SinkKind.DEADLETTER,
                          [SourceRecord(value=d.value, key=d.key) for d in dead])
        cur = await db.execute("SELECT text, sha256 FROM raw_frames")
        frames = await cur.fetchall()
        cur = await db.execute("SELECT payload, details::text FROM dead_letters")
        letters = await cur.fetchall()
        await db.rollback()
    finally:
        await db.close()
    assert (len(frames), len(letters)) == (8, 5)
    stored = [str(c) for row in [*frames, *letters] for c in row]
    for secret in secrets:
        assert not any(secret in t for t in stored), secret
    first = upload(MN, PW, "20260105080000001").rstrip(b"\r\n")
    assert hashlib.sha256(first).hexdigest() in {sha for _, sha in frames}

    logged = [f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records]
    assert any("frame rejected" in line for line in logged)
    for secret in secrets:
        assert not any(secret in line for line in logged), secret


def test_migration_adds_the_frame_digest(pg_database: str) -> None:
    """Migration 0009: `raw_frames.sha256`, a hex SHA-256 or NULL."""
    with connect(pg_database, autocommit=True) as conn:
        migrate(conn, "plain")
        cur = conn.execute("SELECT column_name FROM information_schema.columns "
                           "WHERE table_name = 'raw_frames' AND column_name = 'sha256'")
        assert cur.fetchall() == [("sha256",)]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO raw_frames (received_at, peer, verdict, text, sha256) "
                         "VALUES (now(), 'p', 'rejected', 't', 'not-a-digest')")
