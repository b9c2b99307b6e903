"""Bad input to the worker's agents: every refusal is a dead letter with its reason and the
original payload, counted on the worker's own Prometheus registry, and the next good record is
still processed.

Agents run under `agent.test_context()` as in test_agents.py (only topic sends are stubbed).
Frames with values the builder refuses to write (NaN, inf, 1e400) are framed here with the
standard's CRC computed by the oracle, so they are intact HJ 212 frames that the gateway would
accept (it judges CRC, MN and PW, not values). Scenario: a cement kiln tail (reference O2 10 %),
SO2 analyser range 0–2 000 mg/m³.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import (
    AggregateRecord,
    AlertEvent,
    DeadLetter,
    EventKind,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
    Verdict,
)
from stackwatch.processor import ProcessorConfig, StreamQualityConfig
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import Settings, StreamSettings, TopicSettings
from streams.app import WorkerApp, create_app
from tests.agent_recorder import Recorder
from tests.oracles import framed

SO2, O2 = "a21026", "a19001"
MN = "88888880000002"
KILN = StackInfo(stack_id="kiln-2", mn=MN, password="123456", sector="cement",
                 process="kiln_tail")
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
_ids = itertools.count()


class Bench:
    """The worker app, what it sent, and its Prometheus registry."""

    def __init__(self, app: WorkerApp, sent: Recorder, metrics: CollectorRegistry) -> None:
        self.app = app
        self.sent = sent
        self.metrics = metrics

    def dead(self) -> list[DeadLetter]:
        dead = self.sent.values(self.app.topics.deadletter)
        return [DeadLetter.model_validate_json(v) for v in dead]

    def readings(self) -> list[Reading]:
        return [Reading.model_validate_json(v) for v in self.sent.values(self.app.topics.readings)]

    def alerts(self) -> list[AlertEvent]:
        return [AlertEvent.model_validate_json(v) for v in self.sent.values(self.app.topics.alerts)]

    def aggregates(self, period: str) -> list[AggregateRecord]:
        topic = self.app.topics.for_period(period)
        assert topic is not None
        return [AggregateRecord.model_validate_json(v) for v in self.sent.values(topic)]

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def frames(self, *records: bytes) -> None:
        async with self.app.frames.test_context() as agent:
            for value in records:
                await agent.put(value, key=b"kiln-2")

    async def apply(self, *readings: Reading) -> None:
        """Readings straight into the processing step (values no frame can carry)."""
        for reading in readings:
            await self.app.pipeline.apply_reading(reading, reading.model_dump_json(), 0)


@pytest.fixture
def bench(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Bench:
    quality = StreamQualityConfig(ranges={SO2: 2000.0})
    settings = Settings(
        topics=TopicSettings(partitions=1),
        kafka_bootstrap="127.0.0.1:9",
        # One stack: its clock is judged against receipt time (no peers to judge by).
        streams=StreamSettings(
            processor=ProcessorConfig(quality=quality), clock_reference="receipt"
        ),
    )
    sent = Recorder()
    metrics = CollectorRegistry()
    wa = create_app(
        settings,
        broker="127.0.0.1:9",
        registry=StackRegistry(stacks=[KILN]),
        app_id=f"test-bad-input-{next(_ids)}",
        data_dir=tmp_path,
        metrics_registry=metrics,
        send=sent,
    )

    def send_changelog(partition: int | None, key: Any, value: Any, *a: Any, **kw: Any) -> Any:
        done: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(wa.table, "send_changelog", send_changelog)
    return Bench(wa, sent, metrics)


def minute_text(cp_values: str, *, mn: str = MN, data_time: str | None = "20261102100000") -> str:
    """A 2051 minute frame with the CP values given verbatim, framed by the oracle."""
    dt = "" if data_time is None else f"DataTime={data_time};"
    return framed(
        f"QN=20261102100100000;ST=31;CN=2051;PW=123456;MN={mn};Flag=4;CP=&&{dt}{cp_values}&&"
    )


def raw(text: str, *, received: datetime | None = None, mn: str = MN,
        verdict: Verdict = Verdict.ACCEPTED, reasons: list[str] | None = None) -> RawFrame:
    return RawFrame(text=text, received_at=received or T0 + timedelta(minutes=1),
                    peer="10.0.0.2:5000", mn=mn, cn="2051", verdict=verdict,
                    reasons=reasons or [])


def good_minute(start: datetime, so2: float = 8.0, o2: float = 10.0) -> RawFrame:
    (text,) = build_frames("2051", MN, "123456", start, {SO2: {"Avg": so2}, O2: {"Avg": o2}},
                           now=start)
    return raw(text, received=start + timedelta(minutes=1))


GOOD_JSON = good_minute(T0).model_dump_json()

# (case id, record on the raw topic, expected reason). Every frame in here is intact (CRC).
BAD_RAW: list[tuple[str, bytes, str]] = [
    ("truncated_json", GOOD_JSON[:40].encode(), "malformed_raw"),
    ("empty_value", b"", "malformed_raw"),
    ("json_null", b"null", "malformed_raw"),
    ("json_array", b"[]", "malformed_raw"),
    ("binary", b"\xff\xfe\x00garbage", "malformed_raw"),
    ("text_not_a_string", GOOD_JSON.replace('"text":"', '"text":5,"x":"').encode(),
     "malformed_raw"),
    ("verdict_unknown", GOOD_JSON.replace('"accepted"', '"maybe"').encode(), "malformed_raw"),
    ("naive_received_at", GOOD_JSON.replace("+08:00", "").encode(), "malformed_raw"),
    ("reasons_not_a_list", GOOD_JSON.replace('"reasons":[]', '"reasons":"x"').encode(),
     "malformed_raw"),
    ("nan", raw(minute_text("a21026-Avg=nan,a21026-Flag=N")).model_dump_json().encode(),
     "non_numeric_value"),
    ("NaN", raw(minute_text("a21026-Avg=NaN,a21026-Flag=N")).model_dump_json().encode(),
     "non_numeric_value"),
    ("inf", raw(minute_text("a21026-Avg=inf,a21026-Flag=N")).model_dump_json().encode(),
     "non_numeric_value"),
    ("minus_infinity", raw(minute_text("a19001-Avg=-Infinity")).model_dump_json().encode(),
     "non_numeric_value"),
    ("overflow_1e400", raw(minute_text("a21026-Avg=1e400")).model_dump_json().encode(),
     "non_numeric_value"),
    ("400_digits", raw(minute_text("a21026-Avg=" + "9" * 400)).model_dump_json().encode(),
     "non_numeric_value"),
    ("text_value", raw(minute_text("a21026-Avg=high")).model_dump_json().encode(),
     "non_numeric_value"),
    ("month_13", raw(minute_text("a21026-Avg=1", data_time="20261302100000"))
     .model_dump_json().encode(), "bad_datatime"),
    ("no_datatime", raw(minute_text("a21026-Avg=1", data_time=None)).model_dump_json().encode(),
     "missing_field"),
    ("crc_broken_after_framing", raw(minute_text("a21026-Avg=1").replace("Avg=1", "Avg=7"))
     .model_dump_json().encode(), "bad_crc"),
    ("unknown_mn", raw(minute_text("a21026-Avg=1", mn="UNKNOWN0000001"), mn="UNKNOWN0000001")
     .model_dump_json().encode(), "unknown_mn"),
]


@pytest.mark.parametrize(("record", "reason"), [(r, why) for _, r, why in BAD_RAW],
                         ids=[case for case, _, _ in BAD_RAW])
async def test_bad_raw_record_is_dead_lettered_and_the_next_frame_flows(
    bench: Bench, record: bytes, reason: str
) -> None:
    after = good_minute(T0 + timedelta(minutes=1))
    await bench.frames(record, after.model_dump_json().encode())
    (dead,) = bench.dead()
    assert (dead.stage, dead.reason) == ("decode", reason)
    # The original payload: the frame text for a parsable record, else the record itself.
    if reason == "malformed_raw":
        assert dead.payload == record.decode("utf-8", errors="backslashreplace")
        assert dead.details["error"]
    else:
        assert dead.payload == RawFrame.model_validate_json(record).text
        assert dead.details["detail"]
    assert bench.counter("stackwatch_dead_letters_total", stage="decode", reason=reason) == 1.0
    # The next frame of the same logger is decoded as if nothing had happened.
    (reading,) = bench.readings()
    assert reading.data_time == T0 + timedelta(minutes=1) and reading.values[SO2].value == 8.0
    assert bench.counter("stackwatch_readings_total", kind="minute") == 1.0


async def test_frame_refused_by_gateway_is_counted_not_dead_lettered_twice(bench: Bench) -> None:
    # The gateway writes a refused frame to the raw topic (the audit log) AND its dead letter;
    # the frames agent must not add a second dead letter for the same frame.
    refused = raw(minute_text("a21026-Avg=1"), verdict=Verdict.REJECTED,
                  reasons=["bad_password: PW does not match"])
    after = good_minute(T0 + timedelta(minutes=1))
    await bench.frames(refused.model_dump_json().encode(), after.model_dump_json().encode())
    assert bench.dead() == []
    assert bench.counter("stackwatch_raw_rejected_total", reason="bad_password") == 1.0
    (reading,) = bench.readings()
    assert reading.data_time == T0 + timedelta(minutes=1)


def reading(start: datetime, so2: float, *, received: datetime | None = None) -> Reading:
    return Reading(
        stack_id="kiln-2", mn=MN, cn="2051", kind=ReadingKind.MINUTE, sector="cement",
        process="kiln_tail", data_time=start,
        received_at=received or start + timedelta(minutes=1), ref_o2=10.0, o2=10.0,
        values={SO2: FactorReading(value=so2, zs=so2), O2: FactorReading(value=10.0)},
    )


async def decode_then_process(bench: Bench, frames: list[RawFrame]) -> list[Reading]:
    await bench.frames(*(f.model_dump_json().encode() for f in frames))
    return bench.readings()


async def test_negative_concentration_is_kept_flagged_and_alarmed(bench: Bench) -> None:
    # 负值 (docs/alarms.md#platform-vocabulary): the reading is kept with a warning, the
    # detector raises.
    (neg,) = await decode_then_process(bench, [good_minute(T0, so2=-5.0)])
    assert neg.values[SO2].value == -5.0 and "negative_value: a21026=-5.0" in neg.warnings
    raised = [(a.rule, a.kind, a.factor) for a in bench.alerts()]
    assert (Rule.NEGATIVE, EventKind.RAISE, SO2) in raised
    assert bench.counter("stackwatch_alert_events_total", rule="negative", kind="raise") == 1.0
    assert bench.dead() == []


async def test_absurd_concentration_is_over_range(bench: Bench) -> None:
    # 1e12 mg/m³ is a number (N14.2 allows 14 integer digits) but above the 2 000 mg/m³
    # analyser range configured for SO2: 超量程 alarm, the value itself is kept as sent.
    (big,) = await decode_then_process(bench, [good_minute(T0, so2=1e12)])
    assert big.values[SO2].value == 1e12
    over = [a for a in bench.alerts() if a.rule is Rule.OVER_RANGE]
    assert [(a.kind, a.factor) for a in over] == [(EventKind.RAISE, SO2)]
    assert bench.counter("stackwatch_alert_events_total", rule="over_range", kind="raise") == 1.0


async def test_values_whose_sum_overflows_do_not_wedge_the_stack(bench: Bench) -> None:
    # Sixty minutes of SO2 = 1.7e308 (finite, so accepted): their sum overflows a float. The
    # hour must still close — mean of equal values = that value — and the minutes after it
    # must go through, not fail one after another as processing errors.
    huge = 1.7e308
    minutes = [reading(T0 + timedelta(minutes=i), huge) for i in range(60)]
    minutes += [reading(T0 + timedelta(minutes=60 + i), 20.0) for i in range(5)]
    await bench.apply(*minutes)  # a frame cannot carry them (14 integer digits at most)
    assert bench.dead() == []
    (hour,) = [h for h in bench.aggregates("hour") if h.factor == SO2]
    assert hour.period_start == T0 and hour.valid_count == 60
    assert hour.mean == pytest.approx(huge, rel=1e-15)
    assert len([m for m in bench.aggregates("minute") if m.factor == SO2]) == 65


async def test_logger_clock_ahead_by_minutes_raises_clock_skew(bench: Bench) -> None:
    # A minute frame received when its interval ends is on time; these three are each dated
    # 10 min after receipt: deviation −11 min, beyond the 5 min tolerance, three frames in a
    # row → clock_skew (one frame alone is a glitch, not a wrong clock). The data still count.
    starts = [T0 + timedelta(minutes=10 + i) for i in range(3)]
    skewed = [
        good_minute(s).model_copy(update={"received_at": T0 + timedelta(minutes=i)})
        for i, s in enumerate(starts)
    ]
    await decode_then_process(bench, skewed)
    assert [(a.rule, a.kind) for a in bench.alerts()] == [(Rule.CLOCK_SKEW, EventKind.RAISE)]
    assert [a.period_start for a in bench.aggregates("minute") if a.factor == SO2] == starts


async def test_logger_clock_days_ahead_is_dead_lettered_as_late(bench: Bench) -> None:
    # DataTime two days after receipt: beyond max_clock_skew (1 day) the windows refuse it
    # (dead letter, stage aggregate, reason late) instead of moving the watermark; the next
    # on-time minute is processed normally.
    future = good_minute(T0 + timedelta(days=2)).model_copy(update={"received_at": T0})
    await decode_then_process(bench, [future, good_minute(T0)])
    dead = bench.dead()
    assert [(d.stage, d.reason) for d in dead] == [("aggregate", "late")]
    assert "2026-11-04T10:00:00+08:00" in dead[0].details["detail"]
    assert bench.counter("stackwatch_dead_letters_total", stage="aggregate", reason="late") == 1.0
    # (The logger's own minute record is passed on as sent; only the windows refuse it.)
    minutes = [a.period_start for a in bench.aggregates("minute") if a.factor == SO2]
    assert minutes == [T0 + timedelta(days=2), T0]
