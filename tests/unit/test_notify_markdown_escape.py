"""Hostile text in DingTalk/WeCom markdown: a reason, a name or a plant cannot add a link,
formatting, a heading, an HTML/font tag or an @mention to the robots' messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import AlertItem, Notification, NotificationKind, StackMeta
from stackwatch.notify.render import dingtalk_payload, markdown_escape, wecom_payload

T = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
HOSTILE = (
    "[点我](http://evil.example/x) **紧急** @all @13800000000 <@zhangsan> "
    '<font color="warning">假</font>\n### 伪标题 ![img](http://evil.example/i.png) www.evil.cn'
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain 文本 62.3 mg/m³", "plain 文本 62.3 mg/m³"),
        ("[a](http://e.x)", "\\[a\\]\\(http：//e.x\\)"),
        ("**b** _i_ `c` ~~s~~", "\\*\\*b\\*\\* \\_i\\_ \\`c\\` \\~\\~s\\~\\~"),
        ("@all <@u1>", "＠all ＜＠u1＞"),
        ('<font color="info">x</font>', '＜font color="info"＞x＜/font＞'),
        ("a\n# h\r\n> q", "a \\# h ＞ q"),
        ("see www.evil.cn | x", "see www．evil.cn \\| x"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_markdown_escape(text: str, expected: str) -> None:
    assert markdown_escape(text) == expected


def hostile_notification() -> Notification:
    event = AlertEvent(
        alert_id="a-1", seq=3, kind=EventKind.ACK, at=T, stack_id="hd-01", factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE, severity=Severity.ALARM, state=AlertState.ACTIVE,
        title_zh="小时均值超标", title_en="hourly mean exceedance", first_seen=T, last_seen=T,
        count=1, value=62.3, limit=35.0, acknowledged=True, ack_by="王工 @all",
        ack_reason=HOSTILE, ack_at=T,
        evidence={"note": "[x](http://evil.example)"},
    )
    stack = StackMeta(stack_id="hd-01", name="1#机头 **粗体**", plant="<@boss> 某钢铁",
                      city="邯郸", sector="steel")
    return Notification(kind=NotificationKind.FIRING, route="r", group_key="k", groups=["g"],
                        level=0, at=T, alerts=[AlertItem(event=event, stack=stack)])


@pytest.mark.parametrize("fmt", ["dingtalk", "wecom"])
def test_hostile_text_adds_no_markup(fmt: str) -> None:
    n = hostile_notification()
    links = {"a-1": "https://ack.example/ack/a-1/TOKEN"}
    payload = (dingtalk_payload if fmt == "dingtalk" else wecom_payload)(
        n, "http://grafana.test", links)
    text = payload["markdown"]["text" if fmt == "dingtalk" else "content"]
    # exactly our two links (acknowledge, dashboard): none from the hostile text
    targets = re.findall(r"(?<!\\)\]\((\S+?)\)", text)
    assert len(targets) == 2
    assert targets[0] == "https://ack.example/ack/a-1/TOKEN"
    assert targets[1].startswith("http://grafana.test/d/stackwatch-stack/")
    assert "evil.example" not in "".join(targets)
    # no mention, tag, raw auto-link or extra heading survives
    for bad in ("@all", "@13800000000", "<@", "<font", "http://evil", "www.evil"):
        assert bad not in text, bad
    assert len(re.findall(r"^#", text, flags=re.MULTILINE)) == 1  # only our ### title
    # the reason is still readable, on one line
    assert ("\\[点我\\]\\(http：//evil.example/x\\) \\*\\*紧急\\*\\* ＠all ＠13800000000 "
            "＜＠zhangsan＞ ＜font color=\"warning\"＞假＜/font＞ \\#\\#\\# 伪标题 "
            "\\!\\[img\\]\\(http：//evil.example/i.png\\) www．evil.cn") in text
    assert "＜＠boss＞ 某钢铁" in text and "1\\#机头 \\*\\*粗体\\*\\*" in text
