"""The per-stack processor: hand-computed hours and the alerts they must cause.

Scenario (cement kiln tail, reference O2 10 %, SO2 ultra-low 35 and standard 100 mg/m³):
every minute the logger reports O2 = 10.0 %, so the converted value equals the measured one
(factor (21 − 10)/(21 − 10) = 1) and every expected number below is plain arithmetic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stackwatch.beijing_time import CST
from stackwatch.compliance import Limit, LimitKind, Severity
from stackwatch.models import AggregateRecord, EventKind, FactorReading, Reading, ReadingKind, Rule
from stackwatch.processor import ProcessorConfig, StackProcessor
from stackwatch.stack_limits import StackLimits

SO2 = "a21026"
O2 = "a19001"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
LIMITS = StackLimits(
    ref_o2=10.0,
    by_factor={
        SO2: (
            Limit(limit_mg_m3=35.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0, program="NATL-2024"),
            Limit(limit_mg_m3=100.0, kind=LimitKind.STANDARD, ref_o2=10.0),
        )
    },
)


def minute(start: datetime, so2: float, flag: str = "N", *, lag_s: int = 60) -> Reading:
    """A logger 2051 minute reading that arrives `lag_s` after its interval start."""
    return Reading(
        stack_id="kiln-1",
        mn="MN-KILN-1",
        cn="2051",
        kind=ReadingKind.MINUTE,
        sector="cement",
        process="kiln_tail",
        data_time=start,
        received_at=start + timedelta(seconds=lag_s),
        ref_o2=10.0,
        o2=10.0,
        values={
            SO2: FactorReading(value=so2, flag=flag, zs=so2),
            O2: FactorReading(value=10.0, flag=flag),
        },
    )


def feed_hour(
    proc: StackProcessor, hour_start: datetime, values: list[float], flag: str = "N"
) -> tuple[list[AggregateRecord], list]:  # type: ignore[type-arg]
    aggs: list[AggregateRecord] = []
    alerts = []
    for i, v in enumerate(values):
        out = proc.on_reading(minute(hour_start + timedelta(minutes=i), v, flag), LIMITS)
        aggs.extend(out.aggregates)
        alerts.extend(out.alerts)
    return aggs, alerts


def hours(aggs: list[AggregateRecord], factor: str = SO2) -> list[AggregateRecord]:
    return [a for a in aggs if a.period == "hour" and a.factor == factor]


def test_exceedance_hour_mean_and_alert() -> None:
    proc = StackProcessor("kiln-1")
    # 30 minutes at 30 and 30 minutes at 50: mean = (30·30 + 30·50)/60 = 40.0 > 35, < 100.
    aggs, alerts = feed_hour(proc, T0, [30.0] * 30 + [50.0] * 30)
    # The hour 10:00–11:00 closes when the watermark passes 11:00 + 3 min grace.
    more, more_alerts = feed_hour(proc, T0 + timedelta(hours=1), [30.0] * 4)
    aggs += more
    alerts += more_alerts
    (hour,) = hours(aggs)
    assert hour.period_start == T0
    assert hour.mean == 40.0
    assert hour.zs_mean == 40.0
    assert hour.valid and hour.flag == "N"
    assert hour.valid_count == 60
    assert hour.limit_mg_m3 == 35.0
    raised = [a for a in alerts if a.rule is Rule.HOUR_EXCEEDANCE and a.kind is EventKind.RAISE]
    assert len(raised) == 1
    assert raised[0].severity is Severity.ALARM
    assert raised[0].value == 40.0 and raised[0].limit == 35.0
    assert raised[0].at == T0 + timedelta(hours=1)


def test_provisional_rolling_mean_raises_at_the_45th_minute() -> None:
    proc = StackProcessor("kiln-1")
    _, alerts = feed_hour(proc, T0, [30.0] * 30 + [50.0] * 15)
    # After 44 minutes the window is not ready (needs 45). After 45 minutes:
    # (30·30 + 15·50)/45 = 1650/45 = 36.67 > 35 → raised at the end of minute 10:44, i.e. 10:45.
    prov = [a for a in alerts if a.rule is Rule.PROVISIONAL_EXCEEDANCE]
    assert [a.kind for a in prov] == [EventKind.RAISE]
    assert prov[0].at == T0 + timedelta(minutes=45)
    assert abs((prov[0].value or 0) - 1650 / 45) < 1e-9


def test_calibration_hour_is_invalid_and_suppressed_not_alarmed() -> None:
    proc = StackProcessor("kiln-1")
    aggs, alerts = feed_hour(proc, T0, [80.0] * 60, flag="C")
    more, more_alerts = feed_hour(proc, T0 + timedelta(hours=1), [20.0] * 4)
    (hour,) = hours(aggs + more)
    assert not hour.valid
    assert hour.dominant_invalid_flag == "C"
    everything = alerts + more_alerts
    assert not [a for a in everything if a.kind is EventKind.RAISE]
    suppressed = [a for a in everything if a.kind is EventKind.SUPPRESSED]
    assert any(a.rule is Rule.HOUR_INCOMPLETE for a in suppressed)


def test_44_valid_minutes_make_an_invalid_hour() -> None:
    proc = StackProcessor("kiln-1")
    # Only 44 minutes arrive (HJ 75 needs 45): the hour is invalid, never an exceedance.
    aggs, alerts = feed_hour(proc, T0, [90.0] * 44)
    more, more_alerts = feed_hour(proc, T0 + timedelta(hours=1), [20.0] * 4)
    (hour,) = hours(aggs + more)
    assert not hour.valid and hour.valid_count == 44
    assert not [a for a in alerts + more_alerts if a.rule is Rule.HOUR_EXCEEDANCE]


def test_idle_stack_closes_its_hour_and_goes_offline_on_the_timer() -> None:
    proc = StackProcessor("kiln-1")
    feed_hour(proc, T0, [20.0] * 60)
    last_arrival = T0 + timedelta(minutes=59, seconds=60)  # minute 10:59 arrived at 11:00
    # Nothing more arrives. A timer 15 minutes later closes the hour (idle watermark 10:59 +
    # 15 min ≥ 11:00 + 3 min grace) and reports offline at exactly the last frame's event time
    # (11:00) + the default timeout 10 × 1 min = 11:10.
    out = proc.tick(last_arrival + timedelta(minutes=15), LIMITS)
    (hour,) = hours(out.aggregates)
    assert hour.mean == 20.0 and hour.valid
    offline = [a for a in out.alerts if a.rule is Rule.OFFLINE]
    assert [a.kind for a in offline] == [EventKind.RAISE]
    assert offline[0].at == T0 + timedelta(hours=1, minutes=10)


def test_state_round_trip_mid_hour_gives_identical_results() -> None:
    values = [30.0] * 30 + [50.0] * 30
    straight = StackProcessor("kiln-1")
    a1, l1 = feed_hour(straight, T0, values)
    a2, l2 = feed_hour(straight, T0 + timedelta(hours=1), [30.0] * 4)

    first = StackProcessor("kiln-1")
    b1, m1 = feed_hour(first, T0, values[:25])
    restored = StackProcessor.from_state(first.to_state(), ProcessorConfig())
    b2, m2 = feed_hour(restored, T0 + timedelta(minutes=25), values[25:])
    b3, m3 = feed_hour(restored, T0 + timedelta(hours=1), [30.0] * 4)
    assert [a.model_dump() for a in a1 + a2] == [a.model_dump() for a in b1 + b2 + b3]
    assert [a.model_dump() for a in l1 + l2] == [a.model_dump() for a in m1 + m2 + m3]


def test_duplicate_minutes_are_idempotent() -> None:
    proc = StackProcessor("kiln-1")
    values = [30.0] * 30 + [50.0] * 30
    aggs, _ = feed_hour(proc, T0, values)
    again, _ = feed_hour(proc, T0, values)  # a re-send of the whole hour
    more, _ = feed_hour(proc, T0 + timedelta(hours=1), [30.0] * 4)
    (hour,) = hours(aggs + again + more)
    assert hour.mean == 40.0 and hour.valid_count == 60 and hour.revision == 0


def test_invalid_logger_minutes_say_why() -> None:
    proc = StackProcessor("kiln-1")
    out = proc.on_reading(minute(T0, 12.0, flag="C"), LIMITS)
    (so2,) = [a for a in out.aggregates if a.factor == SO2 and a.period == "minute"]
    assert not so2.valid
    assert so2.invalid_reason is not None and "C" in so2.invalid_reason


def test_an_hour_closing_after_midnight_is_judged_by_its_own_days_limits() -> None:
    # Hour 23:00–24:00 on 2 Nov closes at 00:03 on 3 Nov. From 3 Nov the limit becomes 30, but
    # the hour belongs to 2 Nov, when 35 applied: a mean of 33 is no exceedance.
    stricter = StackLimits(
        ref_o2=10.0,
        by_factor={SO2: (Limit(limit_mg_m3=30.0, kind=LimitKind.ULTRA_LOW, ref_o2=10.0),)},
    )
    nov2 = T0.date()

    def limits_for(day: object) -> StackLimits:
        return LIMITS if day == nov2 else stricter

    proc = StackProcessor("kiln-1")
    late = T0.replace(hour=23)
    alerts = []
    aggs = []
    for i in range(64):
        out = proc.on_reading(minute(late + timedelta(minutes=i), 33.0), limits_for)
        alerts += out.alerts
        aggs += out.aggregates
    (hour,) = hours(aggs)
    assert hour.period_start == late and hour.mean == 33.0 and hour.limit_mg_m3 == 35.0
    assert not [a for a in alerts if a.rule is Rule.HOUR_EXCEEDANCE]
