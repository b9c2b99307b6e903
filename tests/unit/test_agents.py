"""The worker's agents under `agent.test_context()` (faust-streaming's documented way).

Only the topic sends are stubbed (a recorder replaces the producer call, and the table's
changelog send); the agents, the table store (`memory://`) and the domain are real. Scenario:
a cement kiln tail (reference O2 10 %, SO2 ultra-low 35 mg/m³) with O2 12 % in the flue gas.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import (
    AckCommand,
    AggregateRecord,
    AlertEvent,
    DeadLetter,
    EventKind,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
    Verdict,
)
from stackwatch.processor import StackProcessor
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import Settings, StreamSettings, TopicSettings
from streams.app import WorkerApp, create_app
from streams.continuity import Continuity
from streams.stall_watch import StallWatch, agent_stacks
from tests.agent_recorder import Recorder

SO2, O2 = "a21026", "a19001"
MN = "88888880000001"
KILN = StackInfo(
    stack_id="kiln-1", mn=MN, password="123456", sector="cement", process="kiln_tail"
)
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
_ids = itertools.count()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def worker(recorder: Recorder, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> WorkerApp:
    """A worker whose every record is its own checkpoint (state saved, then acknowledged)."""
    return make_worker(recorder, tmp_path, monkeypatch, checkpoint_records=1)


def make_worker(
    recorder: Recorder, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, *, checkpoint_records: int
) -> WorkerApp:
    settings = Settings(
        topics=TopicSettings(partitions=1),
        kafka_bootstrap="127.0.0.1:9",
        streams=StreamSettings(
            checkpoint_records=checkpoint_records, checkpoint_interval_s=3600.0
        ),
    )
    wa = create_app(
        settings,
        broker="127.0.0.1:9",
        registry=StackRegistry(stacks=[KILN]),
        app_id=f"test-agents-{next(_ids)}",
        data_dir=tmp_path,
        send=recorder,
    )
    states: list[tuple[str, Any]] = []

    def send_changelog(partition: int | None, key: Any, value: Any, *a: Any, **kw: Any) -> Any:
        done: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        done.set_result(None)
        return done

    def send_state(partition: int | None, key: Any, value: Any, *a: Any, **kw: Any) -> Any:
        states.append((key, value))
        return send_changelog(partition, key, value)

    monkeypatch.setattr(wa.table, "send_changelog", send_state)
    wa.table.sent = states  # type: ignore[attr-defined]
    archived: list[tuple[str, Any]] = []

    def send_archive(partition: int | None, key: Any, value: Any, *a: Any, **kw: Any) -> Any:
        archived.append((key, value))
        return send_changelog(partition, key, value)

    monkeypatch.setattr(wa.archive, "send_changelog", send_archive)
    wa.archive.sent = archived  # type: ignore[attr-defined]
    return wa


def raw_minute(
    so2: float, o2: float, start: datetime = T0, *, received: datetime | None = None,
    st: str = "31",
) -> RawFrame:
    (text,) = build_frames(
        "2051", MN, "123456", start, {SO2: {"Avg": so2}, O2: {"Avg": o2}}, now=start, st=st
    )
    return RawFrame(
        text=text,
        received_at=received or start + timedelta(minutes=1),
        peer="10.0.0.1:5000",
        mn=MN,
        cn="2051",
        verdict=Verdict.ACCEPTED,
    )


async def test_decode_valid_frame_emits_a_normalised_reading(
    worker: WorkerApp, recorder: Recorder
) -> None:
    async with worker.frames.test_context() as agent:
        await agent.put(raw_minute(8.0, 12.0).model_dump_json().encode(), key=MN.encode())
    (key, value), = recorder.on(worker.topics.readings.get_topic_name())
    reading = Reading.model_validate_json(value)
    assert key == "kiln-1"
    assert reading.kind is ReadingKind.MINUTE
    assert reading.data_time == T0
    assert reading.ref_o2 == 10.0
    # HJ 212-2017 App. D eq. 28: 8 × (21 − 10)/(21 − 12) = 8 × 11/9 = 9.777…
    assert reading.values[SO2].zs == pytest.approx(88 / 9)
    assert reading.values[SO2].value == 8.0
    assert recorder.on(worker.topics.deadletter.get_topic_name()) == []
    assert worker.metrics.readings.labels(kind="minute")._value.get() == 1.0


async def test_decode_corrupt_frame_goes_to_deadletter_with_reason(
    worker: WorkerApp, recorder: Recorder
) -> None:
    good = raw_minute(8.0, 12.0)
    # Flip one digit of the data segment: the CRC no longer matches (HJ 212-2017 App. A).
    corrupt = good.model_copy(update={"text": good.text.replace("a21026-Avg=8", "a21026-Avg=9")})
    async with worker.frames.test_context() as agent:
        await agent.put(corrupt.model_dump_json().encode(), key=MN.encode())
        await agent.put(b"{not json", key=b"x")
    dead = [
        DeadLetter.model_validate_json(v)
        for _, v in recorder.on(worker.topics.deadletter.get_topic_name())
    ]
    assert [(d.stage, d.reason) for d in dead] == [
        ("decode", "bad_crc"),
        ("decode", "malformed_raw"),
    ]
    assert dead[0].payload == corrupt.text  # the original frame, verbatim
    assert dead[1].payload == "{not json"
    assert recorder.on(worker.topics.readings.get_topic_name()) == []
    assert worker.metrics.dead_letters.labels(stage="decode", reason="bad_crc")._value.get() == 1


async def test_decode_unknown_mn_is_refused(worker: WorkerApp, recorder: Recorder) -> None:
    (text,) = build_frames("2051", "99999999999999", "1", T0, {SO2: {"Avg": 1.0}}, now=T0)
    raw = RawFrame(
        text=text, received_at=T0, peer="p", verdict=Verdict.ACCEPTED, mn="99999999999999"
    )
    async with worker.frames.test_context() as agent:
        await agent.put(raw.model_dump_json().encode(), key=b"99999999999999")
    ((_, value),) = recorder.on(worker.topics.deadletter.get_topic_name())
    assert DeadLetter.model_validate_json(value).reason == "unknown_mn"


def frame(start: datetime, so2: float, *, received: datetime | None = None) -> bytes:
    """The raw-topic record of a minute (2051) of the kiln, SO2 `so2` at O2 10 %: at the
    reference O2 the converted value equals the measured one."""
    return raw_minute(so2, 10.0, start, received=received).model_dump_json().encode()


async def test_sixty_minutes_make_the_hand_computed_hour(
    worker: WorkerApp, recorder: Recorder
) -> None:
    # Minutes 10:00–10:59 alternate 20 and 23: mean = (30·20 + 30·23)/60 = 1290/60 = 21.5.
    # Minutes 11:00–11:04 push the watermark past 11:00 + 3 min grace, closing the hour.
    values = [20.0 if i % 2 == 0 else 23.0 for i in range(60)] + [21.0] * 5
    async with worker.frames.test_context() as agent:
        for i, v in enumerate(values):
            await agent.put(frame(T0 + timedelta(minutes=i), v), key=b"kiln-1")
    hours = [
        AggregateRecord.model_validate_json(v)
        for _, v in recorder.on(worker.topics.hour.get_topic_name())
    ]
    so2 = [h for h in hours if h.factor == SO2]
    assert len(so2) == 1
    assert so2[0].period_start == T0
    assert so2[0].mean == pytest.approx(21.5)
    assert so2[0].valid and so2[0].valid_count == 60
    minutes = recorder.on(worker.topics.minute.get_topic_name())
    assert len(minutes) == 65 * 2  # one per factor (SO2, O2) per minute reading
    # The state was written back to the table once per record, with the stack's registry row.
    state = worker.table.data["kiln-1"]
    assert state["stack"]["sector"] == "cement"
    assert state["processor"]["stack_id"] == "kiln-1"
    assert worker.metrics.aggregates.labels(period="hour")._value.get() == 2  # SO2 and O2


async def test_a_malformed_record_is_a_dead_letter_and_the_next_frame_is_processed(
    worker: WorkerApp, recorder: Recorder
) -> None:
    async with worker.frames.test_context() as agent:
        await agent.put(b'{"text": 3}', key=b"kiln-1")
        await agent.put(frame(T0, 5.0), key=b"kiln-1")
    dead = recorder.on(worker.topics.deadletter.get_topic_name())
    assert [DeadLetter.model_validate_json(v).reason for _, v in dead] == ["malformed_raw"]
    assert len(recorder.on(worker.topics.minute.get_topic_name())) == 2  # the next one works


async def test_wastewater_readings_make_no_stack_state(
    worker: WorkerApp, recorder: Recorder
) -> None:
    # ST 32 (wastewater): the sinks store the reading; the processor never sees it.
    water = raw_minute(5.0, 10.0, st="32").model_dump_json().encode()
    async with worker.frames.test_context() as agent:
        for _ in range(3):
            await agent.put(water, key=b"kiln-1")
    assert len(recorder.on(worker.topics.readings.get_topic_name())) == 3
    assert not worker.states.known("kiln-1")
    assert recorder.on(worker.topics.minute.get_topic_name()) == []
    assert worker.metrics.readings_not_flue_gas.labels(st="32")._value.get() == 3


async def test_idle_input_flushes_the_open_hour_once(
    worker: WorkerApp, recorder: Recorder
) -> None:
    # Minutes 10:00–10:59 (SO2 21), then the input stops. The hour would close 3 idle minutes
    # later; once the whole input has been idle for idle_flush_s (60 s here) it is emitted at
    # the next tick, and only once.
    monotonic = [1000.0]
    worker.pipeline.monotonic = lambda: monotonic[0]
    worker.pipeline.idle_flush_s = 60.0
    async with worker.frames.test_context() as agent:
        for i in range(60):
            await agent.put(frame(T0 + timedelta(minutes=i), 21.0), key=b"kiln-1")
    await worker.pipeline.tick([0])
    assert recorder.on(worker.topics.hour.get_topic_name()) == []
    monotonic[0] += 61.0
    await worker.pipeline.tick([0])
    hours = [AggregateRecord.model_validate_json(v)
             for _, v in recorder.on(worker.topics.hour.get_topic_name())]
    assert [(h.factor, h.mean, h.revision) for h in hours if h.factor == SO2] == [(SO2, 21.0, 0)]
    days = recorder.on(worker.topics.day.get_topic_name())
    assert days  # the day in progress, emitted provisionally
    await worker.pipeline.tick([0])
    assert len(recorder.on(worker.topics.hour.get_topic_name())) == len(hours)


async def test_a_finalised_hour_is_archived_and_a_late_minute_revises_it(
    worker: WorkerApp, recorder: Recorder
) -> None:
    # Hour 10:00 with 40 minutes (invalid), then the stack runs on to 11:40: the hour is
    # final at 11:00 + 3 min grace + 30 min lateness and goes to the window_archive table. A
    # minute of 10:45 re-sent at 11:41 recomputes it from the archive: revision 1, 41 minutes.
    async with worker.frames.test_context() as agent:
        for i in [*range(40), *range(60, 100)]:
            await agent.put(frame(T0 + timedelta(minutes=i), 20.0), key=b"kiln-1")
        sent = worker.archive.sent  # type: ignore[attr-defined]
        assert [k for k, _ in sent] == ["kiln-1|hour|2026-11-02T10:00:00+08:00"]
        late = frame(T0 + timedelta(minutes=45), 20.0, received=T0 + timedelta(minutes=101))
        await agent.put(late, key=b"kiln-1")
    hours = [AggregateRecord.model_validate_json(v)
             for _, v in recorder.on(worker.topics.hour.get_topic_name())]
    ten = [(h.revision, h.valid_count) for h in hours if h.factor == SO2 and h.period_start == T0]
    assert ten == [(0, 40), (1, 41)]


async def test_tick_uses_idle_wall_time_not_the_recorded_receive_time(
    worker: WorkerApp, recorder: Recorder
) -> None:
    """A replayed stack (received_at years ago) that goes quiet closes its hour by idle time."""
    wall = [datetime(2030, 1, 1, tzinfo=UTC)]
    worker.states.clock = lambda: wall[0]
    async with worker.frames.test_context() as agent:
        for i in range(60):
            await agent.put(frame(T0 + timedelta(minutes=i), 30.0 + i % 2), key=b"kiln-1")
    assert recorder.on(worker.topics.hour.get_topic_name()) == []
    # The stack's clock is the end of its newest minute record (10:59 + 1 min = 11:00) + idle
    # wall time; the hour 10:00–11:00 closes at 11:00 + 3 min grace = 11:03, i.e. after 3 idle
    # minutes, however long ago the records were received.
    wall[0] += timedelta(minutes=2, seconds=59)
    await worker.pipeline.tick([0])
    assert recorder.on(worker.topics.hour.get_topic_name()) == []  # 11:02:59
    wall[0] += timedelta(seconds=1)
    await worker.pipeline.tick([0])
    hours = [
        AggregateRecord.model_validate_json(v)
        for _, v in recorder.on(worker.topics.hour.get_topic_name())
    ]
    # 30 and 31 alternate: (30·30 + 30·31)/60 = 30.5.
    assert [(h.factor, h.mean) for h in hours if h.factor == SO2] == [(SO2, 30.5)]


async def test_ack_command_acknowledges_the_open_alert(
    worker: WorkerApp, recorder: Recorder
) -> None:
    # An hour of SO2 = 50 and 51 alternating (mean 50.5 > 35) closed by 4 minutes of the next
    # hour raises hour_exceedance at 11:00 (the end of the hour).
    async with worker.frames.test_context() as agent:
        for i in range(64):
            await agent.put(frame(T0 + timedelta(minutes=i), 50.0 + i % 2), key=b"kiln-1")
    alerts = [
        AlertEvent.model_validate_json(v)
        for _, v in recorder.on(worker.topics.alerts.get_topic_name())
    ]
    (raised,) = [a for a in alerts if a.rule is Rule.HOUR_EXCEEDANCE]
    assert raised.kind is EventKind.RAISE and raised.at == T0 + timedelta(hours=1)
    ack = AckCommand(alert_id=raised.alert_id, stack_id="kiln-1", by="duty officer",
                     reason="plant notified", at=T0 + timedelta(hours=1, minutes=10))
    unknown = ack.model_copy(update={"alert_id": "no-such-alert"})
    async with worker.commands.test_context() as agent:
        await agent.put(ack.model_dump_json().encode(), key=b"kiln-1")
        await agent.put(unknown.model_dump_json().encode(), key=b"kiln-1")
        await agent.put(b"[]", key=b"kiln-1")
    events = [
        AlertEvent.model_validate_json(v)
        for _, v in recorder.on(worker.topics.alerts.get_topic_name())
    ][len(alerts):]
    assert [(e.alert_id, e.kind, e.seq, e.ack_by) for e in events] == [
        (raised.alert_id, EventKind.ACK, 2, "duty officer")
    ]
    dead = [
        DeadLetter.model_validate_json(v)
        for _, v in recorder.on(worker.topics.deadletter.get_topic_name())
    ]
    assert [(d.stage, d.reason) for d in dead] == [
        ("command", "alert_not_open"),
        ("command", "malformed_command"),
    ]


async def test_continuity_guard_seeks_back_over_a_skipped_block() -> None:
    """Offsets 0, 1, 2 then 27: the consumer skipped 3–26, so seek to 3 and ignore 27+."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    now = [0.0]
    guard = Continuity("process", seek, give_up_s=30.0, clock=lambda: now[0])
    tp = TP("readings", 0)
    assert [await guard.admit(tp, o) for o in (0, 1, 2)] == [True, True, True]
    assert await guard.admit(tp, 27) is False  # gap: seek back to 3
    assert await guard.admit(tp, 28) is False  # buffered after the gap: wait for 3
    assert sought == [(tp, 3)]
    assert [await guard.admit(tp, o) for o in range(3, 29)] == [True] * 26  # re-delivered
    assert await guard.admit(tp, 28) is False  # a second delivery of 28 is not handled twice
    assert await guard.admit(tp, 29) is True
    # A hole that never fills (offsets 30–39 hold no record) is accepted after give_up_s,
    # and reading resumes at the lowest offset seen past it (40), not at whatever offset is
    # being delivered when the guard gives up: 40–44, passed over meanwhile, are read again.
    assert [await guard.admit(tp, o) for o in range(40, 45)] == [False] * 5
    now[0] = 31.0
    assert await guard.admit(tp, 45) is False
    assert sought == [(tp, 3), (tp, 30), (tp, 40)]
    assert [await guard.admit(tp, o) for o in range(40, 47)] == [True] * 7


async def test_continuity_guard_accepts_a_hole_at_the_end_of_the_log() -> None:
    """A broker restart left offset 62 without a record, and 63–64 were the last records
    produced: both were refused while the guard waited for 62. Nothing more arrives, so the
    guard must seek again once it gives up, or the partition stalls for good."""
    sought: list[int] = []
    seek_after_give_up = asyncio.Event()
    now = [0.0]

    async def seek(_tp: TP, offset: int) -> None:
        sought.append(offset)
        if now[0] >= 30.0:
            seek_after_give_up.set()

    guard = Continuity("process", seek, give_up_s=30.0, reseek_s=0.001, clock=lambda: now[0])
    tp = TP("readings", 1)
    assert [await guard.admit(tp, o) for o in range(62)] == [True] * 62
    assert [await guard.admit(tp, o) for o in (63, 64)] == [False, False]  # waiting for 62
    now[0] = 31.0  # the wait is over, and nothing new has been produced
    await asyncio.wait_for(seek_after_give_up.wait(), 5)
    assert set(sought) == {62}
    assert [await guard.admit(tp, o) for o in (63, 64)] == [True, True]  # re-delivered
    assert await guard.admit(tp, 65) is True


async def test_continuity_guard_repeats_the_seek_until_the_missing_record_arrives() -> None:
    """Faust's fetch loop may swallow one seek (records fetched before it move its read offset
    past the target): the guard seeks again every `reseek_s` while the gap is open, and stops
    once the missing record has arrived."""
    sought: list[int] = []
    repeated = asyncio.Event()

    async def seek(_tp: TP, offset: int) -> None:
        sought.append(offset)
        if len(sought) >= 3:
            repeated.set()

    guard = Continuity("decode", seek, give_up_s=30.0, reseek_s=0.001)
    tp = TP("raw", 0)
    assert await guard.admit(tp, 0) is True
    assert await guard.admit(tp, 5) is False  # 1–4 skipped: seek to 1, and again, and again
    await asyncio.wait_for(repeated.wait(), 5)
    assert set(sought) == {1}
    assert await guard.admit(tp, 1) is True  # healed
    seeks_when_healed = len(sought)
    await asyncio.sleep(0.05)  # many re-seek periods: a healed gap is not sought again
    assert len(sought) <= seeks_when_healed + 1  # at most one already in flight
    assert [await guard.admit(tp, o) for o in (2, 3, 4, 5)] == [True] * 4


async def test_continuity_guard_checks_the_first_record_against_the_resume_offset() -> None:
    """A fresh member's first record of a partition was offset 5 where the group resumes at 0
    (nothing committed, log start 0): records 0–4 were skipped with no later jump to show it.
    The guard seeks back to 0; below a committed offset, records are already handled."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    resume = {TP("raw", 0): 0, TP("raw", 1): 40}
    asked: list[TP] = []

    async def start_offset(tp: TP) -> int | None:
        asked.append(tp)
        return resume[tp]

    guard = Continuity("decode", seek, reseek_s=60.0, start_offset=start_offset)
    fresh, committed = TP("raw", 0), TP("raw", 1)
    assert await guard.admit(fresh, 5) is False
    assert sought == [(fresh, 0)]
    assert [await guard.admit(fresh, o) for o in range(6)] == [True] * 6
    assert await guard.admit(committed, 39) is False  # below the committed offset: done before
    assert await guard.admit(committed, 40) is True
    assert asked == [fresh, committed]  # once per partition and assignment, not per record
    guard.reset()  # a new assignment: the resume offset is asked for again
    resume[fresh] = 6
    assert await guard.admit(fresh, 6) is True


async def test_continuity_guard_seeks_back_records_skipped_at_the_end_of_the_log() -> None:
    """Offset 0 was handled and 1–6 were never delivered, with no later record to show the
    jump. Once the partition has been idle for idle_s and its log ends past 1, the guard
    seeks back to 1, once; a partition read to its end is left alone."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    now = [0.0]
    ends = {TP("raw", 0): 7, TP("raw", 1): 3}

    async def end_offset(tp: TP) -> int | None:
        return ends[tp]

    guard = Continuity("decode", seek, reseek_s=60.0, clock=lambda: now[0])
    short, whole = TP("raw", 0), TP("raw", 1)
    assert await guard.admit(short, 0) is True
    assert [await guard.admit(whole, o) for o in range(3)] == [True] * 3
    now[0] = 4.0
    await guard.check_tails(end_offset, idle_s=5.0)
    assert sought == []  # not idle long enough yet
    now[0] = 6.0
    await guard.check_tails(end_offset, idle_s=5.0)
    assert sought == [(short, 1)]  # the log ends at 7: 1–6 are sought; partition 1 is whole
    await guard.check_tails(end_offset, idle_s=5.0)
    assert sought == [(short, 1)]  # once per next offset
    assert [await guard.admit(short, o) for o in range(1, 7)] == [True] * 6


async def test_continuity_guard_seeks_a_partition_that_never_delivered_its_first_record() -> None:
    """Measured in CI: a worker was assigned raw:0 while 183 records were in it, logged
    Ready, and never got offset 0, so no jump ever showed the loss. Once the partition has
    been assigned and idle for idle_s, the guard seeks it to the offset the group resumes at
    (0 here); an assigned partition whose log is empty, or read to its committed end, is left
    alone."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    stuck, empty, done = TP("raw", 0), TP("raw", 1), TP("raw", 2)
    resume = {stuck: 0, empty: 0, done: 50}
    ends = {stuck: 183, empty: 0, done: 50}

    async def start_offset(tp: TP) -> int | None:
        return resume[tp]

    async def end_offset(tp: TP) -> int | None:
        return ends[tp]

    now = [0.0]
    guard = Continuity("decode", seek, reseek_s=60.0, start_offset=start_offset,
                       clock=lambda: now[0])
    assigned = {stuck, empty, done}
    await guard.check_tails(end_offset, idle_s=5.0, assigned=assigned)
    now[0] = 4.0
    await guard.check_tails(end_offset, idle_s=5.0, assigned=assigned)
    assert sought == []  # assigned 4 s ago: not idle long enough yet
    now[0] = 5.5
    await guard.check_tails(end_offset, idle_s=5.0, assigned=assigned)
    assert sought == [(stuck, 0)]
    assert [await guard.admit(stuck, o) for o in range(3)] == [True] * 3  # now delivered
    guard.reset()  # revoked and assigned again: the idle clock starts again
    now[0] = 6.0
    await guard.check_tails(end_offset, idle_s=5.0, assigned=assigned)
    assert sought == [(stuck, 0)]


async def test_stall_watch_logs_a_partition_with_unhandled_records_and_the_consumer_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """raw:0 holds 183 records and nothing was admitted for 20 s: one error naming the
    partition, its next offset and the log end, with the consumer's state; repeated only
    after repeat_s. raw:1, read to its end, is idle but not stalled."""

    async def seek(_tp: TP, _offset: int) -> None:
        return None

    async def start_offset(_tp: TP) -> int | None:
        return 0

    ends = {TP("raw", 0): 183, TP("raw", 1): 7}
    asked: list[TP] = []

    async def end_offset(tp: TP) -> int | None:
        asked.append(tp)
        return ends[tp]

    now = [0.0]
    guard = Continuity("decode", seek, start_offset=start_offset, clock=lambda: now[0])
    app = SimpleNamespace(rebalancing=False, in_recovery=False)
    watch = StallWatch(app, {"decode": guard}, stall_s=20.0, repeat_s=30.0,
                       clock=lambda: now[0])
    assert [await guard.admit(TP("raw", 1), o) for o in range(7)] == [True] * 7
    assigned = {"decode": {TP("raw", 0), TP("raw", 1)}}
    assert await watch.check(assigned, end_offset) == []
    now[0] = 21.0
    with caplog.at_level(logging.ERROR, logger="streams.stall_watch"):
        assert await watch.check(assigned, end_offset) == [("decode", TP("raw", 0))]
        assert len(asked) == 2  # each idle partition's end asked once
        now[0] = 30.0
        assert await watch.check(assigned, end_offset) == []  # reported 9 s ago
        assert len(asked) == 2  # and not asked again within stall_s
        now[0] = 52.0
        assert await watch.check(assigned, end_offset) == [("decode", TP("raw", 0))]
    # only this logger's records: a stray one (asyncio reporting an earlier test's task when
    # the garbage collector runs) must not count
    [first, _again] = [r for r in caplog.records if r.name == "streams.stall_watch"]
    assert "decode raw:0 next=0 end=183" in first.getMessage()
    state = cast(Any, first).consumer
    assert state["rebalancing"] is False
    assert state["flow_active"] == "?"  # the fake app has no consumer: read as unknown
    assert list(state["partitions"]) == [str(TP("raw", 0))]


async def test_agent_stacks_show_where_a_stuck_agent_waits() -> None:
    """An agent body awaiting a delivery that never completes: its task's await chain goes
    from the agent down to the delivery's wait; a task running anything else is left out."""
    never = asyncio.Event()

    async def deliver() -> None:
        await never.wait()

    async def agent() -> None:
        await deliver()

    async def other() -> None:
        await never.wait()

    stuck = asyncio.create_task(agent(), name="decode-actor")
    unrelated = asyncio.create_task(other(), name="timer")
    await asyncio.sleep(0)
    try:
        stacks = agent_stacks()
        assert list(stacks) == ["decode-actor"]
        assert [step.split(":")[0] for step in stacks["decode-actor"]] == [
            "agent", "deliver", "wait"
        ]
    finally:
        stuck.cancel()
        unrelated.cancel()


async def test_agent_stacks_reach_through_faust_to_an_idle_agent_waiting_for_records(
    recorder: Recorder, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Faust agent with no input: its task's own stack ends at Faust's `await coro`;
    the chain goes on through our agent body down to the stream queue's `get`."""
    worker = make_worker(recorder, tmp_path, monkeypatch, checkpoint_records=1)
    async with worker.frames.test_context():
        await asyncio.sleep(0.05)
        [chain] = agent_stacks().values()
    names = [step.split(":")[0] for step in chain]
    assert names[0] == "_execute_actor"
    assert "agent" in names
    assert names[-1] == "get"


async def test_continuity_guard_does_not_wait_for_good_on_a_seek_lost_in_a_rebalance() -> None:
    """A seek asked for during a rebalance never completed, and the agent that awaited it
    never read its partitions again. The guard gives each seek `seek_timeout_s`, goes on
    refusing the records past the gap, and seeks again until the missing record arrives."""
    calls: list[int] = []
    second = asyncio.Event()

    async def seek(_tp: TP, offset: int) -> None:
        calls.append(offset)
        if len(calls) == 1:
            await asyncio.Event().wait()  # the first seek is lost: it never returns
        second.set()

    guard = Continuity("decode", seek, give_up_s=30.0, reseek_s=0.001, seek_timeout_s=0.05)
    tp = TP("raw", 1)
    assert [await guard.admit(tp, o) for o in (0, 1)] == [True, True]
    # 2 was skipped: the admit of 3 returns (False) although its seek hangs.
    assert await asyncio.wait_for(guard.admit(tp, 3), 5) is False
    await asyncio.wait_for(second.wait(), 5)  # sought again
    assert calls[:2] == [2, 2]
    assert [await guard.admit(tp, o) for o in (2, 3)] == [True, True]


async def test_a_checkpoint_writes_the_stack_state_once_and_acknowledges_after_it(
    recorder: Recorder, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """65 readings of one stack in one checkpoint: the outputs go out record by record, the
    state is written once at the checkpoint (not 65 times), and the records are acknowledged
    only then."""
    worker = make_worker(recorder, tmp_path, monkeypatch, checkpoint_records=1000)
    checkpoint = worker.checkpoints["frames"]
    values = [20.0 if i % 2 == 0 else 23.0 for i in range(60)] + [21.0] * 5
    async with worker.frames.test_context() as agent:
        for i, v in enumerate(values):
            await agent.put(frame(T0 + timedelta(minutes=i), v),
                            key=b"kiln-1")
        assert len(recorder.on(worker.topics.minute.get_topic_name())) == 65 * 2
        assert worker.table.sent == []  # type: ignore[attr-defined]
        assert len(checkpoint) == 65  # applied, not yet acknowledged
        assert await checkpoint.flush() == 65
    (key, state), = worker.table.sent  # type: ignore[attr-defined]
    assert key == "kiln-1" and state["processor"]["stack_id"] == "kiln-1"
    hours = [AggregateRecord.model_validate_json(v)
             for _, v in recorder.on(worker.topics.hour.get_topic_name())]
    (so2,) = [h for h in hours if h.factor == SO2]
    assert so2.mean == pytest.approx(1290 / 60) and so2.valid_count == 60  # 30·20 + 30·23


async def test_a_processing_error_mid_checkpoint_costs_only_the_bad_record(
    recorder: Recorder, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Minute 10:30 makes the domain raise after 30 minutes were applied but not yet saved.
    The stack is rebuilt from its saved state plus those 30 readings, so only 10:30 is lost:
    the hour holds 59 minutes, 29 × 20 + 30 × 23 = 1270, mean 1270/59 ≈ 21.5254."""
    worker = make_worker(recorder, tmp_path, monkeypatch, checkpoint_records=1000)
    bad = T0 + timedelta(minutes=30)
    on_reading = StackProcessor.on_reading

    def failing(self: StackProcessor, r: Reading, *args: Any, **kwargs: Any) -> Any:
        if r.data_time == bad:
            raise RuntimeError("domain bug")
        return on_reading(self, r, *args, **kwargs)

    monkeypatch.setattr(StackProcessor, "on_reading", failing)
    values = [20.0 if i % 2 == 0 else 23.0 for i in range(60)] + [21.0] * 5
    async with worker.frames.test_context() as agent:
        for i, v in enumerate(values):
            await agent.put(frame(T0 + timedelta(minutes=i), v),
                            key=b"kiln-1")
        await worker.checkpoints["frames"].flush()
    dead = [DeadLetter.model_validate_json(v)
            for _, v in recorder.on(worker.topics.deadletter.get_topic_name())]
    assert [d.reason for d in dead] == ["processing_error"]
    hours = [AggregateRecord.model_validate_json(v)
             for _, v in recorder.on(worker.topics.hour.get_topic_name())]
    (so2,) = [h for h in hours if h.factor == SO2]
    assert so2.valid_count == 59
    assert so2.mean == pytest.approx(1270 / 59)
