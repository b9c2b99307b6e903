"""Routing per recipient (city, sector, severity), grouping keys and delivery expansion."""

from __future__ import annotations

from datetime import UTC, datetime

from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import (
    AlertItem,
    Notification,
    NotificationKind,
    NotifyConfig,
    StackMeta,
    deliveries,
    group_key,
    match_routes,
    stack_meta,
)
from stackwatch.registry import StackInfo, StackRegistry

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

CONFIG = NotifyConfig.from_yaml(
    """
recipients:
  - name: duty
    channels:
      - {type: email, address: duty@example.cn}
      - {type: webhook, format: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=a"}
  - name: sup
    channels: [{type: email, address: sup@example.cn}]
  - name: plant
    channels: [{type: email, address: env@plant.example.cn}]
groups:
  - {name: handan, members: [duty]}
  - {name: handan-sup, members: [sup, duty]}
  - {name: plant, members: [plant]}
  - {name: catchall, members: [duty]}
routes:
  - name: plant-own
    match: {plants: [某钢铁]}
    group: plant
    continue: true
  - name: handan-alarms
    match: {cities: [邯郸], sectors: [steel, cement], min_severity: alarm}
    group: handan
    escalation: [{after: 30m, group: handan-sup}]
  - name: warnings
    match: {severities: [warning]}
    group: catchall
    group_by: [plant]
""",
    environ={},
)

STEEL = StackMeta(stack_id="hd-01", plant="某钢铁", city="邯郸", sector="steel")
CEMENT = StackMeta(stack_id="hd-02", plant="某水泥", city="邯郸", sector="cement")
POWER = StackMeta(stack_id="hd-03", plant="某电厂", city="邯郸", sector="power")
UNKNOWN = StackMeta(stack_id="mystery")


def ev(stack: StackMeta, severity: Severity, rule: Rule = Rule.HOUR_EXCEEDANCE) -> AlertEvent:
    return AlertEvent(
        alert_id=f"{stack.stack_id}-{rule.value}",
        seq=1,
        kind=EventKind.RAISE,
        at=T0,
        stack_id=stack.stack_id,
        factor="a21026",
        rule=rule,
        severity=severity,
        state=AlertState.ACTIVE,
        title_zh="t",
        title_en="t",
        first_seen=T0,
        last_seen=T0,
        count=1,
    )


def names(event: AlertEvent, stack: StackMeta) -> list[str]:
    return [r.name for r in match_routes(CONFIG, event, stack)]


def test_routing_by_city_sector_and_severity() -> None:
    # cement alarm in 邯郸 → the Handan alarm route (and stops there).
    assert names(ev(CEMENT, Severity.ALARM), CEMENT) == ["handan-alarms"]
    # critical ≥ alarm also matches min_severity alarm.
    assert names(ev(CEMENT, Severity.CRITICAL), CEMENT) == ["handan-alarms"]
    # a warning is below min_severity → falls through to the warnings route.
    assert names(ev(CEMENT, Severity.WARNING), CEMENT) == ["warnings"]
    # power is not in the sectors list: an alarm there matches nothing.
    assert names(ev(POWER, Severity.ALARM), POWER) == []


def test_continue_lets_a_later_route_match_too() -> None:
    assert names(ev(STEEL, Severity.ALARM), STEEL) == ["plant-own", "handan-alarms"]
    assert names(ev(STEEL, Severity.WARNING), STEEL) == ["plant-own", "warnings"]


def test_unregistered_stack_matches_only_unfiltered_routes() -> None:
    assert names(ev(UNKNOWN, Severity.ALARM), UNKNOWN) == []
    assert names(ev(UNKNOWN, Severity.WARNING), UNKNOWN) == ["warnings"]


def test_stack_meta_from_registry() -> None:
    registry = StackRegistry(
        stacks=[
            StackInfo(
                stack_id="hd-01", mn="MN1", name="1#烧结机头", plant="某钢铁", city="邯郸",
                sector="steel", process="sinter",
            )
        ]
    )
    meta = stack_meta(registry, "hd-01")
    assert (meta.name, meta.plant, meta.city, meta.sector) == (
        "1#烧结机头", "某钢铁", "邯郸", "steel"
    )
    assert stack_meta(registry, "other") == StackMeta(stack_id="other")


def test_group_keys() -> None:
    alarms = CONFIG.route("handan-alarms")  # default group_by: stack_id, rule
    e1 = ev(STEEL, Severity.ALARM)
    e2 = ev(STEEL, Severity.ALARM, Rule.OFFLINE)
    assert group_key(alarms, e1, STEEL) == "rule=hour_exceedance,stack_id=hd-01"
    assert group_key(alarms, e2, STEEL) == "rule=offline,stack_id=hd-01"
    warnings = CONFIG.route("warnings")  # group_by: plant → two rules of one plant share a key
    w1 = ev(STEEL, Severity.WARNING)
    w2 = ev(STEEL, Severity.WARNING, Rule.ZERO)
    assert group_key(warnings, w1, STEEL) == group_key(warnings, w2, STEEL) == "plant=某钢铁"


def test_deliveries_reach_each_recipient_channel_once() -> None:
    item = AlertItem(event=ev(STEEL, Severity.ALARM), stack=STEEL)
    note = Notification(
        kind=NotificationKind.REPEAT,
        route="handan-alarms",
        group_key="k",
        groups=["handan", "handan-sup"],  # duty is in both groups
        level=1,
        at=T0,
        alerts=[item],
    )
    got = sorted((d.recipient, d.channel_type, d.recipient_label) for d in deliveries(CONFIG, note))
    assert got == [
        ("duty", "email", "duty <duty@example.cn>"),
        ("duty", "webhook", "duty <dingtalk https://oapi.dingtalk.com/robot/send>"),
        ("sup", "email", "sup <sup@example.cn>"),
    ]
