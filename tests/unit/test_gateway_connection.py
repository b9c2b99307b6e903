"""Gateway per-connection behaviour over loopback TCP, with an in-memory sink.

The frames are the standard's own packets or frames whose CRC is computed here with the
algorithm of HJ 212-2017 Appendix A (an implementation independent of the codec under test).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from stackwatch.hj212 import Framer, FrameResult
from stackwatch.models import Verdict
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings
from streams.gateway import Gateway
from streams.gateway_judge import Codec, FramerLike, Hj212Codec
from streams.gateway_sink import MemoryFrameSink
from tests.oracles import crc_hj212

# HJ 212-2017 App. A worked example (CRC 1C80, docs/hj212.md#crc): Flag=5 asks for an ack.
STD_FRAME = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    b"Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
)
STD_MN = "010000A8900016F000169DC0"
STD_QN = "20160801085857223"
MN = "41120001CM0001"
PW = "123456"
CLOCK = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)




def frame(segment: str, *, crc: str | None = None) -> bytes:
    """`##` + 4-digit length + segment + CRC + CRLF (§6.3.1)."""
    data = segment.encode()
    check = crc if crc is not None else f"{crc_hj212(data):04X}"
    return b"##%04d" % len(data) + data + check.encode() + b"\r\n"


def upload(qn: str, *, flag: int = 5, mn: str = MN, pw: str = PW) -> bytes:
    """A 2011 real-time upload."""
    return frame(
        f"QN={qn};ST=31;CN=2011;PW={pw};MN={mn};Flag={flag};"
        "CP=&&DataTime=20260105080000;a34013-Rtd=3.2,a34013-Flag=N&&"
    )


def test_reference_crc() -> None:
    # Check values of the App. A algorithm (docs/hj212.md#crc).
    assert crc_hj212(b"123456789") == 0x2F80
    assert (
        frame(
            "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
            "Flag=5;CP=&&RtdInterval=30&&"
        )
        == STD_FRAME
    )


# --- harness -----------------------------------------------------------------------------


def registry() -> StackRegistry:
    return StackRegistry(
        stacks=[
            StackInfo.model_validate(
                {
                    "stack_id": "s1",
                    "mn": MN,
                    "password": PW,
                    "sector": "cement",
                    "process": "kiln_tail",
                }
            ),
            StackInfo.model_validate(
                {
                    "stack_id": "std",
                    "mn": STD_MN,
                    "password": "100000",
                    "sector": "power",
                    "process": "coal_boiler",
                }
            ),
        ]
    )


def codec() -> Codec:
    return Hj212Codec()


class Harness:
    def __init__(self, gateway: Gateway, sink: MemoryFrameSink) -> None:
        self.gateway = gateway
        self.sink = sink

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.gateway.port)


async def make(
    *,
    auto_register: bool = False,
    idle_timeout_s: float = 30.0,
    max_connections: int = 100,
    per_conn: int = 32,
    total: int = 4096,
    metrics: CollectorRegistry | None = None,
) -> Harness:
    sink = MemoryFrameSink()
    gw = Gateway(
        settings=GatewaySettings(
            host="127.0.0.1",
            port=0,
            idle_timeout_s=idle_timeout_s,
            max_connections=max_connections,
            auto_register=auto_register,
            max_inflight_per_connection=per_conn,
            max_inflight_total=total,
        ),
        registry=registry(),
        sink=sink,
        codec=codec(),
        metrics_registry=metrics,
        name="gw-test",
        clock=lambda: CLOCK,
    )
    await gw.start()
    return Harness(gw, sink)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await make()
    yield harness
    await harness.gateway.stop(grace_s=5)


async def read_ack(reader: asyncio.StreamReader) -> str:
    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    return line.decode()


async def until(cond: Callable[[], bool], what: str) -> None:
    """Yield to the loop until `cond()` holds (the bound is a hang guard, not an assertion)."""
    for _ in range(10_000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"gave up waiting: {what}")


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the socket: EOF, or a reset when bytes were still unread."""
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        return True


async def spin(n: int = 200) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# --- verdicts and answers ------------------------------------------------------------------


async def test_standard_frame_is_accepted_recorded_and_answered(h: Harness) -> None:
    reader, writer = await h.connect()
    writer.write(STD_FRAME)
    ack = await read_ack(reader)
    # 9014 data answer echoing the request's QN (App. C part 2; docs/hj212.md#answers-and-requests).
    assert "CN=9014" in ack and f"QN={STD_QN}" in ack and f"MN={STD_MN}" in ack
    assert ack.startswith("##") and ack.endswith("\r\n")
    assert len(h.sink.raw) == 1  # the answer came only after the record was "acknowledged"
    rec = h.sink.raw[0]
    assert rec.verdict is Verdict.ACCEPTED and rec.reasons == []
    assert rec.mn == STD_MN and rec.cn == "1062"
    assert rec.text.startswith("##0101QN=20160801085857223;") and "1C80" in rec.text
    local = writer.get_extra_info("sockname")
    assert rec.peer == f"127.0.0.1:{local[1]}"
    assert rec.received_at == CLOCK and rec.gateway == "gw-test"
    assert h.sink.dead == []
    assert h.sink.keys == ["std"]  # keyed by the stack's id, as the worker's state is
    writer.close()


async def test_flag4_not_answered_flag5_answered(h: Harness) -> None:
    reader, writer = await h.connect()
    # Flag=4: 2017 version, A=0 -> no answer; Flag=5: A=1 -> answer (Table 3 bit field).
    writer.write(upload("20260105080000001", flag=4) + upload("20260105080000002", flag=5))
    ack = await read_ack(reader)
    assert "QN=20260105080000002" in ack  # the first answer is the second frame's
    await until(lambda: len(h.sink.raw) == 2, "both recorded")
    assert [r.verdict for r in h.sink.raw] == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    writer.close()


async def test_bad_crc_rejected_never_answered(h: Harness) -> None:
    reader, writer = await h.connect()
    good = upload("20260105080000002")
    bad = bytearray(upload("20260105080000001"))
    bad[-6:-2] = b"0000" if bad[-6:-2] != b"0000" else b"1111"  # corrupt the CRC only
    writer.write(bytes(bad) + good)
    ack = await read_ack(reader)
    assert "QN=20260105080000002" in ack  # no answer for the CRC failure came first
    await until(lambda: len(h.sink.raw) == 2, "both recorded")
    first = h.sink.raw[0]
    assert first.verdict is Verdict.REJECTED and first.reasons[0] == "bad_crc"
    assert len(h.sink.dead) == 1
    dl = h.sink.dead[0]
    assert dl.stage == "gateway" and dl.reason == "bad_crc"
    assert dl.payload == first.text and dl.key == MN
    writer.close()


async def test_unknown_mn_and_bad_password_rejected(h: Harness) -> None:
    reader, writer = await h.connect()
    writer.write(
        upload("20260105080000001", mn="NOT-REGISTERED-01")
        + upload("20260105080000002", pw="654321")
        + upload("20260105080000003")
    )
    ack = await read_ack(reader)
    assert "QN=20260105080000003" in ack
    await until(lambda: len(h.sink.raw) == 3, "all recorded")
    assert [r.reasons for r in h.sink.raw] == [["unknown_mn"], ["bad_password"], []]
    # the unknown MN keys its own records; the registered one its stack id, refused or not
    assert h.sink.keys == ["NOT-REGISTERED-01", "s1", "s1"]
    assert [d.reason for d in h.sink.dead] == ["unknown_mn", "bad_password"]
    assert h.gateway.stats.rejected_by_reason == {"unknown_mn": 1, "bad_password": 1}
    writer.close()


async def test_non_ascii_password_is_rejected_and_the_connection_keeps_serving(
    h: Harness,
) -> None:
    reader, writer = await h.connect()
    chinese_pw = frame(
        f"QN=20260105080000001;ST=31;CN=2011;PW=密码;MN={MN};Flag=5;"
        "CP=&&DataTime=20260105080000;a34013-Rtd=3.2,a34013-Flag=N&&"
    )
    writer.write(chinese_pw + upload("20260105080000002"))
    ack = await read_ack(reader)
    assert "QN=20260105080000002" in ack  # the wrong-PW frame got none; the next one did
    await until(lambda: len(h.sink.raw) == 2, "both recorded")
    assert [r.reasons for r in h.sink.raw] == [["bad_password"], []]
    assert h.sink.dead[0].payload == chinese_pw.decode().rstrip("\r\n").replace(
        "PW=密码;", "PW=******;")
    writer.close()


async def test_auto_register_accepts_unknown_mn() -> None:
    h = await make(auto_register=True)
    try:
        reader, writer = await h.connect()
        writer.write(upload("20260105080000009", mn="FOREIGN-LOGGER-7"))
        ack = await read_ack(reader)
        assert "QN=20260105080000009" in ack and "MN=FOREIGN-LOGGER-7" in ack
        rec = h.sink.raw[0]
        assert rec.verdict is Verdict.ACCEPTED and rec.reasons == ["unregistered_mn"]
        assert h.sink.dead == []
        writer.close()
    finally:
        await h.gateway.stop(grace_s=5)


async def test_sticky_and_split_writes_are_framed(h: Harness) -> None:
    reader, writer = await h.connect()
    f1, f2, f3 = (upload(f"2026010508000000{i}") for i in (1, 2, 3))
    writer.write(f1 + f2)  # sticky: two frames in one write
    await writer.drain()
    for piece in (f3[:5], f3[5:40], f3[40:]):  # split: one frame over three writes
        writer.write(piece)
        await writer.drain()
        await spin(20)
    acks = [await read_ack(reader) for _ in range(3)]
    assert [a.split(";")[0][6:] for a in acks] == [
        "QN=20260105080000001",
        "QN=20260105080000002",
        "QN=20260105080000003",
    ]
    assert [r.verdict for r in h.sink.raw] == [Verdict.ACCEPTED] * 3
    writer.close()


async def test_garbage_and_binary_rejected_connection_survives(h: Harness) -> None:
    reader, writer = await h.connect()
    writer.write(b"hello world\r\n" + bytes(range(256)) + b"\r\n" + STD_FRAME)
    ack = await read_ack(reader)
    assert f"QN={STD_QN}" in ack
    await until(lambda: any(r.verdict is Verdict.ACCEPTED for r in h.sink.raw), "accepted")
    rejected = [r for r in h.sink.raw if r.verdict is Verdict.REJECTED]
    assert rejected and all(r.reasons for r in rejected)
    assert len(h.sink.dead) == len(rejected)
    writer.close()


async def test_huge_line_is_cut_into_bounded_records(h: Harness) -> None:
    reader, writer = await h.connect()
    writer.write(b"x" * 1_000_000 + b"\r\n" + STD_FRAME)  # 1 MB without a frame, then one
    ack = await read_ack(reader)
    assert f"QN={STD_QN}" in ack  # the connection survived and is still served
    await until(lambda: h.sink.raw[-1].verdict is Verdict.ACCEPTED, "frame recorded")
    junk = h.sink.raw[:-1]
    # Every byte of the junk is kept, in records of at most 16 KiB (MAX_RECORD_BYTES).
    assert sum(len(r.text) for r in junk) == 1_000_000
    assert all(len(r.text) <= 16 * 1024 and r.reasons[0] == "garbage" for r in junk)
    writer.close()


async def test_framer_failure_is_recorded_and_connection_survives() -> None:
    class FragileFramer:
        def __init__(self) -> None:
            self.inner = Framer()

        def feed(self, data: bytes) -> list[FrameResult]:
            if b"BOOM" in data:
                raise RuntimeError("framer bug")
            return self.inner.feed(data)

        def flush(self) -> list[FrameResult]:
            return self.inner.flush()

    class FragileCodec(Hj212Codec):
        def new_framer(self) -> FramerLike:
            return FragileFramer()

    h = await make()
    h.gateway.codec = FragileCodec()
    try:
        reader, writer = await h.connect()
        writer.write(b"BOOM\r\n")
        await writer.drain()
        await until(lambda: len(h.sink.raw) == 1, "failure recorded")
        writer.write(STD_FRAME)
        assert f"QN={STD_QN}" in await read_ack(reader)
        first = h.sink.raw[0]
        assert first.text == "BOOM\r\n" and first.reasons == ["framer_error"]
        writer.close()
    finally:
        await h.gateway.stop(grace_s=5)


async def test_judging_failure_is_recorded_and_connection_survives() -> None:
    """A registry lookup that raises (a bug) costs that frame only: it is kept as a rejected
    raw frame with a dead letter saying why, and the next frame is answered."""

    class FragileRegistry(StackRegistry):
        def by_mn(self, mn: str | None) -> StackInfo | None:
            if mn == "BOOM0000000001":
                raise RuntimeError("registry bug")
            return super().by_mn(mn)

    h = await make()
    h.gateway.registry = FragileRegistry(stacks=registry().stacks)
    try:
        reader, writer = await h.connect()
        writer.write(upload("20260105080000001", mn="BOOM0000000001"))
        await until(lambda: len(h.sink.raw) == 1, "failure recorded")
        writer.write(STD_FRAME)
        assert f"QN={STD_QN}" in await read_ack(reader)
        first = h.sink.raw[0]
        assert first.verdict is Verdict.REJECTED and first.reasons == ["judge_error"]
        assert h.sink.dead[0].reason == "judge_error"
        assert "registry bug" in str(h.sink.dead[0].details)
        writer.close()
    finally:
        await h.gateway.stop(grace_s=5)


async def test_half_frame_at_disconnect_is_rejected_with_reason(h: Harness) -> None:
    _, writer = await h.connect()
    writer.write(STD_FRAME[:50])
    await writer.drain()
    writer.close()
    await until(lambda: len(h.sink.raw) == 1, "leftover recorded")
    rec = h.sink.raw[0]
    assert rec.verdict is Verdict.REJECTED and rec.reasons[-1] == "at_disconnect"
    # A half frame keeps its bytes, its password masked (what follows PW= is cut off here).
    assert STD_FRAME[:50].decode().endswith(";PW=100000")
    assert rec.text == STD_FRAME[:50].decode().replace("PW=100000", "PW=******")
    assert h.sink.dead[0].payload == rec.text


# --- timeouts and limits -------------------------------------------------------------------


async def test_idle_connection_is_closed() -> None:
    h = await make(idle_timeout_s=0.05)
    try:
        reader, _ = await h.connect()
        assert await closed_by_server(reader)  # server closed it
        await until(lambda: h.gateway.connections == 0, "closed")
        assert h.gateway.stats.idle_timeouts == 1
    finally:
        await h.gateway.stop(grace_s=5)


async def test_dribbling_logger_times_out_and_half_frame_is_recorded() -> None:
    # Bytes keep arriving (one per 0.05 s for 3 s) but never a complete frame: the idle
    # timer (0.3 s) counts complete frames, not bytes, so the connection is still closed.
    h = await make(idle_timeout_s=0.3)
    try:
        reader, writer = await h.connect()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in STD_FRAME[:60]:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        task = asyncio.ensure_future(dribble())
        assert await closed_by_server(reader)  # closed by the server
        task.cancel()
        await until(lambda: len(h.sink.raw) == 1, "leftover recorded")
        rec = h.sink.raw[0]
        assert rec.verdict is Verdict.REJECTED and rec.reasons[-1] == "at_disconnect"
        assert STD_FRAME.decode().startswith(rec.text) and len(rec.text) < 60
        assert h.gateway.stats.idle_timeouts == 1
    finally:
        await h.gateway.stop(grace_s=5)


async def test_max_connections_enforced() -> None:
    h = await make(max_connections=1)
    try:
        r1, w1 = await h.connect()
        writer_ok = w1
        writer_ok.write(STD_FRAME)
        await read_ack(r1)  # first connection is being served
        r2, _ = await h.connect()
        assert await closed_by_server(r2)  # second one closed at once
        assert h.gateway.stats.connections_refused == 1
        writer_ok.write(upload("20260105080000004"))
        assert "QN=20260105080000004" in await read_ack(r1)  # first still served
        w1.close()
    finally:
        await h.gateway.stop(grace_s=5)


# --- backpressure and at-least-once ----------------------------------------------------------


async def test_connection_budget_stops_reading_while_broker_is_slow() -> None:
    h = await make(per_conn=2)
    try:
        h.sink.gate = asyncio.Event()
        reader, writer = await h.connect()
        writer.write(b"".join(upload(f"2026010508000001{i}") for i in range(5)))
        await until(lambda: h.sink.submitted == 2, "two in flight")
        await spin()
        assert h.sink.submitted == 2  # budget spent: nothing more read/produced
        ack_task = asyncio.ensure_future(read_ack(reader))
        await spin()
        assert not ack_task.done()  # no answer before the broker acknowledged
        h.sink.gate.set()
        acks = [await ack_task] + [await read_ack(reader) for _ in range(4)]
        assert [a.split(";")[0][-2:] for a in acks] == ["10", "11", "12", "13", "14"]
        assert len(h.sink.raw) == 5
        writer.close()
    finally:
        await h.gateway.stop(grace_s=5)


async def test_global_budget_is_shared_by_connections() -> None:
    h = await make(total=3)
    try:
        h.sink.gate = asyncio.Event()
        conns = [await h.connect() for _ in range(2)]
        for n, (_, w) in enumerate(conns):
            w.write(b"".join(upload(f"202601050800002{n}{i}") for i in range(3)))
        await until(lambda: h.sink.submitted == 3, "three in flight")
        await spin()
        assert h.sink.submitted == 3  # 2 × 3 frames sent, only the global budget of 3 read
        h.sink.gate.set()
        await until(lambda: len(h.sink.raw) == 6, "all delivered")
        for r, w in conns:
            for _ in range(3):
                assert "CN=9014" in await read_ack(r)
            w.close()
    finally:
        await h.gateway.stop(grace_s=5)


async def test_failed_produce_is_not_answered(h: Harness) -> None:
    reader, writer = await h.connect()
    h.sink.fail = True
    writer.write(upload("20260105080000001"))
    await until(lambda: h.gateway.stats.produce_failures == 1, "failure counted")
    h.sink.fail = False
    writer.write(upload("20260105080000001"))  # the logger re-sends the unanswered frame
    ack = await read_ack(reader)
    assert "QN=20260105080000001" in ack
    assert h.gateway.stats.acks_sent == 1 and len(h.sink.raw) == 1
    writer.close()


# --- shutdown and metrics ------------------------------------------------------------------


async def test_graceful_stop_drains_and_closes() -> None:
    h = await make()
    h.sink.gate = asyncio.Event()
    reader, writer = await h.connect()
    writer.write(STD_FRAME)
    await until(lambda: h.sink.submitted == 1, "in flight")
    stopping = asyncio.ensure_future(h.gateway.stop(grace_s=5))
    await spin()
    h.sink.gate.set()  # the broker acknowledges during shutdown
    await stopping
    assert f"QN={STD_QN}" in await read_ack(reader)  # answered before the socket closed
    assert await closed_by_server(reader)
    assert len(h.sink.raw) == 1 and h.sink.stopped
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", writer.get_extra_info("peername")[1])
    writer.close()


async def test_prometheus_counters_read_back() -> None:
    metrics = CollectorRegistry()
    h = await make(metrics=metrics)
    try:
        reader, writer = await h.connect()
        # the standard's misprinted CRC (docs/hj212.md#crc)
        bad = STD_FRAME.replace(b"1C80", b"1C08")
        writer.write(bad + STD_FRAME + upload("20260105080000001", mn="NOT-REGISTERED-01"))
        await read_ack(reader)
        await until(lambda: len(h.sink.raw) == 3, "all recorded")

        def value(name: str, labels: dict[str, str] | None = None) -> float | None:
            return metrics.get_sample_value(name, labels or {})

        assert value("stackwatch_gateway_connections") == 1.0
        assert (
            value("stackwatch_gateway_frames_total", {"verdict": "rejected", "reason": "bad_crc"})
            == 1.0
        )
        assert (
            value(
                "stackwatch_gateway_frames_total", {"verdict": "rejected", "reason": "unknown_mn"}
            )
            == 1.0
        )
        assert (
            value("stackwatch_gateway_frames_total", {"verdict": "accepted", "reason": "none"})
            == 1.0
        )
        assert value("stackwatch_gateway_acks_total") == 1.0
        writer.close()
        await until(lambda: h.gateway.connections == 0, "closed")
        assert value("stackwatch_gateway_connections") == 0.0
        assert h.gateway.stats.frames_received == 3
    finally:
        await h.gateway.stop(grace_s=5)
