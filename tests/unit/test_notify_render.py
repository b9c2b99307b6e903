"""Rendering: bilingual strings and numbers, HTML escaping, DingTalk/WeCom/JSON shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import AlertItem, Notification, NotificationKind, StackMeta
from stackwatch.notify.render import (
    WECOM_MAX_BYTES,
    alert_dashboard_url,
    dashboard_url,
    dingtalk_payload,
    format_number,
    json_payload,
    render_html,
    render_subject,
    render_text,
    wecom_payload,
)

GRAFANA = "http://grafana.example:3000/"
START = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # Beijing 10:00
END = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # Beijing 11:00
#: 2026-11-22T00:00Z in epoch seconds: 56 years 1970–2025 with 14 leap days = 20 454 days,
#: + 325 days (Jan 1 → Nov 22 of 2026) = 20 779 days × 86 400 = 1 795 305 600.
DAY_EPOCH = 1_795_305_600
#: The dashboard range of the SO2 hour 02:00–03:00 UTC: 6 h before (20:00 the day before) to
#: 1 h after (04:00), in epoch milliseconds.
RANGE = f"&from={(DAY_EPOCH - 4 * 3600) * 1000}&to={(DAY_EPOCH + 4 * 3600) * 1000}"
ACK_URL = "https://ack.example/ack/0b7c7c1e-0000-5000-8000-000000000001/tok.en.sig"
STACK = StackMeta(
    stack_id="hd-steel-01", name="1#烧结机头", plant="某钢铁有限公司", city="邯郸", sector="steel"
)


def so2(**overrides: object) -> AlertEvent:
    data: dict[str, object] = {
        "alert_id": "0b7c7c1e-0000-5000-8000-000000000001",
        "seq": 1,
        "kind": EventKind.RAISE,
        "at": END,
        "stack_id": "hd-steel-01",
        "factor": "a21026",
        "rule": Rule.HOUR_EXCEEDANCE,
        "severity": Severity.ALARM,
        "state": AlertState.ACTIVE,
        "title_zh": "小时均值超标",
        "title_en": "hourly mean exceedance",
        "first_seen": END,
        "last_seen": END,
        "count": 1,
        "value": 62.3,
        "peak_value": 62.3,
        "limit": 35.0,
        "ref_o2": 16.0,
        "period_start": START,
        "period_end": END,
        "evidence": {"valid_minutes": 58, "limit_row": "GB28662-ULE-SO2", "unconfirmed": None},
    }
    data.update(overrides)
    return AlertEvent.model_validate(data)


def note(*events: AlertEvent, kind: NotificationKind = NotificationKind.FIRING,
         stack: StackMeta = STACK, level: int = 0) -> Notification:
    return Notification(
        kind=kind,
        route="r",
        group_key="k",
        groups=["L1"] if level else ["L0"],
        level=level,
        at=END,
        alerts=[AlertItem(event=e, stack=stack, level=level) for e in events],
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(62.3, "62.3"), (35.0, "35"), (0.0002, "0.0002"), (-0.5, "-0.5"), (0.0, "0"),
     (1234567.0, "1.235e+06"), (None, "—"), (float("nan"), "—")],
)
def test_format_number(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_plain_text_states_everything_bilingually() -> None:
    text = render_text(note(so2()), GRAFANA)
    for expected in [
        "小时均值超标 / hourly mean exceedance",
        "告警 ALARM",
        "1#烧结机头 (hd-steel-01)",
        "某钢铁有限公司 · 邯郸 · steel",
        "二氧化硫 [a21026] / sulphur dioxide (SO2) [a21026]",
        # 62.3 / 35 = 1.78 → 178.0 % of the limit
        "62.3 mg/m³（限值 limit 35 mg/m³，178 %）",
        "16 %（折算 / converted to reference O2）",
        # 02:00–03:00 UTC = 10:00–11:00 Beijing
        "2026-11-22 10:00 – 11:00 (UTC+8)",
        "limit_row=GB28662-ULE-SO2",
        "valid_minutes=58",
        "http://grafana.example:3000/d/stackwatch-stack/stack-detail?var-stack=hd-steel-01"
        + RANGE,
        "未确认 unacknowledged",
        "stackwatch alerts ack",
    ]:
        assert expected in text, expected
    assert "unconfirmed" not in text  # None evidence is omitted


def test_measured_basis_and_acknowledged_state() -> None:
    acked = so2(ref_o2=None, acknowledged=True, ack_by="王工", ack_reason="bag filter leak fixed",
                ack_at=datetime(2026, 11, 22, 3, 20, tzinfo=UTC))
    text = render_text(note(acked), GRAFANA)
    assert "实测值，未折算 / measured, no O2 correction" in text
    # 03:20 UTC = 11:20 Beijing
    assert "已确认 acknowledged by 王工 at 2026-11-22 11:20: bag filter leak fixed" in text


def test_period_across_midnight_and_incomplete_hour_unit() -> None:
    late = so2(
        rule=Rule.HOUR_INCOMPLETE, severity=Severity.WARNING, value=30.0, limit=45.0,
        period_start=datetime(2026, 11, 22, 15, 30, tzinfo=UTC),  # Beijing 23:30
        period_end=datetime(2026, 11, 22, 16, 30, tzinfo=UTC),  # Beijing 00:30 next day
    )
    text = render_text(note(late), GRAFANA)
    assert "2026-11-22 23:30 – 2026-11-23 00:30 (UTC+8)" in text
    assert "30 min（限值 limit 45 min）" in text  # valid minutes vs 45 (no percent)


def test_subjects() -> None:
    assert render_subject(note(so2())) == (
        "[新告警 NEW · 告警 ALARM] 小时均值超标 hourly mean exceedance"
        " — 某钢铁有限公司 1#烧结机头 a21026"
    )
    second = so2(alert_id="other", factor="a34013", severity=Severity.CRITICAL)
    assert render_subject(note(so2(), second, kind=NotificationKind.ESCALATION, level=1)) == (
        "[升级 L1 ESCALATED · 严重 CRITICAL] 2 条告警 / 2 alerts — 某钢铁有限公司"
    )


def test_dashboard_link_encodes_the_stack_id() -> None:
    # "邯郸 1#" → UTF-8 E9 82 AF E9 83 B8, space %20, '#' %23
    assert dashboard_url("https://g.example/", "邯郸 1#") == (
        "https://g.example/d/stackwatch-stack/stack-detail?var-stack=%E9%82%AF%E9%83%B8%201%23"
    )


def test_html_escapes_every_value() -> None:
    evil = StackMeta(stack_id="s<1>", name="<script>x</script>", plant="A&B <Steel>")
    page = render_html(note(so2(stack_id="s<1>"), stack=evil), GRAFANA)
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "A&amp;B &lt;Steel&gt;" in page
    link = "http://grafana.example:3000/d/stackwatch-stack/stack-detail?var-stack=s%3C1%3E"
    # '<' → %3C, '>' → %3E; the '&' between query parameters is escaped in the attribute
    assert f'href="{link}{RANGE.replace("&", "&amp;")}"' in page
    assert "二氧化硫" in page and "sulphur dioxide (SO2)" in page


def test_dingtalk_and_wecom_payload_shapes() -> None:
    n = note(so2())
    dd = dingtalk_payload(n, GRAFANA)
    assert set(dd) == {"msgtype", "markdown"} and dd["msgtype"] == "markdown"
    assert set(dd["markdown"]) == {"title", "text"}
    assert dd["markdown"]["title"] == render_subject(n)
    assert "[查看曲线 Open dashboard](http://grafana.example:3000/d/stackwatch-stack/" in (
        dd["markdown"]["text"]
    )
    wc = wecom_payload(n, GRAFANA)
    assert set(wc) == {"msgtype", "markdown"} and wc["msgtype"] == "markdown"
    assert set(wc["markdown"]) == {"content"}
    assert "**监测值 / Value**: 62.3 mg/m³" in wc["markdown"]["content"]
    json.dumps(dd), json.dumps(wc)  # JSON-serialisable


def test_wecom_content_is_cut_to_4096_bytes_at_an_alert_boundary() -> None:
    events = [so2(alert_id=f"id-{i:02d}") for i in range(30)]
    content = wecom_payload(note(*events), GRAFANA)["markdown"]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MAX_BYTES
    assert "more alert(s) not shown" in content
    assert "id-00" in content and "id-29" not in content
    # DingTalk has no such cut: all 30 alerts are there.
    assert "id-29" in dingtalk_payload(note(*events), GRAFANA)["markdown"]["text"]


def test_generic_json_document() -> None:
    doc = json_payload(note(so2()), GRAFANA)
    assert doc["version"] == 1 and doc["kind"] == "firing"
    [a] = doc["alerts"]
    assert (a["value"], a["limit"], a["unit"], a["ref_o2"]) == (62.3, 35.0, "mg/m³", 16.0)
    assert (a["factor"], a["factor_name_zh"], a["factor_name_en"]) == (
        "a21026", "二氧化硫", "sulphur dioxide (SO2)"
    )
    assert a["plant"] == "某钢铁有限公司" and a["city"] == "邯郸"
    assert a["period_start"] == "2026-11-22T02:00:00+00:00"
    assert a["dashboard_url"] == (
        "http://grafana.example:3000/d/stackwatch-stack/stack-detail?var-stack=hd-steel-01"
        + RANGE
    )
    assert a["ack_url"] is None  # links off
    json.dumps(doc)


def test_resolved_message_has_no_ack_hint() -> None:
    cleared = so2(seq=2, kind=EventKind.CLEAR, state=AlertState.CLEARED,
                  cleared_at=datetime(2026, 11, 22, 5, 0, tzinfo=UTC))
    text = render_text(note(cleared, kind=NotificationKind.RESOLVED), GRAFANA)
    assert "已恢复 resolved at 2026-11-22 13:00" in text  # 05:00 UTC = 13:00 Beijing
    assert "stackwatch alerts ack" not in text


def test_dashboard_range_without_a_period_uses_the_sightings() -> None:
    # offline: no period; first seen 03:00, last seen 05:00 UTC → 21:00 the day before … 06:00
    offline = so2(rule=Rule.OFFLINE, factor=None, period_start=None, period_end=None,
                  first_seen=END, last_seen=END + timedelta(hours=2))
    assert alert_dashboard_url("http://g/", offline) == (
        "http://g/d/stackwatch-stack/stack-detail?var-stack=hd-steel-01"
        f"&from={(DAY_EPOCH - 3 * 3600) * 1000}&to={(DAY_EPOCH + 6 * 3600) * 1000}"
    )
    # a cleared alert's range ends 1 h after the clearance (07:00 → 08:00 UTC)
    cleared = so2(cleared_at=END + timedelta(hours=4), state=AlertState.CLEARED)
    assert alert_dashboard_url("http://g", cleared).endswith(
        f"&to={(DAY_EPOCH + 8 * 3600) * 1000}"
    )


def test_every_format_carries_the_recipients_ack_link() -> None:
    links = {so2().alert_id: ACK_URL}
    n = note(so2())
    text = render_text(n, GRAFANA, links)
    assert f"确认 / Acknowledge: {ACK_URL}\n" in text
    assert "stackwatch alerts ack" not in text  # the link replaces the CLI hint
    assert "本人专用" in text
    page = render_html(n, GRAFANA, links)
    assert f'<a href="{ACK_URL}">{ACK_URL}</a>' in page
    dd = dingtalk_payload(n, GRAFANA, links)["markdown"]["text"]
    assert f"**确认 / Acknowledge**: [点此确认 Acknowledge here]({ACK_URL})" in dd
    wc = wecom_payload(n, GRAFANA, links)["markdown"]["content"]
    assert f"[点此确认 Acknowledge here]({ACK_URL})" in wc
    doc = json_payload(n, GRAFANA, links)
    assert doc["alerts"][0]["ack_url"] == ACK_URL
    assert f"确认 / Acknowledge: {ACK_URL}" in doc["text"]


def test_resolved_alerts_get_no_ack_link() -> None:
    cleared = so2(seq=2, kind=EventKind.CLEAR, state=AlertState.CLEARED,
                  cleared_at=datetime(2026, 11, 22, 5, 0, tzinfo=UTC))
    links = {cleared.alert_id: ACK_URL}
    n = note(cleared, kind=NotificationKind.RESOLVED)
    assert ACK_URL not in render_text(n, GRAFANA, links)
    assert json_payload(n, GRAFANA, links)["alerts"][0]["ack_url"] is None
