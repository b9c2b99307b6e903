"""Pure rules of the outbox and the ack API: back-off, heartbeat slots, natural keys, the
token bucket (all on explicit clocks, hand-computed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sinks.ack_api import hash_token
from sinks.outbox import Backoff, HeartbeatPlan, entries_for, heartbeat_entries, heartbeat_slot
from sinks.rate_limit import RateLimiter
from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import AlertItem, Notification, NotificationKind, NotifyConfig, StackMeta
from stackwatch.settings import NotifySettings

T = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
CONFIG = NotifyConfig.model_validate({
    "recipients": [
        {"name": "王工", "channels": [{"type": "email", "address": "wang@example.cn"},
                                     {"type": "webhook", "url": "https://h.example/a?key=1"}]},
        {"name": "robot", "channels": [{"type": "webhook", "url": "https://h.example/a?key=2"}]},
    ],
    "groups": [{"name": "g", "members": ["王工", "robot"]}],
    "routes": [{"name": "r", "group": "g"}],
})


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff(initial_s=10, factor=2, max_s=120)
    assert [b.delay(n).total_seconds() for n in range(1, 7)] == [10, 20, 40, 80, 120, 120]
    with pytest.raises(ValueError):
        Backoff(initial_s=0)


def test_a_first_wait_longer_than_the_cap_is_refused_in_the_settings() -> None:
    # refused when the settings load, not later when the dispatcher builds its back-off
    with pytest.raises(ValidationError, match="retry_initial_s"):
        NotifySettings(retry_initial_s=600, retry_max_s=300)
    assert NotifySettings(retry_initial_s=300, retry_max_s=300).retry_max_s == 300


def test_heartbeat_slots_are_epoch_aligned() -> None:
    hour = timedelta(hours=1)
    assert heartbeat_slot(datetime(2026, 11, 22, 3, 59, 59, tzinfo=UTC), hour) == datetime(
        2026, 11, 22, 3, 0, tzinfo=UTC)
    # 15-minute slots: 03:44:59 is in the 03:30 slot
    assert heartbeat_slot(datetime(2026, 11, 22, 3, 44, 59, tzinfo=UTC),
                          timedelta(minutes=15)) == datetime(2026, 11, 22, 3, 30, tzinfo=UTC)


def test_heartbeat_rows_expire_when_the_next_is_due() -> None:
    slot = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    rows = heartbeat_entries(CONFIG, HeartbeatPlan("g", timedelta(hours=1)), slot, slot)
    assert [r.destination for r in rows] == [
        "王工 <wang@example.cn>", "王工 <json https://h.example/a>", "robot <json https://h.example/a>"]
    assert {r.expires_at for r in rows} == {datetime(2026, 11, 22, 4, 0, tzinfo=UTC)}
    assert len({r.message_id for r in rows}) == 1
    # two robots with the same target but different keys are two channels (two ids)
    assert rows[1].channel_id != rows[2].channel_id


def notification(seq: int) -> Notification:
    event = AlertEvent(
        alert_id="a-1", seq=seq, kind=EventKind.RAISE, at=T, stack_id="s", factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE, severity=Severity.ALARM, state=AlertState.ACTIVE,
        title_zh="超标", title_en="exceedance", first_seen=T, last_seen=T, count=1,
    )
    item = AlertItem(event=event, stack=StackMeta(stack_id="s"))
    return Notification(kind=NotificationKind.FIRING, route="r", group_key="k", groups=["g"],
                        level=0, at=T, alerts=[item])


def test_the_same_decision_has_the_same_natural_key() -> None:
    a = entries_for(CONFIG, notification(1), T, timedelta(hours=24))
    again = entries_for(CONFIG, notification(1), T + timedelta(minutes=1), timedelta(hours=24))
    other = entries_for(CONFIG, notification(2), T, timedelta(hours=24))
    assert [e.message_id for e in a] == [e.message_id for e in again]
    assert a[0].message_id != other[0].message_id
    assert (a[0].alert_ids, a[0].event_seqs, a[0].expires_at) == (
        ["a-1"], [1], T + timedelta(hours=24))
    assert all("key=" not in e.model_dump_json() for e in a)  # no robot secret in a row


def test_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=2, clock=lambda: now[0])  # one per 10 s
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 10.0]
    assert limiter.check("b") == 0.0  # another key, another bucket
    now[0] = 4.0
    assert limiter.check("a") == pytest.approx(6.0)
    now[0] = 10.0
    assert limiter.check("a") == 0.0
    assert limiter.retry_after(0.2) == "1" and limiter.retry_after(6.0) == "6"


def test_token_hash_is_sha256() -> None:
    # sha256("abc"), FIPS 180-2 appendix B.1
    assert hash_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
