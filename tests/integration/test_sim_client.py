"""Simulated loggers and replay over real TCP to a tiny in-test HJ 212 server (no Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from simulators.clock import SimClock
from simulators.logger import StackSimulator
from simulators.plants import profile_for
from simulators.replay import load_replay, replay
from simulators.runner import TcpSink, run_simulators
from stackwatch.beijing_time import CST
from stackwatch.hj212 import Framer, build_data_ack, decode_frame
from tests.shared_data import CAPTURE

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=CST)


@dataclass
class Server:
    """Frames what it receives, records it per connection, answers 9014 when Flag.A=1.

    `drop_once` = frame texts on whose first arrival the server closes the connection
    without answering; `ignore_once` = frames whose first arrival gets no answer.
    """

    drop_once: set[bytes] = field(default_factory=set)
    ignore_once: set[bytes] = field(default_factory=set)
    ignore_always: set[bytes] = field(default_factory=set)
    received: list[tuple[int, bytes]] = field(default_factory=list)
    rejected: list[bytes] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        framer = Framer()
        try:
            while chunk := await reader.read(65536):
                for result in framer.feed(chunk):
                    if not result.ok:
                        self.rejected.append(result.raw)
                        continue
                    self.received.append((conn, result.raw))
                    if result.raw in self.drop_once:
                        self.drop_once.discard(result.raw)
                        return
                    if result.raw in self.ignore_once:
                        self.ignore_once.discard(result.raw)
                        continue
                    if result.raw in self.ignore_always:
                        continue
                    ack = build_data_ack(decode_frame(result.raw))
                    if ack is not None:
                        writer.write(ack.encode())
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def two_stacks() -> list[StackSimulator]:
    return [
        StackSimulator(stack_id="ay-sinter-1", mn="410506AYS00001", password="123456",
                       profile=profile_for("steel", "sinter"), seed=201, origin=T0, ref_o2=16.0),
        StackSimulator(stack_id="xz-coke-oven-1", mn="140902XZC00001", password="123456",
                       profile=profile_for("coking", "coke_oven_stack"), seed=301, origin=T0,
                       ref_o2=8.0),
    ]


def expected_by_mn(minutes: int) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for sim in two_stacks():
        for f in sim.frames_between(T0, T0 + timedelta(minutes=minutes)):
            out[f.mn].append(f.text.rstrip("\r\n").encode())
    return out


def received_by_mn(server: Server) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for _conn, raw in server.received:
        mn = decode_frame(raw).mn
        assert mn is not None
        out[mn].append(raw)
    return out


async def run_two(port: int, minutes: int, **options: float) -> TcpSink:
    sink = TcpSink("127.0.0.1", port, **options)
    try:
        await run_simulators(two_stacks(), sink, start=T0, end=T0 + timedelta(minutes=minutes),
                             clock=SimClock(T0, None))
    finally:
        await sink.close()
    return sink


async def test_server_receives_exactly_the_generated_frames() -> None:
    server = Server()
    port = await server.start()
    try:
        sink = await run_two(port, 20)
    finally:
        await server.stop()
    expected = expected_by_mn(20)
    # 20 min: 40 real-time (30 s) + 20 minute frames per stack.
    assert {mn: len(v) for mn, v in expected.items()} == {"410506AYS00001": 60,
                                                          "140902XZC00001": 60}
    assert received_by_mn(server) == expected  # same frames, same order per logger
    assert server.connections == 2  # one connection per data logger
    assert sink.stats().acked == 120 and sink.stats().resent == 0


async def test_unacknowledged_frame_is_resent_after_a_dropped_connection() -> None:
    expected = expected_by_mn(5)
    victim = expected["410506AYS00001"][4]
    server = Server(drop_once={victim})
    port = await server.start()
    try:
        sink = await run_two(port, 5, backoff_initial=0.01)
    finally:
        await server.stop()
    got = received_by_mn(server)
    arrivals = [conn for conn, raw in server.received if raw == victim]
    assert len(arrivals) == 2 and arrivals[0] != arrivals[1]  # re-sent on a new connection
    deduped = list(dict.fromkeys(got["410506AYS00001"]))
    assert deduped == expected["410506AYS00001"]
    assert got["140902XZC00001"] == expected["140902XZC00001"]
    assert server.connections == 3
    assert sink.stats().resent == 1


async def test_missing_9014_answer_is_retried_on_the_same_connection() -> None:
    expected = expected_by_mn(2)
    victim = expected["140902XZC00001"][1]
    server = Server(ignore_once={victim})
    port = await server.start()
    try:
        sink = await run_two(port, 2, ack_timeout=0.2)
    finally:
        await server.stop()
    arrivals = [conn for conn, raw in server.received if raw == victim]
    assert len(arrivals) == 2 and arrivals[0] == arrivals[1]
    assert sink.stats().timeouts == 1 and server.connections == 2


async def test_never_answered_frame_is_given_up_after_the_retries() -> None:
    expected = expected_by_mn(2)
    victim = expected["140902XZC00001"][0]
    server = Server(ignore_always={victim})
    port = await server.start()
    try:
        sink = await run_two(port, 2, ack_timeout=0.1, retries=2)
    finally:
        await server.stop()
    # First send + 2 retries (HJ 212-2017 Table 1 ReCount), then the logger moves on.
    assert [raw for _c, raw in server.received].count(victim) == 3
    assert list(dict.fromkeys(received_by_mn(server)["140902XZC00001"])) == expected[
        "140902XZC00001"]
    assert sink.stats().gave_up == 1


async def test_replaying_a_recorded_file_yields_the_same_frames(tmp_path: Path) -> None:
    expected = expected_by_mn(10)
    path = tmp_path / "rec.h212"
    path.write_bytes(b"".join(raw + b"\r\n" for frames in expected.values() for raw in frames))
    log = load_replay(path)
    assert not log.errors
    server = Server()
    port = await server.start()
    try:
        stats = await replay(log.frames, "127.0.0.1", port, speed=None)
    finally:
        await server.stop()
    assert received_by_mn(server) == expected
    assert stats.frames == 2 * (20 + 10) and stats.connections == 2  # 10 min: 20 rtd + 10 min


async def test_replay_with_shift_reframes_with_valid_crc(tmp_path: Path) -> None:
    expected = expected_by_mn(2)
    path = tmp_path / "rec.h212"
    path.write_bytes(b"".join(raw + b"\r\n" for frames in expected.values() for raw in frames))
    log = load_replay(path)
    server = Server()
    port = await server.start()
    try:
        await replay(log.frames, "127.0.0.1", port, speed=None, shift=timedelta(days=30))
    finally:
        await server.stop()
    decoded = [decode_frame(raw) for _c, raw in server.received]
    assert len(decoded) == 2 * 6 and all(d.ok for d in decoded)
    assert min(d.data_time for d in decoded if d.data_time) == T0 + timedelta(days=30)
    # Acks still matched: the QN was shifted consistently with the 9014 answers.
    assert all(d.qn is not None and d.qn.startswith("20260204") for d in decoded)


async def test_real_2016_capture_replays_one_connection_per_logger() -> None:
    log = load_replay(CAPTURE)
    server = Server()
    port = await server.start()
    try:
        stats = await replay(log.frames, "127.0.0.1", port, speed=None, concurrency=64)
    finally:
        await server.stop()
    # DATA README: 8,696 frames from 284 loggers, a handful corrupt.
    assert stats.frames == 8696
    mns = Counter(decode_frame(raw).mn for _c, raw in server.received)
    assert len(mns) == 284
    assert len(server.received) == sum(1 for f in log.frames if f.ok)
    assert len(server.rejected) == sum(1 for f in log.frames if not f.ok)
    assert server.connections == len({f.mn for f in log.frames})
