"""Grouping, group wait, repeat interval, acknowledgement, dedup and escalation timing.

Explicit clock: every `tick(now)` passes an aware datetime; due times are computed by hand in
the comments from the configured durations (group_wait 30 s, group_interval 5 min, repeat 4 h,
escalation 30 min then 1 h).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import (
    Notification,
    NotificationKind,
    NotifyConfig,
    NotifyScheduler,
    StackMeta,
)

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)

CONFIG = NotifyConfig.model_validate(
    {
        "defaults": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"},
        "recipients": [
            {"name": "duty", "channels": [{"type": "email", "address": "duty@example.cn"}]},
            {"name": "sup", "channels": [{"type": "email", "address": "sup@example.cn"}]},
            {"name": "prov", "channels": [{"type": "email", "address": "prov@example.cn"}]},
        ],
        "groups": [
            {"name": "L0", "members": ["duty"]},
            {"name": "L1", "members": ["sup"]},
            {"name": "L2", "members": ["prov"]},
        ],
        "routes": [
            {
                "name": "all",
                "group": "L0",
                "group_by": ["stack_id"],
                "escalation": [{"after": "30m", "group": "L1"}, {"after": "1h", "group": "L2"}],
            }
        ],
    }
)
META = StackMeta(stack_id="S1", plant="Plant", city="邯郸", sector="steel")


def ev(
    alert_id: str = "A",
    seq: int = 1,
    kind: EventKind = EventKind.RAISE,
    *,
    severity: Severity = Severity.ALARM,
    rule: Rule = Rule.HOUR_EXCEEDANCE,
    stack_id: str = "S1",
    acknowledged: bool = False,
    cleared: bool = False,
    at: datetime = T0,
) -> AlertEvent:
    return AlertEvent(
        alert_id=alert_id,
        seq=seq,
        kind=kind,
        at=at,
        stack_id=stack_id,
        factor="a21026",
        rule=rule,
        severity=severity,
        state=AlertState.CLEARED if cleared else AlertState.ACTIVE,
        title_zh="小时均值超标",
        title_en="hourly mean exceedance",
        first_seen=T0,
        last_seen=at,
        cleared_at=at if cleared else None,
        count=seq,
        value=62.0,
        limit=35.0,
        acknowledged=acknowledged,
        ack_by="张三" if acknowledged else None,
        ack_reason="desulphuriser pump restarted" if acknowledged else None,
        ack_at=at if acknowledged else None,
    )


def ids(n: Notification) -> list[str]:
    return [a.event.alert_id for a in n.alerts]


def test_group_wait_then_one_message_for_alerts_raised_together() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.handle(ev("B", rule=Rule.HOUR_WARNING, severity=Severity.WARNING), META, T0 + 10 * S)
    # group created at T0, group_wait 30 s → first flush due at T0+30 s.
    assert s.tick(T0 + 29 * S) == []
    [n] = s.tick(T0 + 30 * S)
    assert n.kind is NotificationKind.FIRING
    assert n.groups == ["L0"]
    assert sorted(ids(n)) == ["A", "B"]
    assert s.tick(T0 + 31 * S) == []  # nothing changed since


def test_group_interval_spaces_follow_up_messages() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    assert len(s.tick(T0 + 30 * S)) == 1
    s.handle(ev("C", rule=Rule.OFFLINE), META, T0 + 1 * M)
    # previous flush T0+30 s, group_interval 5 min → next flush no sooner than T0+5 min 30 s.
    assert s.tick(T0 + 5 * M + 29 * S) == []
    [n] = s.tick(T0 + 5 * M + 30 * S)
    assert n.kind is NotificationKind.FIRING
    assert sorted(ids(n)) == ["A", "C"]


def test_value_updates_are_not_changes_but_ride_along() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A", severity=Severity.WARNING), META, T0)
    s.tick(T0 + 30 * S)
    assert s.handle(ev("A", 2, EventKind.UPDATE, severity=Severity.WARNING), META, T0 + M)
    assert s.tick(T0 + 10 * M) == []
    # repeat due at last message T0+30 s + 4 h.
    [n] = s.tick(T0 + 4 * H + 30 * S)
    assert n.kind is NotificationKind.REPEAT
    assert n.alerts[0].event.seq == 2


def test_repeat_interval() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A", severity=Severity.WARNING), META, T0)
    s.tick(T0 + 30 * S)
    # last message at T0+30 s, repeat_interval 4 h → due T0+4 h 30 s, then T0+8 h 30 s.
    assert s.tick(T0 + 4 * H + 29 * S) == []
    [r1] = s.tick(T0 + 4 * H + 30 * S)
    assert r1.kind is NotificationKind.REPEAT and ids(r1) == ["A"]
    assert s.tick(T0 + 8 * H + 29 * S) == []
    [r2] = s.tick(T0 + 8 * H + 30 * S)
    assert r2.kind is NotificationKind.REPEAT


def test_acknowledged_alerts_stop_repeating_but_others_in_the_group_repeat() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A", severity=Severity.WARNING), META, T0)
    s.handle(ev("B", rule=Rule.ZERO, severity=Severity.WARNING), META, T0)
    s.tick(T0 + 30 * S)
    s.handle(ev("A", 2, EventKind.ACK, severity=Severity.WARNING, acknowledged=True), META, T0 + H)
    [r] = s.tick(T0 + 4 * H + 30 * S)
    assert ids(r) == ["B"]
    s.handle(
        ev("B", 2, EventKind.ACK, rule=Rule.ZERO, severity=Severity.WARNING, acknowledged=True),
        META,
        T0 + 5 * H,
    )
    assert s.tick(T0 + 8 * H + 30 * S) == []
    assert s.tick(T0 + 12 * H + 30 * S) == []


def test_duplicate_and_stale_events_are_ignored() -> None:
    s = NotifyScheduler(CONFIG)
    assert s.handle(ev("A", 1), META, T0) is True
    assert s.handle(ev("A", 1), META, T0 + S) is False  # redelivery
    assert s.handle(ev("A", 2, EventKind.UPDATE), META, T0 + 2 * S) is True
    assert s.handle(ev("A", 1), META, T0 + 3 * S) is False  # stale replay
    [n] = s.tick(T0 + 30 * S)
    assert ids(n) == ["A"]  # the alert appears once
    assert n.alerts[0].event.seq == 2


def test_suppressed_events_notify_nobody() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("X", kind=EventKind.SUPPRESSED), META, T0)
    assert s.tick(T0 + H) == []
    assert s.group_keys() == []


def test_escalation_timing_and_repeat_to_every_level_reached() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    [first] = s.tick(T0 + 30 * S)
    assert first.level == 0
    # first notified T0+30 s; step 1 after 30 min → T0+30 min 30 s.
    assert s.tick(T0 + 30 * M + 29 * S) == []
    [e1] = s.tick(T0 + 30 * M + 30 * S)
    assert (e1.kind, e1.level, e1.groups) == (NotificationKind.ESCALATION, 1, ["L1"])
    # step 2 counts 1 h from level 1 (T0+30 min 30 s) → T0+1 h 30 min 30 s.
    assert s.tick(T0 + 90 * M + 29 * S) == []
    [e2] = s.tick(T0 + 90 * M + 30 * S)
    assert (e2.kind, e2.level, e2.groups) == (NotificationKind.ESCALATION, 2, ["L2"])
    assert s.tick(T0 + 3 * H) == []  # no more steps
    # repeat due T0+30 s + 4 h, to all groups reached.
    [r] = s.tick(T0 + 4 * H + 30 * S)
    assert (r.kind, r.groups) == (NotificationKind.REPEAT, ["L0", "L1", "L2"])


def test_overdue_steps_are_taken_together_after_downtime() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.tick(T0 + 30 * S)
    # both steps (due T0+30m30s and T0+1h30m30s) are overdue at T0+3 h.
    notes = s.tick(T0 + 3 * H)
    assert [(n.kind, n.level, n.groups) for n in notes] == [
        (NotificationKind.ESCALATION, 1, ["L1"]),
        (NotificationKind.ESCALATION, 2, ["L2"]),
    ]


def test_acknowledgement_stops_escalation_and_warnings_never_escalate() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.handle(ev("W", rule=Rule.ZERO, severity=Severity.WARNING), META, T0)
    s.tick(T0 + 30 * S)
    s.handle(ev("A", 2, EventKind.ACK, acknowledged=True), META, T0 + 10 * M)
    assert s.tick(T0 + 31 * M) == []
    assert all(n.kind is not NotificationKind.ESCALATION for n in s.tick(T0 + 3 * H))


def test_severity_rise_resets_ack_and_restarts_escalation_clock() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.tick(T0 + 30 * S)
    s.handle(ev("A", 2, EventKind.ACK, acknowledged=True), META, T0 + 10 * M)
    s.handle(ev("A", 3, EventKind.ESCALATE, severity=Severity.CRITICAL), META, T0 + 20 * M)
    # change at T0+20 min; previous flush T0+30 s + 5 min interval = T0+5 min 30 s → due now.
    [n] = s.tick(T0 + 20 * M)
    assert n.kind is NotificationKind.FIRING
    assert n.alerts[0].event.severity is Severity.CRITICAL
    # the escalation clock restarted at T0+20 min → step 1 due T0+50 min, not T0+30 min 30 s.
    assert s.tick(T0 + 49 * M) == []
    [e1] = s.tick(T0 + 50 * M)
    assert (e1.kind, e1.groups) == (NotificationKind.ESCALATION, ["L1"])


def test_clear_sends_resolved_once_and_closes_the_group() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A", severity=Severity.WARNING), META, T0)
    s.tick(T0 + 30 * S)
    s.handle(ev("A", 2, EventKind.CLEAR, severity=Severity.WARNING, cleared=True), META, T0 + H)
    [n] = s.tick(T0 + H)
    assert n.kind is NotificationKind.RESOLVED
    assert n.alerts[0].resolved
    assert s.group_keys() == []
    assert s.tick(T0 + 5 * H) == []


def test_alert_cleared_before_group_wait_is_never_sent() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.handle(ev("A", 2, EventKind.CLEAR, cleared=True), META, T0 + 10 * S)
    assert s.tick(T0 + H) == []
    assert s.group_keys() == []


def test_dedup_marks_are_forgotten_after_retention() -> None:
    s = NotifyScheduler(CONFIG, dedup_retention=timedelta(days=1))
    s.handle(ev("A"), META, T0)
    s.handle(ev("A", 2, EventKind.CLEAR, cleared=True), META, T0 + M)
    s.tick(T0 + 2 * M)
    assert s.handle(ev("A", 2, EventKind.CLEAR, cleared=True), META, T0 + H) is False
    s.tick(T0 + 2 * M + timedelta(days=1))  # cleared at T0+1 min: 1 day + 1 min ago, pruned
    # the same seq is no longer recognised (memory is bounded), and it sends nothing.
    assert s.handle(ev("A", 2, EventKind.CLEAR, cleared=True), META, T0 + timedelta(days=2))
    assert s.tick(T0 + timedelta(days=2)) == []


def test_state_round_trip_keeps_timers_and_dedup() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    s.tick(T0 + 30 * S)  # notified at T0+30 s
    state = json.loads(json.dumps(s.to_state()))  # through real JSON
    r = NotifyScheduler.from_state(CONFIG, state)
    assert r.handle(ev("A", 1), META, T0 + M) is False  # dedup mark survived
    assert r.tick(T0 + 10 * M) == []  # the first message is not sent again
    # escalation still due at T0+30 s + 30 min
    assert r.tick(T0 + 30 * M + 29 * S) == []
    [e1] = r.tick(T0 + 30 * M + 30 * S)
    assert (e1.kind, e1.groups) == (NotificationKind.ESCALATION, ["L1"])


def test_state_of_a_removed_route_is_dropped() -> None:
    s = NotifyScheduler(CONFIG)
    s.handle(ev("A"), META, T0)
    other = CONFIG.model_copy(update={"routes": []})
    r = NotifyScheduler.from_state(other, s.to_state())
    assert r.group_keys() == []
    assert r.tick(T0 + H) == []


def test_malformed_state_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        NotifyScheduler.from_state(CONFIG, {"groups": [{"route": "all"}]})
