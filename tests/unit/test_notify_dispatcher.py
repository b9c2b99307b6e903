"""The dispatcher shell: parsing records, handing due notifications to the outbox, the old
state file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sinks.outbox import OutboxEntry
from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import Notification, NotificationKind, NotifyConfig, NotifyScheduler
from stackwatch.registry import StackInfo, StackRegistry
from streams.alert_dispatcher import AlertDispatcher, FileStateStore, load_scheduler

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
CONFIG = NotifyConfig.model_validate(
    {
        "defaults": {"group_wait": "30s"},
        "recipients": [{"name": "d", "channels": [{"type": "email", "address": "d@x.cn"}]}],
        "groups": [{"name": "g", "members": ["d"]}],
        "routes": [{"name": "handan", "match": {"cities": ["邯郸"]}, "group": "g"}],
    }
)
REGISTRY = StackRegistry(
    stacks=[
        StackInfo(stack_id="hd-01", mn="MN1", plant="某钢铁", city="邯郸", sector="steel",
                  process="sinter")
    ]
)


def raise_event(stack_id: str = "hd-01") -> bytes:
    return AlertEvent(
        alert_id=f"{stack_id}-a",
        seq=1,
        kind=EventKind.RAISE,
        at=T0,
        stack_id=stack_id,
        factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE,
        severity=Severity.ALARM,
        state=AlertState.ACTIVE,
        title_zh="小时均值超标",
        title_en="hourly mean exceedance",
        first_seen=T0,
        last_seen=T0,
        count=1,
    ).model_dump_json().encode()


class Outbox:
    """The outbox's commit, in memory: the notifications written to it, in order."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.state: dict[str, Any] | None = None

    async def commit(self, entries: Sequence[OutboxEntry], state: dict[str, Any]) -> None:
        ids = {e.message_id: e.message for e in entries}  # one row per destination
        self.sent.extend(Notification.model_validate(m) for m in ids.values())
        self.state = state


async def test_registry_city_drives_routing_and_timer_sends() -> None:
    now = [T0]
    sink = Outbox()
    d = AlertDispatcher(NotifyScheduler(CONFIG), sink, registry=REGISTRY, clock=lambda: now[0])
    assert d.on_payload(raise_event("hd-01")) is True
    assert d.on_payload(raise_event("unknown-stack")) is True  # no city → no route
    assert await d.on_tick() == []  # group wait not over
    now[0] = T0 + timedelta(seconds=30)
    due = await d.on_tick()
    assert [n.kind for n in due] == [NotificationKind.FIRING]
    assert [a.stack.plant for a in sink.sent[0].alerts] == ["某钢铁"]


async def test_bad_records_are_counted_not_raised() -> None:
    d = AlertDispatcher(NotifyScheduler(CONFIG), Outbox())
    assert d.on_payload(None) is False
    assert d.on_payload(b"\xff\xfe") is False
    assert d.on_payload(b'{"alert_id": "x"}') is False
    assert d.rejected == 3


async def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state" / "notify.json")
    assert load_scheduler(CONFIG, store).group_keys() == []  # no file yet
    d = AlertDispatcher(NotifyScheduler(CONFIG), Outbox(), registry=REGISTRY, clock=lambda: T0)
    d.on_payload(raise_event())
    # the file as dispatchers before the outbox left it; read once at the first outbox start
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps(d.scheduler.to_state()), encoding="utf-8")
    restored = load_scheduler(CONFIG, store)
    assert restored.tracked_alerts() == {"hd-01-a"}


def test_corrupt_state_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "notify.json"
    path.write_text('{"groups": 5}', encoding="utf-8")
    scheduler = load_scheduler(CONFIG, FileStateStore(path))
    assert scheduler.group_keys() == []
    assert not path.exists()
    assert (tmp_path / "notify.json.corrupt").read_text(encoding="utf-8") == '{"groups": 5}'
