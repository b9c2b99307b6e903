"""Alert lifecycle: raise/update/clear with hysteresis, suppression, ack, idempotency, state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stackwatch.alerts import (
    AlertBook,
    AlertNotFoundError,
    AlertPolicy,
    Condition,
    alert_id_for,
    hour_conditions,
    provisional_condition,
)
from stackwatch.compliance import (
    HourValue,
    Limit,
    LimitKind,
    RollingSnapshot,
    Severity,
    judge_hour,
)
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
ULE = Limit(limit_mg_m3=35, kind=LimitKind.ULTRA_LOW, ref_o2=10, row_id="C1")
STD = Limit(limit_mg_m3=100, kind=LimitKind.STANDARD, ref_o2=10, row_id="C4")


def hour(
    i: int, mean: float, *, valid: bool = True, flag: str = "N", minutes: int = 60
) -> HourValue:
    return HourValue(
        stack_id="kiln-1",
        factor="a21026",
        start=T0 + i * H,
        mean_converted=mean,
        mean_measured=mean * 0.8,
        valid=valid,
        valid_minutes=minutes,
        flag=flag,
        ref_o2=10,
        o2_mean=12.0,
    )


def feed(book: AlertBook, h: HourValue, limits: list[Limit] | None = None) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for cond in hour_conditions(h, judge_hour(h, limits or [ULE, STD])):
        events += book.observe(cond)
    return events


def test_three_exceedances_then_two_compliant_hours_clear_on_the_second() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    e1 = feed(book, hour(0, 40.0))
    e2 = feed(book, hour(1, 45.0))
    e3 = feed(book, hour(2, 38.0))
    assert [e.kind for e in e1 + e2 + e3] == [EventKind.RAISE, EventKind.UPDATE, EventKind.UPDATE]
    alert_id = e1[0].alert_id
    assert {e.alert_id for e in e1 + e2 + e3} == {alert_id}
    assert [e.seq for e in e1 + e2 + e3] == [1, 2, 3]
    last = e3[0]
    assert last.count == 3
    assert last.peak_value == 45.0  # max(40, 45, 38)
    assert last.value == 38.0
    assert last.first_seen == T0 + H  # event time of hour 00:00–01:00 is its end
    assert last.last_seen == T0 + 3 * H
    assert last.period_start == T0 and last.period_end == T0 + 3 * H
    assert last.evidence["mean_converted"] == 38.0
    assert last.evidence["valid_minutes"] == 60
    assert last.evidence["limit"] == 35
    # 40, 45, 38 > the ultra-low 35 but ≤ the standard 100: above the ultra-low target, which
    # is not 超标 (that word is for the legal standard).
    assert last.title_zh == "小时均值超过超低排放限值"
    assert last.evidence["term_zh"] == "超过超低排放限值"
    # Hour 03 compliant: observed false at 04:00, hold 1 h not yet elapsed → nothing.
    assert feed(book, hour(3, 20.0)) == []
    record = book.get("kiln-1", "a21026", Rule.HOUR_EXCEEDANCE)
    assert record is not None and record.state is AlertState.RECOVERING
    # Hour 04 compliant: observed at 05:00 = 04:00 + 1 h → clear.
    e5 = feed(book, hour(4, 20.0))
    assert len(e5) == 1
    clear = e5[0]
    assert (clear.kind, clear.alert_id, clear.seq) == (EventKind.CLEAR, alert_id, 4)
    assert clear.cleared_at == T0 + 5 * H
    assert clear.state is AlertState.CLEARED
    assert book.open_alerts() == []


def test_an_hour_above_the_standard_escalates_the_alert_to_critical_chaobiao() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    raised = feed(book, hour(0, 40.0))[0]  # 35 < 40 ≤ 100: alarm, above the ultra-low target
    assert (raised.severity, raised.title_zh) == (Severity.ALARM, "小时均值超过超低排放限值")
    escalated = feed(book, hour(1, 120.0))[0]  # 120 > 100: 超标
    assert escalated.kind is EventKind.ESCALATE and escalated.alert_id == raised.alert_id
    assert (escalated.severity, escalated.title_zh) == (Severity.CRITICAL, "小时均值超标")
    assert escalated.limit == 100 and escalated.evidence["term_zh"] == "超标"


def test_retrigger_during_hold_keeps_the_same_alert() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    raised = feed(book, hour(0, 40.0))[0]
    assert feed(book, hour(1, 20.0)) == []
    again = feed(book, hour(2, 41.0))
    assert [(e.kind, e.alert_id, e.count) for e in again] == [
        (EventKind.UPDATE, raised.alert_id, 2)
    ]
    # The hold restarts: compliant at 04:00 → nothing; at 05:00 → clear.
    assert feed(book, hour(3, 20.0)) == []
    assert [e.kind for e in feed(book, hour(4, 20.0))] == [EventKind.CLEAR]


def test_warning_has_its_own_alert_and_critical_escalates_the_exceedance() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    w = feed(book, hour(0, 30.0))  # 30 > 28 = 0.8 × 35
    assert [(e.rule, e.kind, e.severity) for e in w] == [
        (Rule.HOUR_WARNING, EventKind.RAISE, Severity.WARNING)
    ]
    a = feed(book, hour(1, 50.0))  # 50 > 35: alarm; the warning condition is false now
    assert [(e.rule, e.kind, e.severity) for e in a] == [
        (Rule.HOUR_EXCEEDANCE, EventKind.RAISE, Severity.ALARM)
    ]
    book.ack(a[0].alert_id, "inspector", "seen", T0 + 2 * H)
    # Hour 02 (observed 03:00): 120 > 100 → critical, same alert; and the warning, false
    # since 02:00, has now been false for the 1 h hold → it clears at 03:00.
    c = feed(book, hour(2, 120.0))
    assert [(e.rule, e.kind, e.severity, e.alert_id) for e in c] == [
        (Rule.HOUR_EXCEEDANCE, EventKind.ESCALATE, Severity.CRITICAL, a[0].alert_id),
        (Rule.HOUR_WARNING, EventKind.CLEAR, Severity.WARNING, w[0].alert_id),
    ]
    assert c[1].cleared_at == T0 + 3 * H
    assert c[0].acknowledged is False  # a new severity needs a new acknowledgement
    # Severity never falls within an episode.
    d = feed(book, hour(3, 50.0))
    assert [(e.kind, e.severity) for e in d] == [(EventKind.UPDATE, Severity.CRITICAL)]
    assert book.get("kiln-1", "a21026", Rule.HOUR_WARNING) is None


def test_warning_boundary_through_the_book() -> None:
    book = AlertBook()
    assert feed(book, hour(0, 28.0)) == []  # 28.0 is not > 28.0
    events = feed(book, hour(1, 28.1))
    assert [(e.rule, e.kind) for e in events] == [(Rule.HOUR_WARNING, EventKind.RAISE)]


def test_invalid_hour_never_alarms() -> None:
    book = AlertBook()
    events = feed(book, hour(0, 500.0, valid=False, flag="D", minutes=30))
    assert [(e.rule, e.kind) for e in events] == [(Rule.HOUR_INCOMPLETE, EventKind.RAISE)]
    assert events[0].value == 30.0
    assert book.get("kiln-1", "a21026", Rule.HOUR_EXCEEDANCE) is None


def test_invalid_hour_is_no_evidence_of_recovery() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    feed(book, hour(0, 40.0))
    feed(book, hour(1, 20.0))  # false since 02:00
    feed(book, hour(2, 999.0, valid=False, flag="D", minutes=10))  # no exceedance observation
    record = book.get("kiln-1", "a21026", Rule.HOUR_EXCEEDANCE)
    assert record is not None and record.state is AlertState.RECOVERING
    assert record.count == 1


def test_calibration_hour_is_suppressed_and_recorded() -> None:
    book = AlertBook()
    events = feed(book, hour(0, 400.0, valid=False, flag="C", minutes=20))
    assert [(e.rule, e.kind, e.state) for e in events] == [
        (Rule.HOUR_INCOMPLETE, EventKind.SUPPRESSED, AlertState.SUPPRESSED)
    ]
    assert events[0].evidence["suppressed_by_flag"] == "C"
    assert events[0].evidence["mean_converted"] == 400.0
    assert book.open_alerts() == []
    assert feed(book, hour(0, 400.0, valid=False, flag="C", minutes=20)) == []  # idempotent


def test_suppression_of_a_detector_condition_flagged_maintenance() -> None:
    book = AlertBook()
    cond = Condition(
        stack_id="s", factor="a34013", rule=Rule.FLATLINE, active=True, at=T0, value=5.0, flag="M"
    )
    events = book.observe(cond)
    assert [e.kind for e in events] == [EventKind.SUPPRESSED]
    assert book.open_alerts() == []


def test_duplicate_hour_is_idempotent() -> None:
    book = AlertBook()
    first = feed(book, hour(0, 40.0))
    assert feed(book, hour(0, 40.0)) == []
    second = feed(book, hour(1, 41.0))
    assert [(e.kind, e.seq, e.count) for e in second] == [(EventKind.UPDATE, 2, 2)]
    assert feed(book, hour(0, 40.0)) == []  # a late replay of an older hour: stale
    assert first[0].alert_id == second[0].alert_id


def test_revision_of_the_same_hour_updates_without_counting() -> None:
    book = AlertBook()
    feed(book, hour(0, 40.0))
    revised = feed(book, hour(0, 60.0))  # the hour recomputed after late minutes
    assert [(e.kind, e.count, e.peak_value, e.seq) for e in revised] == [
        (EventKind.UPDATE, 1, 60.0, 2)
    ]


def test_alert_ids_are_deterministic_across_replays() -> None:
    runs = []
    for _ in range(2):
        book = AlertBook()
        runs.append([e for i, m in enumerate([40.0, 45.0]) for e in feed(book, hour(i, m))])
    assert runs[0] == runs[1]
    assert runs[0][0].alert_id == alert_id_for("kiln-1", "a21026", Rule.HOUR_EXCEEDANCE, T0 + H)
    other = alert_id_for("kiln-1", "a21026", Rule.HOUR_EXCEEDANCE, T0 + 2 * H)
    assert other != runs[0][0].alert_id


def test_state_round_trip_mid_episode_behaves_identically() -> None:
    book = AlertBook(AlertPolicy(hold_time=H))
    feed(book, hour(0, 40.0))
    feed(book, hour(1, 45.0))
    book.ack(book.open_alerts()[0].alert_id, "operator", "on it", T0 + 2 * H)
    restored = AlertBook.from_state(json.loads(json.dumps(book.to_state())), book.policy)
    rest = [hour(1, 45.0), hour(2, 38.0), hour(3, 20.0), hour(4, 20.0)]
    original_events = [e for h in rest for e in feed(book, h)]
    restored_events = [e for h in rest for e in feed(restored, h)]
    assert original_events == restored_events
    # The duplicate hour 01 produced nothing; 02 → update (seq 4 after ack = 3), 04 → clear.
    assert [(e.kind, e.seq) for e in restored_events] == [
        (EventKind.UPDATE, 4),
        (EventKind.CLEAR, 5),
    ]
    assert restored_events[0].acknowledged is True


def test_from_state_rejects_garbage_clearly() -> None:
    with pytest.raises(ValueError):
        AlertBook.from_state({"open": [{"alert_id": 1}]})


def test_ack_marks_without_clearing_and_is_idempotent() -> None:
    book = AlertBook()
    raised = feed(book, hour(0, 40.0))[0]
    at = T0 + H + timedelta(minutes=5)
    events = book.ack(raised.alert_id, "zhang.san", "plant informed", at)
    assert len(events) == 1
    ack = events[0]
    assert (ack.kind, ack.seq, ack.acknowledged, ack.ack_by, ack.ack_at) == (
        EventKind.ACK,
        2,
        True,
        "zhang.san",
        at,
    )
    assert ack.state is AlertState.ACTIVE
    assert book.ack(raised.alert_id, "zhang.san", "again", at) == []
    with pytest.raises(AlertNotFoundError):
        book.ack("no-such-alert", "x", "y", at)


def test_tick_clears_a_detector_alert_after_its_hold_by_event_time() -> None:
    policy = AlertPolicy(hold_overrides={Rule.OFFLINE: timedelta(minutes=10)})
    book = AlertBook(policy)
    down = Condition(stack_id="s", rule=Rule.OFFLINE, active=True, at=T0, value=1200.0)
    up = Condition(stack_id="s", rule=Rule.OFFLINE, active=False, at=T0 + timedelta(minutes=30))
    assert [e.kind for e in book.observe(down)] == [EventKind.RAISE]
    assert book.observe(up) == []
    assert book.tick(T0 + timedelta(minutes=39, seconds=59)) == []
    events = book.tick(T0 + timedelta(minutes=55))  # a late tick: cleared_at is still 30 + 10
    assert [(e.kind, e.cleared_at) for e in events] == [
        (EventKind.CLEAR, T0 + timedelta(minutes=40))
    ]


def test_negative_peak_is_the_lowest_value() -> None:
    book = AlertBook()
    for i, v in enumerate([-1.0, -3.0, -2.0]):
        events = book.observe(
            Condition(
                stack_id="s",
                factor="a21026",
                rule=Rule.NEGATIVE,
                active=True,
                at=T0 + i * timedelta(minutes=1),
                value=v,
            )
        )
    assert events[0].peak_value == -3.0


def test_provisional_condition_needs_enough_minutes() -> None:
    at = T0 + timedelta(minutes=50)
    not_ready = RollingSnapshot(at=at, mean=50.0, count=44, ready=False)
    assert provisional_condition("s", "a21026", not_ready, 35) is None
    ready = RollingSnapshot(at=at, mean=35.5, count=45, ready=True)
    cond = provisional_condition("s", "a21026", ready, 35, ref_o2=10)
    assert cond is not None and cond.active is True and cond.rule is Rule.PROVISIONAL_EXCEEDANCE
    equal = RollingSnapshot(at=at, mean=35.0, count=45, ready=True)
    cond = provisional_condition("s", "a21026", equal, 35)
    assert cond is not None and cond.active is False  # 35.0 is not > 35
