"""Review findings on `StackProcessor`: each test fails on the code before its fix.

Expected values are hand-computed from the rules in the module docstrings (HJ 212-2017 App. C/D).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stackwatch.beijing_time import CST
from stackwatch.compliance import Limit, LimitKind
from stackwatch.models import AggregateRecord, FactorReading, Reading, ReadingKind, Rule
from stackwatch.processor import ProcessorConfig, StackProcessor
from stackwatch.stack_limits import StackLimits

SO2, O2, FLOW = "a21026", "a19001", "a00000"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
NO_LIMITS = StackLimits(ref_o2=None, by_factor={})
LIMITS = StackLimits(
    ref_o2=10.0,
    by_factor={SO2: (Limit(limit_mg_m3=100.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0),)},
)


def minute(
    start: datetime,
    values: dict[str, FactorReading],
    *,
    data_time: datetime | None = None,
    flow: float | None = None,
) -> Reading:
    """A 2051 minute reading received one minute after its interval start."""
    return Reading(
        stack_id="kiln-1",
        mn="MN-KILN-1",
        cn="2051",
        kind=ReadingKind.MINUTE,
        sector="cement",
        process="kiln_tail",
        data_time=data_time or start,
        received_at=start + timedelta(minutes=1),
        flow_std_dry_m3_h=flow,
        values=values,
    )


def so2(value: float = 5.0, flag: str = "N") -> dict[str, FactorReading]:
    return {SO2: FactorReading(value=value, flag=flag)}


def test_logger_clock_a_year_ahead_does_not_put_a_live_stack_offline() -> None:
    """One frame dated a year ahead must not drag the event clock (and `offline`) with it.

    The stack uploads a minute every minute from 10:00 to 10:29 (received hh:mm+1). The frame
    received at 10:06 carries DataTime 2027-11-02 10:00 (clock a year ahead): the windows
    refuse it (> max_clock_skew after arrival); one such frame is a glitch, not a wrong clock
    (clock_skew needs three in a row), and the logger is alive the whole time, so no
    `offline` alert may be raised (timeout = 10 × 1 min) either.
    """
    proc = StackProcessor("kiln-1")
    events = []
    late: list[str] = []
    for i in range(30):
        start = T0 + timedelta(minutes=i)
        skewed = start + timedelta(days=365) if i == 5 else None
        out = proc.on_reading(minute(start, so2(), data_time=skewed), NO_LIMITS)
        events += out.alerts
        late += out.late
        out = proc.tick(start + timedelta(minutes=1, seconds=30), NO_LIMITS)
        events += out.alerts
    assert [e.rule for e in events if e.rule is Rule.OFFLINE] == []
    assert [e.kind for e in events if e.rule is Rule.CLOCK_SKEW] == []
    assert len(late) == 1 and "logger clock ahead" in late[0]
    # The event clock stays on the real timeline: last frame 10:29 + 1 min lag = 10:30,
    # received 10:30, so at wall time 10:31 the clock reads 10:31.
    assert proc.event_clock(T0 + timedelta(minutes=31)) == T0 + timedelta(minutes=31)


def test_invalid_logger_minute_has_no_valid_constituent() -> None:
    """A 2051 minute flagged D (fault) is invalid: valid_count 0 of total 1, not 1 of 1."""
    proc = StackProcessor("kiln-1")
    out = proc.on_reading(minute(T0, so2(5.0, "D")), NO_LIMITS)
    (rec,) = [a for a in out.aggregates if a.factor == SO2 and a.period == "minute"]
    assert rec.valid is False
    assert rec.valid_count == 0
    assert rec.total_count == 1


def _hour_with_flow(flow_flag: str) -> AggregateRecord:
    proc = StackProcessor("kiln-1")
    aggs: list[AggregateRecord] = []
    # 60 minutes 10:00–10:59 and 4 of the next hour so 10:00 closes (watermark 11:03 ≥ 11:00+3).
    for i in range(64):
        values = {
            SO2: FactorReading(value=40.0, flag="N", zs=40.0),
            O2: FactorReading(value=10.0, flag="N"),
            FLOW: FactorReading(value=0.5, flag=flow_flag),
        }
        out = proc.on_reading(minute(T0 + timedelta(minutes=i), values, flow=1000.0), LIMITS)
        aggs += out.aggregates
    (hour,) = [a for a in aggs if a.period == "hour" and a.factor == SO2]
    return hour


def test_hour_mass_uses_flow_only_when_the_flow_channel_is_valid() -> None:
    """Eq. 33 needs a valid hourly flow: G = C × Q × 10⁻⁶.

    Flow normal all hour: 40 mg/m³ × 1000 m³/h × 10⁻⁶ = 0.04 kg. Flow channel flagged D
    (fault) all hour: the hourly flow is invalid (0 of 45 valid minutes), so no mass.
    """
    ok = _hour_with_flow("N")
    assert ok.mean == 40.0 and ok.valid
    assert ok.mass_kg is not None and abs(ok.mass_kg - 0.04) < 1e-12
    faulty = _hour_with_flow("D")
    assert faulty.mean == 40.0 and faulty.valid
    assert faulty.mass_kg is None


def test_day_closes_day_grace_after_midnight_not_an_hour_later() -> None:
    """The day window closes once the event time passes midnight + day_grace (15 min).

    Day 2026-11-02 (+08:00): every minute of hour h carries SO2 = h (h = 0 … 23), so the 24
    hourly means are 0 … 23 and the day mean is (0 + … + 23)/24 = 276/24 = 11.5 (24 ≥ 20 valid
    hours). Its last hour (23:00) closes at 00:03; the day must close as soon as the stack's
    clock (the end of its newest minute record) reaches 00:15 of the next day, i.e. with the
    minute dated 00:14 (it covers 00:14–00:15) — not at 01:18 (tick) or 02:03 (next hour)
    because the day window's items are dated hour *starts*.
    """
    d0 = datetime(2026, 11, 2, 0, 0, tzinfo=CST)
    proc = StackProcessor("kiln-1")
    closed_at: datetime | None = None
    day: AggregateRecord | None = None
    for i in range(24 * 60 + 30):
        start = d0 + timedelta(minutes=i)
        outs = [proc.on_reading(minute(start, so2(float(start.hour))), NO_LIMITS)]
        outs.append(proc.tick(start + timedelta(minutes=1, seconds=30), NO_LIMITS))
        days = [a for o in outs for a in o.aggregates if a.period == "day" and a.factor == SO2]
        if days:
            closed_at, day = start, days[0]
            break
    assert closed_at == d0 + timedelta(days=1, minutes=14)
    assert day is not None and day.period_start == d0
    assert day.mean == 11.5 and day.valid and day.valid_count == 24


def test_day_from_platform_derived_hours_is_labelled_platform() -> None:
    """A logger that sends only real-time data (2011): minutes, hours and the day are all
    derived by the platform, so the day's `source` is "platform", not "logger".

    One real-time sample per minute (realtime_min_samples = 1) at SO2 = 7.0 for the whole day
    2026-11-02 and the first 20 minutes of the next: day mean 7.0 from 24 valid hours.
    """
    cfg = ProcessorConfig(realtime_min_samples=1)
    d0 = datetime(2026, 11, 2, 0, 0, tzinfo=CST)
    proc = StackProcessor("kiln-1", cfg)
    aggs: list[AggregateRecord] = []
    for i in range(24 * 60 + 20):
        t = d0 + timedelta(minutes=i, seconds=10)
        reading = Reading(
            stack_id="kiln-1", mn="MN-KILN-1", cn="2011", kind=ReadingKind.REALTIME,
            sector="cement", process="kiln_tail", data_time=t,
            received_at=t + timedelta(seconds=2), values=so2(7.0),
        )
        aggs += proc.on_reading(reading, NO_LIMITS).aggregates
        aggs += proc.tick(t + timedelta(seconds=50), NO_LIMITS).aggregates
    hours = {a.source for a in aggs if a.period == "hour" and a.factor == SO2}
    (day,) = [a for a in aggs if a.period == "day" and a.factor == SO2]
    assert hours == {"platform"}
    assert day.mean == 7.0 and day.valid and day.valid_count == 24
    assert day.source == "platform"


def test_state_snapshot_is_not_changed_by_later_processing() -> None:
    """`to_state()` goes to the table's store as is; later readings must not rewrite it.

    A 2061 for 10:00 (SO2 41.0) is kept in the 10:00 hour window; the snapshot holds exactly
    that. A second 2061 for 17:00 then adds the 17:00 window (and the clock closes 10:00) — in
    the processor, not in the snapshot taken before.
    """
    proc = StackProcessor("kiln-1")

    def logger_hour(start: datetime, value: float) -> Reading:
        return Reading(
            stack_id="kiln-1", mn="MN-KILN-1", cn="2061", kind=ReadingKind.HOUR,
            sector="cement", process="kiln_tail", data_time=start,
            received_at=start + timedelta(hours=1, seconds=30), values=so2(value),
        )

    def windows(state: dict[str, Any]) -> list[tuple[str, float]]:
        return [
            (w["start"], w["items"]["logger"]["item"]["logger"][SO2][0])
            for w in state["hours"]["windows"]
        ]

    proc.on_reading(logger_hour(T0, 41.0), NO_LIMITS)
    snap = proc.to_state()
    proc.on_reading(logger_hour(T0 + timedelta(hours=7), 42.0), NO_LIMITS)
    assert windows(snap) == [("2026-11-02T10:00:00+08:00", 41.0)]
    assert windows(proc.to_state()) == [("2026-11-02T17:00:00+08:00", 42.0)]
